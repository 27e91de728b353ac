/*  pf_batch — PFW2 BATCH: an outbox of packed messages per peer, and the
    walk over a received batch. See pf_batch.h. */
#include "pf_batch.h"
#include "pf_error.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    byte id[256]; //  the peer's routing id (ROUTER), if routed
    size_t id_size;
    bool routed;
    int proto;  //  of the messages in the batch
    byte *data; //  entries: a u32 length, then a packed message
    size_t size, alloc;
    size_t count;
} peer_t;

struct pf_outbox_s {
    peer_t *peers; //  the peers with a batch since the last flush
    size_t count, alloc;
};

pf_outbox_t *pf_outbox_new (void)
{
    return calloc (1, sizeof (pf_outbox_t));
}

void pf_outbox_destroy (pf_outbox_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_outbox_t *self = *self_p;
    for (size_t index = 0; index < self->alloc; index++)
        free (self->peers[index].data);
    free (self->peers);
    free (self);
    *self_p = NULL;
}

static peer_t *peer_find (pf_outbox_t *self, zframe_t *routing_id)
{
    size_t id_size = routing_id ? zframe_size (routing_id) : 0;
    for (size_t index = 0; index < self->count; index++) {
        peer_t *peer = &self->peers[index];
        if (peer->routed == (routing_id != NULL) && peer->id_size == id_size &&
            (!id_size || memcmp (peer->id, zframe_data (routing_id), id_size) == 0))
            return peer;
    }
    return NULL;
}

static peer_t *peer_add (pf_outbox_t *self, zframe_t *routing_id)
{
    if (routing_id && zframe_size (routing_id) > sizeof self->peers[0].id) return NULL;
    if (self->count == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 8;
        peer_t *peers = realloc (self->peers, alloc * sizeof *peers);
        if (!peers) return NULL;
        memset (peers + self->alloc, 0, (alloc - self->alloc) * sizeof *peers);
        self->peers = peers;
        self->alloc = alloc;
    }
    peer_t *peer = &self->peers[self->count++];
    peer->routed = routing_id != NULL;
    peer->id_size = routing_id ? zframe_size (routing_id) : 0;
    if (peer->id_size) memcpy (peer->id, zframe_data (routing_id), peer->id_size);
    peer->size = peer->count = 0;
    return peer;
}

static void free_batch (void *data, void *hint)
{
    (void)hint;
    free (data);
}

//  Sends the peer's batch and empties it; libzmq takes the buffer as it is
//  (no copy) and frees it once written. Returns how many messages failed.
static size_t peer_send (peer_t *peer, void *socket)
{
    size_t count = peer->count;
    if (!count) return 0;
    void *handle = zsock_resolve (socket);
    zmq_msg_t messages;
    if (zmq_msg_init_data (&messages, peer->data, peer->size, free_batch, NULL) != 0) return count;
    peer->data = NULL;
    peer->size = peer->alloc = peer->count = 0;
    //  The frames of a BATCH (pf_proto.c's tables): delimiter, header,
    //  command, then the messages.
    byte command = peer->proto == PF_PROTO_C ? PF_C_BATCH : PF_W_BATCH;
    const char *header = peer->proto == PF_PROTO_C ? PF_PROTO_CLIENT : PF_PROTO_WORKER;
    int rc = 0;
    if (peer->routed) rc = zmq_send (handle, peer->id, peer->id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0) rc = zmq_send (handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0) rc = zmq_send (handle, header, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0) rc = zmq_send (handle, &command, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0) rc = zmq_msg_send (&messages, handle, ZMQ_DONTWAIT);
    if (rc < 0) {
        zmq_msg_close (&messages);
        return count;
    }
    return 0;
}

//  True if msg may join a batch (PFW2, or a peer that reads BATCH) and its
//  opaque fields are small enough.
static bool batchable (const pf_msg_t *msg, int flags)
{
    zframe_t *frames[] = {msg->body, msg->detail, msg->sessions, msg->bridges};
    for (size_t index = 0; index < sizeof frames / sizeof frames[0]; index++)
        if (frames[index] && zframe_size (frames[index]) > PF_BATCH_MAX_FIELD) return false;
    return msg->proto == PF_PROTO_W || (flags & PF_MSG_BATCHABLE);
}

