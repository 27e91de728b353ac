/*  pf_zap — see pf_zap.h. */
#define _GNU_SOURCE //  st_mtim
#include "pf_zap.h"
#include "pf_curve.h"
#include "pf_log.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
//  A refused key is logged at most once a minute (libzmq reconnects every
//  100 ms), with the refusals not logged since; at most this many keys are
//  remembered (then the memory starts over).
#define WARN_EVERY_MS 60000
#define WARNED_MAX    1024

typedef struct {
    int64_t logged_at; //  zclock_mono () of the last line about this key
    unsigned unlogged; //  refusals since then not logged
} warned_t;

typedef struct {
    char *dir;          //  the allow-list directory; NULL: any key
    zhashx_t *allowed;  //  the Z85 keys of dir's certificates, as last read
    uint64_t signature; //  of dir's files (names, sizes, times) when last read
    zhashx_t *warned;   //  Z85 key or failure -> warned_t
    zsock_t *watched;   //  PAIR: handshake failures of a watched socket, or NULL
} zap_t;

//  Calls fn for each regular file of dir (hidden ones skipped); the count.
static size_t each_file (const char *dir, void (*fn) (void *, const char *, struct stat *),
                         void *arg)
{
    DIR *handle = opendir (dir);
    struct dirent *entry;
    size_t count = 0;
    while (handle && (entry = readdir (handle))) {
        char path[PATH_MAX];
        struct stat info;
        if (entry->d_name[0] == '.' ||
            snprintf (path, sizeof path, "%s/%s", dir, entry->d_name) >= (int) sizeof path ||
            stat (path, &info) != 0 || !S_ISREG (info.st_mode))
            continue;
        fn (arg, path, &info);
        count++;
    }
    if (handle) closedir (handle);
    return count;
}

//  FNV-1a over what changes when a file is added, removed or rewritten.
static void mix (void *arg, const char *path, struct stat *info)
{
    uint64_t *hash = arg;
    uint64_t parts[] = {(uint64_t) info->st_ino, (uint64_t) info->st_size,
                        (uint64_t) info->st_mtim.tv_sec, (uint64_t) info->st_mtim.tv_nsec};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (int b = 0; b < 64; b += 8)
            *hash = (*hash ^ ((parts[i] >> b) & 0xff)) * 1099511628211u;
    for (const char *c = path; *c; c++)
        *hash = (*hash ^ (uint8_t) *c) * 1099511628211u;
}

static void add_key (void *arg, const char *path, struct stat *info)
{
    (void) info;
    zap_t *self = arg;
    char key[PF_CURVE_KEY_LEN + 1], why[PATH_MAX + 128];
    if (pf_curve_public_key (path, key, why, sizeof why) == 0)
        zhashx_update (self->allowed, key, (void *) ""); //  a set: the value is unused
    else
        pf_warn ("--curve-allow: ignored %s", why);
}

//  Reads the directory again if any of its files changed since the last
//  time: adding or removing a key needs no restart. A file that is not a
//  certificate is skipped, with a warning each time the directory is read.
static void refresh (zap_t *self)
{
    uint64_t signature = 14695981039346656037u;
    size_t files = each_file (self->dir, mix, &signature);
    if (signature == self->signature) return;
    self->signature = signature;
    zhashx_purge (self->allowed);
    each_file (self->dir, add_key, self);
    pf_info ("--curve-allow: %zu keys admitted from %zu files in %s", zhashx_size (self->allowed),
             files, self->dir);
}

//  Logs line (about what) unless a line about it was logged in the last
//  minute; then counts it.
static void warn_once_a_minute (zap_t *self, const char *what, const char *line)
{
    if (zhashx_size (self->warned) >= WARNED_MAX) zhashx_purge (self->warned);
    warned_t *warned = zhashx_lookup (self->warned, what);
    int64_t now = zclock_mono ();
    if (!warned) {
        warned = calloc (1, sizeof *warned);
        if (!warned) return;
        warned->logged_at = now - WARN_EVERY_MS;
        zhashx_insert (self->warned, what, warned);
    }
    if (now - warned->logged_at < WARN_EVERY_MS) {
        warned->unlogged++;
        return;
    }
    if (warned->unlogged)
        pf_warn ("%s (and %u more like it in the last minute)", line, warned->unlogged);
    else
        pf_warn ("%s", line);
    warned->logged_at = now;
    warned->unlogged = 0;
}

static void warn_refused (zap_t *self, const char *key, const char *address)
{
    char line[256];
    snprintf (line, sizeof line, "refused a CURVE handshake from %s: key %s is not allowed",
              address, key);
    warn_once_a_minute (self, key, line);
}

