/*  pf_broker — the broker's state and logic, without sockets.

    The broker routes client REQUESTs to worker agents that have a free
    bridge (credit-based: the broker only sends work to a bridge it knows
    has room, an idle one first, least recently used agent first; a bridge
    has room for up to `window` requests only while its oldest has run less
    than window_ms, so short requests stream to a bridge without a round
    trip between them and none waits behind a long one), queues the rest per service
    within a bound, keeps each session on the bridge that holds its state,
    fans broadcast requests out to every bridge, answers every accepted
    request exactly once, expires queued requests at their deadline and idle
    sessions at their TTL, and tracks agents by heartbeat.

    All I/O stays at the edge: pf_broker_handle takes one message as read from
    the ROUTER socket (routing id first), and every outgoing message goes
    through the send callback, so this module is tested without sockets. */
#ifndef PF_BROKER_H_INCLUDED
#define PF_BROKER_H_INCLUDED

#include "pf_proto.h"
#include <czmq.h>
#include <jansson.h>
#include <stdint.h>

typedef struct _pf_broker_t pf_broker_t;

typedef struct {
    size_t queue_max;          //  queued requests per service (default 10 000)
    size_t session_queue_max;  //  waiting requests per session (default 1 000)
    uint32_t session_ttl_s;    //  idle sessions expire after this (default 1 800)
    uint32_t default_timeout_ms; //  deadline for requests that set none (30 000)
    uint32_t heartbeat_ms;     //  broker<->agent heartbeat interval (1 000)
    uint32_t liveness;         //  missed heartbeats before an agent is dead (3)
    uint32_t inflight_grace_ms; //  after a running request's deadline, how long the agent gets to answer (1 500)
    uint32_t startup_grace_ms; //  after start, requests for a service never seen yet wait for it (5 000)
    size_t max_body;           //  largest body accepted (64 MiB)
    uint32_t window;           //  requests in flight per bridge (32; 1 = strictly one at a time)
    uint32_t window_ms;        //  ... more than one only while its oldest has run less (10)
} pf_broker_config_t;

//  Fills config with the defaults above.
void pf_broker_config_defaults (pf_broker_config_t *config);

//  Sends msg to the peer with routing_id, as pf_msg_send with flags 0 or
//  PF_MSG_KEEP: the opaque frames move out on success, or with PF_MSG_KEEP
//  are shared and stay (the broker resets msg either way). Returns 0, or
//  -1 if the message could not be queued.
typedef int(pf_broker_send_fn) (void *arg, zframe_t *routing_id, pf_msg_t *msg, int flags);

pf_broker_t *pf_broker_new (const pf_broker_config_t *config, pf_broker_send_fn *send, void *arg,
                            int64_t now);
void pf_broker_destroy (pf_broker_t **self_p);

//  Handles one message read from the ROUTER (routing id frame first).
//  Takes ownership of *msg_p and nulls it.
void pf_broker_handle (pf_broker_t *self, zmsg_t **msg_p, int64_t now);

//  Handles one message as pf_msg_recv gave it: rc is its result (PF_OK or
//  the decode error, with err saying why). Resets msg; routing_id stays
//  the caller's.
void pf_broker_handle_msg (pf_broker_t *self, zframe_t *routing_id, int rc, pf_msg_t *msg,
                           const char *err, int64_t now);

//  Runs timers (deadlines, heartbeats, agent expiry). Returns the number of
//  milliseconds until it next needs to run.
int64_t pf_broker_tick (pf_broker_t *self, int64_t now);

//  Says DISCONNECT to every agent (broker shutting down).
void pf_broker_shutdown (pf_broker_t *self);

//  The client with this routing id is gone for good (a unix:// connection
//  closed): no answer can reach it any more, so each of its requests is
//  cancelled as a CANCEL from it would (queued ones never run, agents drop
//  the ones they have not started). Returns how many.
size_t pf_broker_client_gone (pf_broker_t *self, zframe_t *routing_id, int64_t now);

//  Lets the agent at routing_id be silent for ms (never less than
//  heartbeat x liveness) before it is dead: peers with heartbeats of their
//  own (MDP workers: 2 500 ms x 3). No-op for an unknown peer.
void pf_broker_agent_silence (pf_broker_t *self, zframe_t *routing_id, uint32_t ms, int64_t now);

//  A routing id as lower-case hex in key (at most 2 * 256 + 1 bytes): the
//  agents table's key.
void pf_broker_routing_key (zframe_t *routing_id, char *key);

//  Whether an agent serves service now (8/MMI "mmi.service").
bool pf_broker_serves (pf_broker_t *self, const char *service);

//  Counters, for logs, tests and (later) the management endpoint.
typedef struct {
    uint64_t requests;        //  accepted client requests
    uint64_t replies;         //  terminal answers sent, any kind
    uint64_t errors[32];      //  terminal answers by pf_error_t code (errors[0] = successes)
    uint64_t malformed;       //  messages dropped or refused as malformed
    uint64_t send_failures;   //  outgoing messages that could not be queued
    uint64_t late_replies;    //  agent answers for requests already answered
    uint64_t sessions_lost;   //  SESSION_LOST answers and soft rebinds
    uint64_t sessions_expired;
    size_t agents;
    size_t sessions;
    size_t queued;
    size_t inflight;
    size_t unix_clients;      //  connections on the broker's unix:// socket (pf_broker_set_unix_clients)
} pf_broker_stats_t;

void pf_broker_stats (pf_broker_t *self, pf_broker_stats_t *stats);

//  How many clients the broker's loop has on its unix:// socket, for STATUS.
void pf_broker_set_unix_clients (pf_broker_t *self, size_t count);

//  Counts messages the send function accepted but could not send later (a
//  batch flushed to an agent that is gone).
void pf_broker_send_failed (pf_broker_t *self, size_t count);

//  Receives broker events (agent joined, bridge down, session lost...) as
//  a topic and a JSON object, which the callee takes (json_decref).
typedef void(pf_broker_event_fn) (void *arg, const char *topic, json_t *event);
void pf_broker_set_event_fn (pf_broker_t *self, pf_broker_event_fn *fn, void *arg);

//  Answers one management request (PFM1, docs/MANAGEMENT.md): takes *msg_p
//  (frames after the routing id), returns the reply (frames after the
//  routing id), or NULL if the request cannot be answered at all.
zmsg_t *pf_broker_manage (pf_broker_t *self, zmsg_t **msg_p, int64_t now);

#endif
