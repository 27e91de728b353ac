/*  pf_broker_state — the broker's state, shared by the routing logic
    (pf_broker.c) and the management queries (pf_mgmt.c) only. Everything
    else goes through pf_broker.h. */
#ifndef PF_BROKER_STATE_H_INCLUDED
#define PF_BROKER_STATE_H_INCLUDED

#include "pf_broker.h"
#include "pf_error.h"
#include "pf_proto.h"
#include "pf_table.h"
#include <jansson.h>
#include <msgpack.h>

#define RATE_SECONDS    10 //  request rates are averaged over this window
#define LATENCY_BUCKETS 22 //  see pf_mgmt.c: 50 us .. 100 s, 1-2-5 steps, then +Inf
#define RECENT_ACTIONS  20

//  Requests accepted per second over the last RATE_SECONDS seconds.
typedef struct {
    uint64_t counts[RATE_SECONDS];
    int64_t second; //  the second counts[second % RATE_SECONDS] belongs to
} rate_t;

typedef struct {
    uint64_t buckets[LATENCY_BUCKETS];
    uint64_t count;
    double sum_s;
} histogram_t;

//  Upper bounds of the latency buckets in microseconds (1-2-5 steps); the
//  last bucket is +Inf.
static const uint64_t latency_bounds_us[LATENCY_BUCKETS - 1] = {
    50,      100,     200,     500,      1000,     2000,     5000,
    10000,   20000,   50000,   100000,   200000,   500000,   1000000,
    2000000, 5000000, 10000000, 20000000, 50000000, 100000000, 200000000};

static inline void histogram_add (histogram_t *histogram, uint64_t us)
{
    int bucket = 0;
    while (bucket < LATENCY_BUCKETS - 1 && us > latency_bounds_us[bucket])
        bucket++;
    histogram->buckets[bucket]++;
    histogram->count++;
    histogram->sum_s += (double) us / 1e6;
}

static inline void rate_add (rate_t *rate, int64_t now_ms)
{
    int64_t second = now_ms / 1000;
    if (second != rate->second) {
        //  Clear the seconds that passed with nothing counted.
        for (int64_t s = rate->second + 1; s <= second && s <= rate->second + RATE_SECONDS; s++)
            rate->counts[s % RATE_SECONDS] = 0;
        rate->second = second;
    }
    rate->counts[second % RATE_SECONDS]++;
}

typedef struct _agent_t agent_t;
typedef struct _service_t service_t;
typedef struct _session_t session_t;
typedef struct _request_t request_t;

typedef struct {
    uint32_t generation;
    bool serving;       //  listed in the agent's last HEARTBEAT
    bool draining;      //  serves only the sessions bound to it
    request_t *first;   //  requests sent to it and not answered by its agent, oldest
    request_t *last;    //  first (linked by slot_next); the oldest one runs
    uint32_t inflight;  //  how many
    uint32_t window;    //  the agent's limit for it (0: none given), see slot_has_room
    zlistx_t *pending;  //  requests only this bridge may run (created on demand)
    uint64_t requests;  //  routed to this generation
    uint64_t errors;    //  of those, answered with an error by the agent
    uint32_t pid;       //  reported by the agent (0 if not)
    uint64_t rss_kb;
} bridge_slot_t;

struct _agent_t {
    char key[2 * 256 + 1]; //  routing id in hex, the agents table key
    uint64_t serial;       //  unique per registration; sessions name it
    zframe_t *routing_id;
    char agent_id[PF_MAX_NAME + 1];
    char host[PF_MAX_NAME + 1];
    char curve_key[PF_CURVE_KEY_LEN + 1]; //  its CurveZMQ public key, "" without
    uint32_t pid;
    service_t *service;
    void *service_handle; //  in service->agents
    bridge_slot_t *bridges;
    uint32_t bridge_count;
    uint32_t cursor;   //  where the next idle-bridge search starts (round robin)
    int64_t expiry;    //  dead unless heard from before this
    int64_t silence_ms; //  how long it may be silent (heartbeat x liveness, or its own)
    int64_t last_sent; //  last message sent to it, for heartbeats
    int64_t joined;
    int64_t last_heard;
    uint64_t requests;
    uint64_t errors;
    bool draining; //  an operator drained it: no new work, leaves when idle
};

