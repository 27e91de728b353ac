/*  pf_stream — PFC1 over a Unix stream socket. See pf_stream.h. */
#include "pf_stream.h"
#include "pf_error.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

//  One read takes at most this much beyond what the entry being read needs.
#define READ_CHUNK (64 * 1024)

const char *pf_stream_path (const char *endpoint)
{
    size_t prefix = strlen (PF_STREAM_SCHEME);
    if (!endpoint || strncmp (endpoint, PF_STREAM_SCHEME, prefix) != 0) return NULL;
    return endpoint + prefix;
}

bool pf_stream_path_valid (const char *path)
{
    return path && *path && strlen (path) < sizeof ((struct sockaddr_un *)0)->sun_path;
}

static int address_of (const char *path, struct sockaddr_un *address)
{
    memset (address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (!pf_stream_path_valid (path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy (address->sun_path, path);
    return 0;
}

int pf_stream_connect (const char *path)
{
    struct sockaddr_un address;
    if (address_of (path, &address)) return -1;
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect (fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int error = errno;
        close (fd);
        errno = error;
        return -1;
    }
    return fd;
}

int pf_stream_listen (const char *path)
{
    struct sockaddr_un address;
    if (address_of (path, &address)) return -1;
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int rc = bind (fd, (struct sockaddr *)&address, sizeof address);
    if (rc != 0 && errno == EADDRINUSE) {
        //  A file is there: a live broker's (it accepts), or a dead one's.
        int probe = pf_stream_connect (path);
        if (probe >= 0 || errno == EAGAIN) {
            if (probe >= 0) close (probe);
            close (fd);
            errno = EADDRINUSE;
            return -1;
        }
        if (errno == ECONNREFUSED && unlink (path) == 0)
            rc = bind (fd, (struct sockaddr *)&address, sizeof address);
        else
            errno = EADDRINUSE;
    }
    if (rc != 0 || listen (fd, SOMAXCONN) != 0) {
        int error = errno;
        close (fd);
        errno = error;
        return -1;
    }
    return fd;
}

void pf_stream_init (pf_stream_t *self, int fd, size_t max_body)
{
    memset (self, 0, sizeof *self);
    self->fd = fd;
    self->max_body = max_body ? max_body : PF_DEFAULT_MAX_BODY;
}

void pf_stream_close (pf_stream_t *self)
{
    if (self->fd >= 0) close (self->fd);
    free (self->in);
    free (self->out);
    size_t max_body = self->max_body;
    pf_stream_init (self, -1, max_body);
}

//  --------------------------------------------------------------------------
//  Writing

size_t pf_stream_pending (const pf_stream_t *self)
{
    return self->out_end - self->out_start;
}

//  Room for size more bytes at the end of out; NULL with errno if refused.
static byte *out_reserve (pf_stream_t *self, size_t size)
{
    size_t pending = pf_stream_pending (self);
    if (pending && pending + size > PF_STREAM_MAX_PENDING) {
        errno = ENOBUFS;
        return NULL;
    }
    if (self->out_alloc - self->out_end < size && self->out_start) {
        memmove (self->out, self->out + self->out_start, pending);
        self->out_start = 0;
        self->out_end = pending;
    }
    if (self->out_alloc - self->out_end < size) {
        size_t alloc = self->out_alloc ? self->out_alloc : 64 * 1024;
        while (alloc - self->out_end < size)
            alloc *= 2;
        byte *out = realloc (self->out, alloc);
        if (!out) {
            errno = ENOMEM;
            return NULL;
        }
        self->out = out;
        self->out_alloc = alloc;
    }
    byte *at = self->out + self->out_end;
    self->out_end += size;
    return at;
}

int pf_stream_put (pf_stream_t *self, const pf_msg_t *msg)
{
    size_t size = msg && msg->proto == PF_PROTO_C ? pf_msg_packed_size (msg) : 0;
    if (!size || size > UINT32_MAX) {
        errno = EINVAL;
        return -1;
    }
    byte *at = out_reserve (self, 4 + size);
    if (!at) return -1;
    pf_write_be (at, 4, size);
    pf_msg_pack (msg, at + 4);
    return 0;
}

int pf_stream_put_batch (pf_stream_t *self, const pf_batch_t *batch)
{
    if (batch->count && batch->proto != PF_PROTO_C) {
        errno = EINVAL;
        return -1;
    }
    byte *at = batch->size ? out_reserve (self, batch->size) : NULL;
    if (batch->size && !at) return -1;
    if (batch->size) memcpy (at, batch->data, batch->size);
    return 0;
}

int pf_stream_flush (pf_stream_t *self)
{
    while (pf_stream_pending (self)) {
        ssize_t written = send (self->fd, self->out + self->out_start, pf_stream_pending (self),
                                MSG_NOSIGNAL | MSG_DONTWAIT);
        if (written < 0 && errno == EINTR) continue;
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (written < 0) return -1;
        self->out_start += (size_t)written;
    }
    self->out_start = self->out_end = 0;
    return 0;
}

//  --------------------------------------------------------------------------
//  Reading

//  The largest entry a reader takes into memory.
static size_t entry_limit (const pf_stream_t *self)
{
    return self->max_body + PF_STREAM_MAX_HEAD;
}

ssize_t pf_stream_fill (pf_stream_t *self)
{
    size_t held = self->in_end - self->in_start;
    //  Room for the entry at the front (when its length is known and
    //  allowed) or a chunk, whichever is more.
    size_t want = READ_CHUNK;
    if (!self->skip && held >= 4) {
        size_t entry = 4 + (size_t)pf_read_be (self->in + self->in_start, 4);
        if (entry - 4 <= entry_limit (self) && entry > want) want = entry;
    }
    if (self->in_start && self->in_alloc - self->in_end < want) {
        memmove (self->in, self->in + self->in_start, held);
        self->in_start = 0;
        self->in_end = held;
    }
    if (self->in_alloc - self->in_end < want) {
        byte *in = realloc (self->in, self->in_end + want);
        if (!in) {
            errno = ENOMEM;
            return -1;
        }
        self->in = in;
        self->in_alloc = self->in_end + want;
    }
    while (true) {
        ssize_t got = recv (self->fd, self->in + self->in_end, self->in_alloc - self->in_end,
                            MSG_DONTWAIT);
        if (got < 0 && errno == EINTR) continue;
        if (got > 0) self->in_end += (size_t)got;
        return got;
    }
}

//  True if command may start a PFC1 entry read by either end.
static bool known_command (byte command)
{
    return command >= PF_C_REQUEST && command <= PF_C_REQUEST_PACKED;
}

int pf_stream_next (pf_stream_t *self, pf_msg_t *msg, char *err, size_t errlen)
{
    pf_msg_reset (msg);
    //  The rest of a refused entry goes without being kept.
    size_t held = self->in_end - self->in_start;
    size_t skipped = self->skip < held ? self->skip : held;
    self->in_start += skipped;
    self->skip -= skipped;
    held -= skipped;
    if (self->skip || held < 4) {
        errno = EAGAIN;
        return -1;
    }
    const byte *at = self->in + self->in_start;
    size_t length = (size_t)pf_read_be (at, 4);
    if (length == 0 || (held >= 5 && !known_command (at[4]))) {
        snprintf (err, errlen, "stream: an entry of %zu bytes starting with 0x%02X: not PFC1",
                  length, held >= 5 ? at[4] : 0);
        errno = EPROTO;
        return -1;
    }
    if (length > entry_limit (self)) {
        //  Too large to hold: answer with its request id, skip its bytes.
        if (held < 4 + 1 + 8) {
            errno = EAGAIN;
            return -1;
        }
        msg->proto = PF_PROTO_C;
        msg->command = at[4];
        msg->request_id = pf_read_be (at + 5, 8);
        msg->has_request_id = true;
        snprintf (err, errlen, "stream: an entry of %zu bytes, over the limit of %zu", length,
                  entry_limit (self));
        self->skip = 4 + length;
        return PF_TOO_LARGE;
    }
    if (held - 4 < length) {
        errno = EAGAIN;
        return -1;
    }
    self->in_start += 4 + length;
    int rc = pf_msg_unpack (msg, PF_PROTO_C, at + 4, length, self->max_body, err, errlen);
    if (self->in_start == self->in_end) {
        self->in_start = self->in_end = 0;
        //  A large entry's buffer is not kept once it is read.
        if (self->in_alloc > 4 * READ_CHUNK) {
            free (self->in);
            self->in = NULL;
            self->in_alloc = 0;
        }
    }
    return rc;
}