int pf_outbox_send (pf_outbox_t *self, void *socket, zframe_t *routing_id, pf_msg_t *msg,
                    int flags)
{
    if (!self || !socket || !msg) {
        errno = EINVAL;
        return -1;
    }
    peer_t *peer = peer_find (self, routing_id);
    size_t size = batchable (msg, flags) ? pf_msg_packed_size (msg) : 0;
    //  Alone, but never ahead of what its peer's batch holds.
    if (peer && (!size || peer->proto != msg->proto)) peer_send (peer, socket);
    if (!size) return pf_msg_send (msg, socket, routing_id, flags);
    if (!peer) peer = peer_add (self, routing_id);
    if (peer) peer->proto = msg->proto;
    if (peer && peer->alloc - peer->size < 4 + size) {
        size_t alloc = peer->alloc ? peer->alloc : 4096;
        while (alloc - peer->size < 4 + size)
            alloc *= 2;
        byte *data = realloc (peer->data, alloc);
        if (data) {
            peer->data = data;
            peer->alloc = alloc;
        }
    }
    if (!peer || peer->alloc - peer->size < 4 + size) {
        errno = ENOMEM;
        return -1;
    }
    byte *at = peer->data + peer->size;
    at[0] = (byte)(size >> 24);
    at[1] = (byte)(size >> 16);
    at[2] = (byte)(size >> 8);
    at[3] = (byte)size;
    pf_msg_pack (msg, at + 4);
    peer->size += 4 + size;
    peer->count++;
    if (!(flags & PF_MSG_KEEP)) {
        //  As a send would have moved them out.
        zframe_destroy (&msg->body);
        zframe_destroy (&msg->detail);
        zframe_destroy (&msg->sessions);
        zframe_destroy (&msg->bridges);
    }
    if (peer->size >= PF_BATCH_MAX_BYTES || peer->count >= PF_BATCH_MAX_MESSAGES)
        return peer_send (peer, socket) ? -1 : 0;
    return 0;
}

size_t pf_outbox_flush (pf_outbox_t *self, void *socket)
{
    if (!self) return 0;
    size_t failed = 0;
    for (size_t index = 0; index < self->count; index++)
        failed += socket ? peer_send (&self->peers[index], socket) : self->peers[index].count;
    for (size_t index = 0; index < self->count; index++)
        self->peers[index].size = self->peers[index].count = 0;
    self->count = 0;
    return failed;
}

static void set_error (char *err, size_t errlen, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void set_error (char *err, size_t errlen, const char *format, ...)
{
    if (!err || errlen == 0) return;
    va_list args;
    va_start (args, format);
    vsnprintf (err, errlen, format, args);
    va_end (args);
}

int pf_batch_next (int proto, zframe_t *messages, size_t *offset, pf_msg_t *msg, size_t max_body,
                   char *err, size_t errlen)
{
    size_t size = messages ? zframe_size (messages) : 0;
    if (*offset >= size) return -1;
    const byte *data = zframe_data (messages);
    if (size - *offset < 4) {
        pf_msg_reset (msg);
        set_error (err, errlen, "batch: %zu bytes left, too few for a message's length",
                   size - *offset);
        *offset = size;
        return PF_BAD_REQUEST;
    }
    const byte *at = data + *offset;
    size_t length = (size_t)at[0] << 24 | (size_t)at[1] << 16 | (size_t)at[2] << 8 | at[3];
    *offset += 4;
    if (length > size - *offset) {
        pf_msg_reset (msg);
        set_error (err, errlen, "batch: a message of %zu bytes runs past the end", length);
        *offset = size;
        return PF_BAD_REQUEST;
    }
    int rc = pf_msg_unpack (msg, proto, data + *offset, length, max_body, err, errlen);
    *offset += length;
    return rc;
}