struct _service_t {
    char *name;
    zlistx_t *queue;  //  request_t, FIFO
    zlistx_t *agents; //  agent_t, least recently used first
    uint64_t requests;
    uint64_t errors[PF_ERROR_COUNT]; //  terminal answers by code ([0]: successes)
    rate_t rate;
    histogram_t latency;
};

//  Kept small: a million live sessions must be cheap.
struct _session_t {
    session_t *prev, *next;   //  all sessions, in creation order
    request_t *head, *tail;   //  waiting chain; head is the active request
    uint64_t agent_serial;    //  0 while unbound
    uint32_t bridge, generation;
    uint32_t count; //  requests in the chain
    int64_t last_used;
    uint64_t hash;  //  of key, for the session table
    uint64_t owner; //  hash of the client's CurveZMQ key (odd), 0: none
    char key[]; //  service length byte, service, session id, NUL
};

struct _request_t {
    uint64_t id;      //  broker-wide, used towards agents
    zframe_t *client; //  routing id; NULL once answered
    pf_msg_t msg;     //  the client's REQUEST (service, session, command, body...)
    service_t *service;
    session_t *session;
    request_t *session_next;
    request_t *parent; //  broadcast copy: the request it answers into
    int64_t deadline;
    int64_t accepted_us; //  monotonic, for the latency histogram
    int64_t started;     //  when it was sent to its bridge
    zlistx_t *queue; //  service queue or a bridge's pending list, while waiting
    void *queue_handle;
    agent_t *agent; //  while sent to an agent (running or waiting there)
    request_t *slot_next;
    uint32_t bridge;
    int attempts;
    bool answered; //  its terminal answer went out (it may still run)
    bool rebound;
    char *cancel_key;
    //  Broadcast parent: copies still out, and their results.
    uint32_t remaining;
    uint32_t result_count;
    msgpack_sbuffer *results;
};

struct _pf_broker_t {
    pf_broker_config_t config;
    pf_broker_send_fn *send;
    void *send_arg;
    zhashx_t *agents;    //  hex routing id -> agent_t
    zhashx_t *serials;   //  serial -> agent_t
    zhashx_t *services;  //  name -> service_t
    zhashx_t *requests;  //  uint64 id -> request_t
    zhashx_t *cancels;   //  "client hex/request id" -> request_t
    pf_table_t *sessions; //  key -> session_t
    session_t *first, *last; //  all sessions, in creation order
    session_t *sweep;        //  where the expiry sweep goes on
    request_t *spare_requests; //  freed requests kept for reuse (linked by session_next)
    size_t spare_count;
    uint64_t next_id;
    uint64_t next_serial;
    int64_t started;
    pf_broker_stats_t stats;
    rate_t rate;
    zlistx_t *actions; //  recent operator actions, JSON text, oldest first
    pf_broker_event_fn *event_fn;
    void *event_arg;
};

//  Publishes an event (takes the JSON object) if anyone listens.
void broker_event (pf_broker_t *self, const char *topic, json_t *event);

//  Finds an agent by its agent id (linear: operator actions only).
agent_t *broker_agent_by_id (pf_broker_t *self, const char *agent_id);

//  Sends a message to an agent.
void broker_send_to_agent (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now);

//  The session (service, id), or NULL.
session_t *broker_session_find (pf_broker_t *self, const char *service, const char *id);

//  Ends a session now (tells its bridge) and forgets it.
void broker_session_end (pf_broker_t *self, session_t *session, int64_t now);


#endif
