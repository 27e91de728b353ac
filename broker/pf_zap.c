/*  pf_zap — see pf_zap.h. */
#include "pf_zap.h"
#include "pf_log.h"
#include <errno.h>

#define ZAP_ENDPOINT  "inproc://zeromq.zap.01"
#define WARN_EVERY_MS 1000

typedef struct {
    zcertstore_t *allowed; //  NULL: any key
    int64_t warned_at;     //  zclock_mono () of the last refusal logged
    unsigned unlogged;     //  refusals since then not logged
} zap_t;

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
    char key[41] = "";
    const char *status = "400", *text = "No access";
    if (!version || !streq (version, "1.0") || !mechanism)
        text = "Bad ZAP request";
    else if (!streq (mechanism, "CURVE"))
        text = "CurveZMQ required";
    else if (credentials && zframe_size (credentials) == 32) {
        zmq_z85_encode (key, zframe_data (credentials), 32);
        if (!self->allowed || zcertstore_lookup (self->allowed, key)) {
            status = "200";
            text = "OK";
        }
    }
    if (*status != '2') {
        int64_t now = zclock_mono ();
        if (now - self->warned_at >= WARN_EVERY_MS) {
            pf_warn ("refused a %s handshake from %s: %s%s%s (and %u more since the last "
                     "warning)", mechanism ? mechanism : "?", address ? address : "?",
                     *key ? "key " : "", *key ? key : text, *key ? " is not allowed" : "",
                     self->unlogged);
            self->warned_at = now;
            self->unlogged = 0;
        } else
            self->unlogged++;
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
    zcertstore_t *allowed; //  passed to the thread, which owns it
    bool started;          //  set by the thread before it signals
} start_t;

static void zap_actor (zsock_t *pipe, void *arg)
{
    start_t *start = arg;
    zap_t self = {start->allowed, 0, 0};
    zsock_t *handler = zsock_new (ZMQ_REP);
    start->started = handler && zsock_bind (handler, ZAP_ENDPOINT) == 0;
    zsock_signal (pipe, 0);
    //  Not started: still waits for $TERM, as zactor_destroy expects.
    zpoller_t *poller = zpoller_new (pipe, start->started ? handler : NULL, NULL);
    while (poller) {
        void *which = zpoller_wait (poller, -1);
        if (which != handler) {
            //  $TERM from zactor_destroy, or the context is ending.
            zmsg_t *command = which ? zmsg_recv (pipe) : NULL;
            zmsg_destroy (&command);
            break;
        }
        answer (&self, handler);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&handler);
    zcertstore_destroy (&self.allowed);
}

zactor_t *pf_zap_start (const char *allow_dir)
{
    start_t start = {NULL, false};
    if (allow_dir && !(start.allowed = zcertstore_new (allow_dir))) return NULL;
    //  zactor_new returns once the thread has signalled.
    zactor_t *actor = zactor_new (zap_actor, &start);
    if (!actor)
        zcertstore_destroy (&start.allowed);
    else if (!start.started) {
        zactor_destroy (&actor);
        errno = EADDRINUSE;
    }
    return actor;
}
