/*  pf_stream_server — the broker's clients on a Unix stream socket
    (pyfleet-broker --unix PATH; clients connect to unix://PATH).

    The broker's own loop accepts, reads and writes these connections
    (pf_stream.h): no ZeroMQ I/O thread on either side. Each connection gets
    a routing id of its own (10 bytes: 0x00 'U', slot and generation, u32
    each), which no ZeroMQ peer can have (libzmq's own are 5 bytes, one set
    by a peer may not start with 0x00), so pf_broker routes answers to it as
    to any client and the broker's send function hands them here. Answers
    wait in the connection's buffer until the loop is about to poll; a
    client that stops reading while PF_STREAM_MAX_PENDING bytes wait for it
    loses its connection (its requests fail on its side as with a broken
    connection), never the broker's memory or time. */
#ifndef PF_STREAM_SERVER_H_INCLUDED
#define PF_STREAM_SERVER_H_INCLUDED

#include "pf_broker.h"
#include "pf_stream.h"

//  Connections beyond this many are closed as soon as they are accepted.
#define PF_STREAM_MAX_CLIENTS 1024

typedef struct pf_stream_server_s pf_stream_server_t;

//  Listens on path (pf_stream_listen). NULL with errno if it cannot.
pf_stream_server_t *pf_stream_server_new (const char *path, size_t max_body);

//  Closes every connection and the listener, and removes the socket file.
void pf_stream_server_destroy (pf_stream_server_t **self_p);

//  True if routing_id names a stream connection (live or not).
bool pf_stream_server_owns (zframe_t *routing_id);

//  Queues msg for the connection routing_id names (as the broker's send
//  function: msg is not changed, the broker resets it). Returns 0, or -1 if
//  that connection is gone or was just closed because its client does not
//  read.
int pf_stream_server_send (pf_stream_server_t *self, zframe_t *routing_id, pf_msg_t *msg);

//  Writes what every connection has queued, as far as the sockets take it,
//  and closes the broken ones.
void pf_stream_server_flush (pf_stream_server_t *self);

//  pf_stream_server_flush, then fills items (at most max) with what the
//  loop must poll: the listener first, then each connection. Returns the
//  number of items.
size_t pf_stream_server_prepare (pf_stream_server_t *self, zmq_pollitem_t *items, size_t max);

//  After the poll, with the items prepare filled: accepts new connections,
//  hands every whole message read to the broker (pf_broker_handle_msg),
//  writes where room appeared, closes connections at end of stream or that
//  broke the framing, has the broker cancel the requests of connections
//  closed since (pf_broker_client_gone) and tells it how many are open
//  (pf_broker_set_unix_clients).
void pf_stream_server_handle (pf_stream_server_t *self, zmq_pollitem_t *items, size_t count,
                              pf_broker_t *broker);

#endif
