/*  pf_batch — BATCH (PFW2 0x0B, PFC1 0x06): the messages a loop turn has
    for one peer, sent as one ZeroMQ message.

    Every ZeroMQ message costs its sender, both I/O threads and its receiver
    a wake-up and work per frame; under load the broker sends each agent
    several requests per loop turn and an agent reads several replies per
    poll. An outbox collects them per peer and sends each peer's as one
    BATCH when the loop is about to wait (pf_outbox_flush): a REQUEST then
    costs its packed bytes in a shared frame instead of a message of six
    frames. The broker batches a client's answers too when the client said
    it reads BATCH (PF_FLAG_BATCH_OK), and a client with batching on sends
    the requests it queued between two waits as one (pf_batch_t directly).
    Order per peer holds: a message too large to batch goes out at once,
    after what the peer's batch held.

    The receiver walks a BATCH's `messages` (in pf_msg_t.body) with
    pf_batch_next and handles each message as if it had come alone. */
#ifndef PF_BATCH_H_INCLUDED
#define PF_BATCH_H_INCLUDED

#include "pf_proto.h"

//  Larger opaque fields are sent on their own, without a copy (batching
//  10 KiB echoes took them from about 18 000 to 27 000 req/s here; at 100 KiB
//  copies cost what the frames save); a batch is sent once it holds this
//  many bytes or messages.
#define PF_BATCH_MAX_FIELD    (64 * 1024)
#define PF_BATCH_MAX_BYTES    (256 * 1024)
#define PF_BATCH_MAX_MESSAGES 256

//  One BATCH being built: packed messages of one protocol.
typedef struct {
    int proto;     //  of its messages; set by the first pf_batch_add
    byte *data;    //  entries: a u32 length, then a packed message
    size_t size, alloc;
    size_t count;  //  messages in it
} pf_batch_t;

//  Appends msg (copied; msg is not changed) to an empty batch or one of its
//  protocol. Returns 0, or -1 and the batch unchanged: errno EMSGSIZE if
//  msg may not travel in a batch (not packable, an opaque field above
//  PF_BATCH_MAX_FIELD), EINVAL if the batch holds another protocol, ENOMEM.
int pf_batch_add (pf_batch_t *self, const pf_msg_t *msg);

//  Sends the batch as one BATCH message on socket, routing_id first if not
//  NULL, without waiting. Returns 0 and empties the batch (libzmq takes its
//  buffer without a copy), or -1 with errno: nothing was sent (the socket is
//  full, the peer is gone) and the batch is kept, to send again or clear;
//  only if libzmq cannot allocate has a truncated message, which the
//  receiver drops as malformed, gone out.
int pf_batch_send (pf_batch_t *self, void *socket, zframe_t *routing_id);

//  Empties the batch (keeps its buffer); pf_batch_free releases the buffer.
void pf_batch_clear (pf_batch_t *self);
void pf_batch_free (pf_batch_t *self);

typedef struct pf_outbox_s pf_outbox_t;

pf_outbox_t *pf_outbox_new (void);
//  Drops what was not flushed.
void pf_outbox_destroy (pf_outbox_t **self_p);

//  Sends msg to the peer routing_id (NULL on a DEALER) on socket: a small
//  message joins the peer's batch (0; with PF_MSG_KEEP in flags its opaque
//  frames stay in msg, else they are freed, as after a send) if it is PFW2
//  or flags has PF_MSG_BATCHABLE; any other goes out at once, after the
//  peer's batch, with pf_msg_send's result (flags as there; batches are
//  always sent with ZMQ_DONTWAIT).
int pf_outbox_send (pf_outbox_t *self, void *socket, zframe_t *routing_id, pf_msg_t *msg,
                    int flags);

//  Sends every peer's batch on socket. Returns how many messages could not
//  be sent.
size_t pf_outbox_flush (pf_outbox_t *self, void *socket);

//  Decodes the next message of a BATCH's messages (of protocol proto) into
//  msg (reset first).
//  Returns PF_OK, or a decode error with err set (the walk goes on with the
//  next message), or -1 when there is none left. An entry whose length runs
//  past the end is a BAD_REQUEST and ends the walk.
int pf_batch_next (int proto, zframe_t *messages, size_t *offset, pf_msg_t *msg, size_t max_body,
                   char *err, size_t errlen);

#endif
