/*  pf_batch — BATCH: packed messages for one peer, an outbox of them per
    peer, and the walk over a received batch. See pf_batch.h. */
#include "pf_batch.h"
#include "pf_error.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A batch is sent once it holds PF_BATCH_MAX_BYTES, so at most that plus one
//  message (an ERROR's 64 KiB message and its detail, the largest) reaches a
//  receiver, which takes PF_BATCH_MAX_FRAME whatever its max_body.
_Static_assert (PF_BATCH_MAX_BYTES + 2 * PF_BATCH_MAX_FIELD + 4096 <= PF_BATCH_MAX_FRAME,
                "a full batch fits the receivers' BATCH frame limit");

//  --------------------------------------------------------------------------
//  One batch

//  The packed size of msg if it may travel in a batch, else 0.
static size_t batch_size (const pf_msg_t *msg)
{
    zframe_t *frames[] = {msg->body, msg->detail, msg->sessions, msg->bridges};
    for (size_t index = 0; index < sizeof frames / sizeof frames[0]; index++)
        if (frames[index] && zframe_size (frames[index]) > PF_BATCH_MAX_FIELD) return 0;
    return pf_msg_packed_size (msg);
}

int pf_batch_add (pf_batch_t *self, const pf_msg_t *msg)
{
    size_t size = batch_size (msg);
    if (!size || (self->count && self->proto != msg->proto)) {
        errno = size ? EINVAL : EMSGSIZE;
        return -1;
    }
    if (self->alloc - self->size < 4 + size) {
        size_t alloc = self->alloc ? self->alloc : 4096;
        while (alloc - self->size < 4 + size)
            alloc *= 2;
        byte *data = realloc (self->data, alloc);
        if (!data) {
            errno = ENOMEM;
            return -1;
        }
        self->data = data;
        self->alloc = alloc;
    }
    byte *at = self->data + self->size;
    pf_write_be (at, 4, size);
    pf_msg_pack (msg, at + 4);
    self->size += 4 + size;
    self->proto = msg->proto;
    self->count++;
    return 0;
}

static void free_batch (void *data, void *hint)
{
    (void)hint;
    free (data);
}

int pf_batch_send (pf_batch_t *self, void *socket, zframe_t *routing_id)
{
    if (!self->count) return 0;
    void *handle = zsock_resolve (socket);
    //  The frames of a BATCH (pf_proto.c's tables): delimiter, header,
    //  command, then the messages. ZeroMQ takes a message whole or not at
    //  all: if the first part goes, the others do.
    byte command = self->proto == PF_PROTO_C ? PF_C_BATCH : PF_W_BATCH;
    const char *header = self->proto == PF_PROTO_C ? PF_PROTO_CLIENT : PF_PROTO_WORKER;
    int rc = routing_id ? zmq_send (handle, zframe_data (routing_id), zframe_size (routing_id),
                                    ZMQ_SNDMORE | ZMQ_DONTWAIT)
                        : zmq_send (handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc < 0) return -1;
    if (routing_id) zmq_send (handle, "", 0, ZMQ_SNDMORE);
    zmq_send (handle, header, 4, ZMQ_SNDMORE);
    zmq_send (handle, &command, 1, ZMQ_SNDMORE);
    zmq_msg_t messages;
    if (zmq_msg_init_data (&messages, self->data, self->size, free_batch, NULL) != 0) {
        zmq_send (handle, "", 0, 0); //  ends the message; the receiver finds it malformed
        return -1;
    }
    self->data = NULL;
    self->size = self->alloc = self->count = 0;
    if (zmq_msg_send (&messages, handle, 0) < 0) {
        zmq_msg_close (&messages); //  only as the context terminates
        return -1;
    }
    return 0;
}

void pf_batch_clear (pf_batch_t *self)
{
    self->size = self->count = 0;
}

void pf_batch_free (pf_batch_t *self)
{
    free (self->data);
    memset (self, 0, sizeof *self);
}

//  --------------------------------------------------------------------------
//  The outbox: a batch per peer

typedef struct {
    zframe_t *routing_id; //  NULL on a DEALER
    pf_batch_t batch;
} peer_t;

struct pf_outbox_s {
    peer_t *peers; //  the first count have a batch since the last flush
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
    for (size_t index = 0; index < self->alloc; index++) {
        zframe_destroy (&self->peers[index].routing_id);
        pf_batch_free (&self->peers[index].batch);
    }
    free (self->peers);
    free (self);
    *self_p = NULL;
}