//  A handshake that failed before ZAP was asked (socket monitor event):
//  a peer without CurveZMQ, or with another broker's key.
static void watch_event (zap_t *self)
{
    zmsg_t *event = zmsg_recv (self->watched);
    zframe_t *head = event ? zmsg_first (event) : NULL;
    char *address = head && zframe_size (head) == 6 ? zframe_strdup (zmsg_next (event)) : NULL;
    if (address) {
        uint32_t value; //  after the u16 event id, in native byte order
        memcpy (&value, zframe_data (head) + 2, 4);
        const char *why = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                              ? "the peer has no CurveZMQ keys"
                          : value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
                              ? "cryptographic error (a peer with another broker's key?)"
                              : "protocol error";
        char line[512];
        snprintf (line, sizeof line, "a handshake on %s failed: %s", address, why);
        warn_once_a_minute (self, why, line);
    }
    free (address);
    zmsg_destroy (&event);
}

//  One request: version, request id, domain, address, routing id,
//  mechanism, then the mechanism's credentials (CURVE: the 32-byte key).
static void answer (zap_t *self, zsock_t *handler)
{
    zmsg_t *request = zmsg_recv (handler);
    if (!request) return;
    char *version = zmsg_popstr (request);
    char *id = zmsg_popstr (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    zframe_t *routing_id = zmsg_pop (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credentials = zmsg_pop (request);
    char key[PF_CURVE_KEY_LEN + 1] = "";
    const char *status = "400", *text = "No access";
    if (!version || !streq (version, "1.0") || !mechanism)
        text = "Bad ZAP request";
    else if (!streq (mechanism, "CURVE"))
        text = "CurveZMQ required";
    else if (credentials && zframe_size (credentials) == 32) {
        zmq_z85_encode (key, zframe_data (credentials), 32);
        if (self->dir) refresh (self);
        if (!self->dir || zhashx_lookup (self->allowed, key)) {
            status = "200";
            text = "OK";
        } else
            warn_refused (self, key, address ? address : "?");
    }
    //  Version, request id, status code and text, user id, metadata.
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    zmsg_addstr (reply, id ? id : "");
    zmsg_addstr (reply, status);
    zmsg_addstr (reply, text);
    zmsg_addstr (reply, *status == '2' ? key : "");
    zmsg_addmem (reply, "", 0);
    zmsg_send (&reply, handler);
    zstr_free (&version);
    zstr_free (&id);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&mechanism);
    zframe_destroy (&routing_id);
    zframe_destroy (&credentials);
    zmsg_destroy (&request);
}

typedef struct {
    const char *dir; //  read by the thread before it signals
    bool started;    //  set by the thread before it signals
} start_t;

static void zap_actor (zsock_t *pipe, void *arg)
{
    //  *start lives on pf_zap_start's stack: not to be read after the signal.
    start_t *start = arg;
    zap_t self = {start->dir ? strdup (start->dir) : NULL, zhashx_new (), 0, zhashx_new (), NULL};
    zsock_t *handler = zsock_new (ZMQ_REP);
    bool started = (self.dir || !start->dir) && self.allowed && self.warned && handler &&
                   zsock_bind (handler, ZAP_ENDPOINT) == 0;
    if (self.warned) zhashx_set_destructor (self.warned, (zhashx_destructor_fn *) zstr_free);
    if (started && self.dir) refresh (&self);
    start->started = started;
    zsock_signal (pipe, 0);
    //  Not started: still waits for $TERM, as zactor_destroy expects.
    zpoller_t *poller = zpoller_new (pipe, started ? handler : NULL, NULL);
    while (poller) {
        void *which = zpoller_wait (poller, -1);
        if (which == handler)
            answer (&self, handler);
        else if (which && which == self.watched)
            watch_event (&self);
        else {
            //  WATCH ENDPOINT, or $TERM from zactor_destroy (or the context
            //  is ending).
            char *command = NULL, *endpoint = NULL;
            if (!which || zstr_recvx (pipe, &command, &endpoint, NULL) < 1 ||
                !streq (command, "WATCH")) {
                zstr_free (&command);
                zstr_free (&endpoint);
                break;
            }
            if (!self.watched && endpoint && (self.watched = zsock_new_pair (endpoint)))
                zpoller_add (poller, self.watched);
            zsock_signal (pipe, self.watched ? 0 : 1);
            zstr_free (&command);
            zstr_free (&endpoint);
        }
    }
    zpoller_destroy (&poller);
    zsock_destroy (&self.watched);
    zsock_destroy (&handler);
    zhashx_destroy (&self.allowed);
    zhashx_destroy (&self.warned);
    free (self.dir);
}

#define WATCH_ENDPOINT "inproc://pyfleet-zap-watch"

int pf_zap_watch (zactor_t *zap, zsock_t *socket)
{
    if (zmq_socket_monitor (zsock_resolve (socket), WATCH_ENDPOINT,
                            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0)
        return -1;
    zstr_sendx (zap, "WATCH", WATCH_ENDPOINT, NULL);
    return zsock_wait (zap) == 0 ? 0 : -1;
}

zactor_t *pf_zap_start (const char *allow_dir)
{
    start_t start = {allow_dir, false};
    //  zactor_new returns once the thread has signalled.
    zactor_t *actor = zactor_new (zap_actor, &start);
    if (actor && !start.started) {
        zactor_destroy (&actor);
        errno = EADDRINUSE;
    }
    return actor;
}