static peer_t *peer_find (pf_outbox_t *self, zframe_t *routing_id)
{
    for (size_t index = 0; index < self->count; index++) {
        peer_t *peer = &self->peers[index];
        if (routing_id ? peer->routing_id && zframe_eq (peer->routing_id, routing_id)
                       : !peer->routing_id)
            return peer;
    }
    return NULL;
}

static peer_t *peer_add (pf_outbox_t *self, zframe_t *routing_id)
{
    if (self->count == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 8;
        peer_t *peers = realloc (self->peers, alloc * sizeof *peers);
        if (!peers) return NULL;
        memset (peers + self->alloc, 0, (alloc - self->alloc) * sizeof *peers);
        self->peers = peers;
        self->alloc = alloc;
    }
    peer_t *peer = &self->peers[self->count];
    zframe_destroy (&peer->routing_id);
    if (routing_id && !(peer->routing_id = zframe_dup (routing_id))) return NULL;
    self->count++;
    return peer;
}

//  Sends the peer's batch; what could not go is dropped. Returns how many
//  messages failed.
static size_t peer_send (peer_t *peer, void *socket)
{
    size_t count = peer->batch.count;
    if (count && (!socket || pf_batch_send (&peer->batch, socket, peer->routing_id) != 0)) {
        pf_batch_clear (&peer->batch);
        return count;
    }
    return 0;
}

int pf_outbox_send (pf_outbox_t *self, void *socket, zframe_t *routing_id, pf_msg_t *msg,
                    int flags)
{
    if (!self || !socket || !msg) {
        errno = EINVAL;
        return -1;
    }
    peer_t *peer = peer_find (self, routing_id);
    if (msg->proto == PF_PROTO_W || (flags & PF_MSG_BATCHABLE)) {
        if (!peer) peer = peer_add (self, routing_id);
        if (!peer) return -1;
        if (peer->batch.count && peer->batch.proto != msg->proto) peer_send (peer, socket);
        if (pf_batch_add (&peer->batch, msg) == 0) {
            if (!(flags & PF_MSG_KEEP)) {
                //  As a send would have moved them out.
                zframe_destroy (&msg->body);
                zframe_destroy (&msg->detail);
                zframe_destroy (&msg->sessions);
                zframe_destroy (&msg->bridges);
            }
            if (peer->batch.size >= PF_BATCH_MAX_BYTES ||
                peer->batch.count >= PF_BATCH_MAX_MESSAGES)
                return peer_send (peer, socket) ? -1 : 0;
            return 0;
        }
        if (errno != EMSGSIZE) return -1;
    }
    //  Alone, but never ahead of what its peer's batch holds.
    if (peer) peer_send (peer, socket);
    return pf_msg_send (msg, socket, routing_id, flags);
}

size_t pf_outbox_flush (pf_outbox_t *self, void *socket)
{
    if (!self) return 0;
    size_t failed = 0;
    for (size_t index = 0; index < self->count; index++)
        failed += peer_send (&self->peers[index], socket);
    self->count = 0;
    return failed;
}

//  --------------------------------------------------------------------------
//  Reading a batch

int pf_batch_next (int proto, zframe_t *messages, size_t *offset, pf_msg_t *msg, size_t max_body,
                   char *err, size_t errlen)
{
    size_t size = messages ? zframe_size (messages) : 0;
    if (*offset >= size) return -1;
    const byte *data = zframe_data (messages);
    if (size - *offset < 4) {
        pf_msg_reset (msg);
        if (err && errlen)
            snprintf (err, errlen, "batch: %zu bytes left, too few for a message's length",
                      size - *offset);
        *offset = size;
        return PF_BAD_REQUEST;
    }
    const byte *at = data + *offset;
    size_t length = (size_t)pf_read_be (at, 4);
    *offset += 4;
    if (length > size - *offset) {
        pf_msg_reset (msg);
        if (err && errlen)
            snprintf (err, errlen, "batch: a message of %zu bytes runs past the end", length);
        *offset = size;
        return PF_BAD_REQUEST;
    }
    int rc = pf_msg_unpack (msg, proto, data + *offset, length, max_body, err, errlen);
    *offset += length;
    return rc;
}
