/*  pf_broker — routing, queueing, deadlines and agent tracking.

    Credits without prefetch: an agent lists the bridges that serve (HEARTBEAT)
    and the broker sends a bridge at most one request at a time, so the broker
    always knows which bridges are idle and a request never waits in an
    agent's buffer behind a slow one. Agents of a service are kept in LRU
    order; a dispatch moves the chosen agent to the end.

    Every accepted request is answered exactly once: by the agent's REPLY or
    ERROR, or by the broker itself (queue deadline, in-flight deadline plus a
    grace, agent lost). A request the broker already answered stays in the
    table, marked answered, until its agent reports back or dies, so a late
    reply is recognised and dropped, never delivered twice. */
#include "pf_broker.h"
#include "pf_error.h"
#include "pf_log.h"
#include "pf_proto.h"
#include <msgpack.h>

#define MAX_BRIDGES_PER_AGENT 4096
#define TICK_MS               20

typedef struct _agent_t agent_t;
typedef struct _service_t service_t;
typedef struct _request_t request_t;

typedef struct {
    uint32_t generation;
    bool serving;       //  listed in the agent's last HEARTBEAT
    request_t *request; //  the request it runs, if any
} bridge_slot_t;

struct _agent_t {
    char key[2 * 256 + 1]; //  routing id in hex, the agents table key
    zframe_t *routing_id;
    char agent_id[PF_MAX_NAME + 1];
    char host[PF_MAX_NAME + 1];
    uint32_t pid;
    service_t *service;
    void *service_handle; //  in service->agents
    bridge_slot_t *bridges;
    uint32_t bridge_count;
    uint32_t cursor;   //  where the next idle-bridge search starts (round robin)
    int64_t expiry;    //  dead unless heard from before this
    int64_t last_sent; //  last message sent to it, for heartbeats
};

struct _service_t {
    char *name;
    zlistx_t *queue;  //  request_t, FIFO
    zlistx_t *agents; //  agent_t, least recently used first
};

struct _request_t {
    uint64_t id;      //  broker-wide, used towards agents
    zframe_t *client; //  routing id; NULL once answered
    pf_msg_t msg;     //  the client's REQUEST (service, session, command, body...)
    service_t *service;
    int64_t deadline;
    void *queue_handle; //  in service->queue while queued
    agent_t *agent;     //  while running
    uint32_t bridge;
    int attempts;
};

struct _pf_broker_t {
    pf_broker_config_t config;
    pf_broker_send_fn *send;
    void *send_arg;
    zhashx_t *agents;   //  hex routing id -> agent_t
    zhashx_t *services; //  name -> service_t
    zhashx_t *requests; //  uint64 id -> request_t
    uint64_t next_id;
    int64_t started;
    pf_broker_stats_t stats;
};

void pf_broker_config_defaults (pf_broker_config_t *config)
{
    config->queue_max = 10000;
    config->default_timeout_ms = 30000;
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->inflight_grace_ms = 1500;
    config->startup_grace_ms = 5000;
    config->max_body = PF_DEFAULT_MAX_BODY;
}

//  --------------------------------------------------------------------------
//  Tables

static size_t id_hash (const void *key)
{
    uint64_t id = *(const uint64_t *) key;
    return (size_t) (id ^ (id >> 29));
}

static int id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void request_destroy (request_t **self_p)
{
    request_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->client);
    pf_msg_reset (&self->msg);
    free (self);
    *self_p = NULL;
}

static void service_destroy (void **item)
{
    service_t *self = *item;
    if (!self)
        return;
    zlistx_destroy (&self->queue);
    zlistx_destroy (&self->agents);
    free (self->name);
    free (self);
    *item = NULL;
}

static service_t *service_require (pf_broker_t *self, const char *name)
{
    service_t *service = zhashx_lookup (self->services, name);
    if (!service) {
        service = calloc (1, sizeof *service);
        service->name = strdup (name);
        service->queue = zlistx_new ();
        service->agents = zlistx_new ();
        zhashx_insert (self->services, name, service);
    }
    return service;
}

static void agent_free (void **item)
{
    agent_t *self = *item;
    if (!self)
        return;
    zframe_destroy (&self->routing_id);
    free (self->bridges);
    free (self);
    *item = NULL;
}

pf_broker_t *pf_broker_new (const pf_broker_config_t *config, pf_broker_send_fn *send, void *arg,
                            int64_t now)
{
    pf_broker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = *config;
    self->send = send;
    self->send_arg = arg;
    self->agents = zhashx_new ();
    zhashx_set_destructor (self->agents, agent_free);
    self->services = zhashx_new ();
    zhashx_set_destructor (self->services, service_destroy);
    self->requests = zhashx_new ();
    zhashx_set_key_hasher (self->requests, id_hash);
    zhashx_set_key_comparator (self->requests, id_compare);
    zhashx_set_key_duplicator (self->requests, NULL);
    zhashx_set_key_destructor (self->requests, NULL);
    self->next_id = 1;
    self->started = now;
    return self;
}

void pf_broker_destroy (pf_broker_t **self_p)
{
    pf_broker_t *self = *self_p;
    if (!self)
        return;
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        request_destroy (&request);
    zhashx_destroy (&self->requests);
    zhashx_destroy (&self->agents);
    zhashx_destroy (&self->services);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Sending

static void send_to (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg)
{
    zmsg_t *out = pf_msg_encode (msg);
    if (!out || self->send (self->send_arg, routing_id, out) != 0)
        self->stats.send_failures++;
}

static void send_to_agent (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now)
{
    agent->last_sent = now;
    send_to (self, agent->routing_id, msg);
}

static void send_disconnect (pf_broker_t *self, zframe_t *routing_id, const char *reason)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_DISCONNECT;
    msg.message = strdup (reason);
    send_to (self, routing_id, &msg);
    pf_msg_reset (&msg);
}

//  Answers a client with an error; client and request id given directly so
//  that malformed requests (never accepted) can be answered too.
static void send_client_error (pf_broker_t *self, zframe_t *client, uint64_t request_id, int code,
                               const char *message, zframe_t **detail_p)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_ERROR;
    msg.request_id = request_id;
    msg.code = (uint16_t) code;
    msg.message = message && *message ? strdup (message) : NULL;
    if (detail_p) {
        msg.detail = *detail_p;
        *detail_p = NULL;
    }
    send_to (self, client, &msg);
    pf_msg_reset (&msg);
}

//  Removes a request from the table and frees it.
static void request_forget (pf_broker_t *self, request_t *request)
{
    zhashx_delete (self->requests, &request->id);
    request_destroy (&request);
}

//  Gives the request its one terminal error answer. The request stays in
//  the table if it still runs on an agent (to recognise the late reply).
static void request_fail (pf_broker_t *self, request_t *request, int code, const char *message,
                          zframe_t **detail_p)
{
    if (request->client) {
        send_client_error (self, request->client, request->msg.request_id, code, message,
                           detail_p);
        zframe_destroy (&request->client);
        self->stats.replies++;
        self->stats.errors[code < 32 ? code : PF_INTERNAL]++;
    }
    if (!request->agent)
        request_forget (self, request);
}

static void request_succeed (pf_broker_t *self, request_t *request, uint32_t flags,
                             zframe_t **body_p)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_REPLY;
    msg.request_id = request->msg.request_id;
    msg.flags = flags;
    msg.body = *body_p;
    *body_p = NULL;
    send_to (self, request->client, &msg);
    pf_msg_reset (&msg);
    zframe_destroy (&request->client);
    self->stats.replies++;
    self->stats.errors[PF_OK]++;
}

//  --------------------------------------------------------------------------
//  Dispatch

//  The first agent in LRU order with an idle serving bridge, and that bridge.
static agent_t *find_idle_bridge (service_t *service, uint32_t *bridge_p)
{
    for (agent_t *agent = zlistx_first (service->agents); agent;
         agent = zlistx_next (service->agents))
        for (uint32_t step = 0; step < agent->bridge_count; step++) {
            uint32_t index = (agent->cursor + step) % agent->bridge_count;
            bridge_slot_t *slot = &agent->bridges[index];
            if (slot->serving && !slot->request) {
                agent->cursor = index + 1;
                *bridge_p = index;
                return agent;
            }
        }
    return NULL;
}

static void start_request (pf_broker_t *self, request_t *request, agent_t *agent, uint32_t bridge,
                           int64_t now)
{
    bridge_slot_t *slot = &agent->bridges[bridge];
    slot->request = request;
    request->agent = agent;
    request->bridge = bridge;
    request->attempts++;
    zlistx_move_end (agent->service->agents, agent->service_handle);

    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_REQUEST;
    msg.request_id = request->id;
    memcpy (msg.session, request->msg.session, sizeof msg.session);
    memcpy (msg.command_name, request->msg.command_name, sizeof msg.command_name);
    msg.bridge = bridge;
    msg.generation = slot->generation;
    int64_t left = request->deadline - now;
    msg.timeout_ms = (uint32_t) (left > 0 ? left : 1);
    msg.flags = request->msg.flags;
    //  The body goes to the agent as is; a copy stays for a possible re-run
    //  of an idempotent request on another agent.
    msg.body = request->msg.body ? zframe_dup (request->msg.body) : NULL;
    send_to_agent (self, agent, &msg, now);
    pf_msg_reset (&msg);
}

static void dispatch (pf_broker_t *self, service_t *service, int64_t now)
{
    while (zlistx_size (service->queue) > 0) {
        uint32_t bridge;
        agent_t *agent = find_idle_bridge (service, &bridge);
        if (!agent)
            return;
        request_t *request = zlistx_detach (service->queue, NULL);
        request->queue_handle = NULL;
        start_request (self, request, agent, bridge, now);
    }
}

static void enqueue (service_t *service, request_t *request, bool at_front)
{
    request->queue_handle = at_front ? zlistx_add_start (service->queue, request)
                                     : zlistx_add_end (service->queue, request);
}

//  Takes a request back from its agent's bridge (agent lost or the request
//  never started). Idempotent or never-started requests run again.
static void request_unbind (request_t *request)
{
    request->agent->bridges[request->bridge].request = NULL;
    request->agent = NULL;
}

//  --------------------------------------------------------------------------
//  Agents

static void agent_remove (pf_broker_t *self, agent_t *agent, const char *why, int64_t now)
{
    pf_info ("agent %s (%s pid %u) removed: %s", agent->agent_id, agent->host, agent->pid, why);
    service_t *service = agent->service;
    for (uint32_t index = 0; index < agent->bridge_count; index++) {
        request_t *request = agent->bridges[index].request;
        if (!request)
            continue;
        request_unbind (request);
        if (!request->client)
            request_forget (self, request);
        else if ((request->msg.flags & PF_FLAG_IDEMPOTENT) && request->attempts < 2)
            enqueue (service, request, true);
        else
            request_fail (self, request, PF_WORKER_LOST, "the agent running the request was lost",
                          NULL);
    }
    zlistx_delete (service->agents, agent->service_handle);
    zhashx_delete (self->agents, agent->key);
    dispatch (self, service, now);
}

static void routing_key (zframe_t *routing_id, char *key)
{
    static const char hex[] = "0123456789abcdef";
    const byte *data = zframe_data (routing_id);
    size_t size = zframe_size (routing_id);
    if (size > 256)
        size = 256;
    for (size_t i = 0; i < size; i++) {
        key[2 * i] = hex[data[i] >> 4];
        key[2 * i + 1] = hex[data[i] & 15];
    }
    key[2 * size] = 0;
}

static void handle_ready (pf_broker_t *self, zframe_t *routing_id, const char *key, pf_msg_t *msg,
                          int64_t now)
{
    agent_t *old = zhashx_lookup (self->agents, key);
    if (old)
        agent_remove (self, old, "registered again", now);
    if (msg->capacity == 0 || msg->capacity > MAX_BRIDGES_PER_AGENT) {
        self->stats.malformed++;
        send_disconnect (self, routing_id, "READY: capacity out of range");
        return;
    }
    agent_t *agent = calloc (1, sizeof *agent);
    strcpy (agent->key, key);
    agent->routing_id = zframe_dup (routing_id);
    memcpy (agent->agent_id, msg->agent_id, sizeof agent->agent_id);
    memcpy (agent->host, msg->host, sizeof agent->host);
    agent->pid = msg->pid;
    agent->bridge_count = msg->capacity;
    agent->bridges = calloc (msg->capacity, sizeof *agent->bridges);
    agent->service = service_require (self, msg->service);
    agent->service_handle = zlistx_add_start (agent->service->agents, agent);
    agent->expiry = now + (int64_t) self->config.heartbeat_ms * self->config.liveness;
    agent->last_sent = now;
    zhashx_insert (self->agents, agent->key, agent);
    pf_info ("agent %s (%s pid %u) ready for '%s' with %u bridges", agent->agent_id, agent->host,
             agent->pid, msg->service, msg->capacity);
}

//  HEARTBEAT lists the bridges that serve: a msgpack array of
//  [index, generation, state] arrays. Bridges not listed do not serve.
static int update_bridges (agent_t *agent, zframe_t *bridges)
{
    if (!bridges || zframe_size (bridges) == 0)
        return 0;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&result, (const char *) zframe_data (bridges), zframe_size (bridges),
                             &offset) == MSGPACK_UNPACK_SUCCESS
        && offset == zframe_size (bridges) && result.data.type == MSGPACK_OBJECT_ARRAY) {
        msgpack_object_array *list = &result.data.via.array;
        for (uint32_t index = 0; index < agent->bridge_count; index++)
            agent->bridges[index].serving = false;
        rc = 0;
        for (uint32_t i = 0; i < list->size; i++) {
            msgpack_object *entry = &list->ptr[i];
            if (entry->type != MSGPACK_OBJECT_ARRAY || entry->via.array.size < 2
                || entry->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER
                || entry->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER
                || entry->via.array.ptr[0].via.u64 >= agent->bridge_count) {
                rc = -1;
                continue;
            }
            bridge_slot_t *slot = &agent->bridges[entry->via.array.ptr[0].via.u64];
            slot->generation = (uint32_t) entry->via.array.ptr[1].via.u64;
            slot->serving = true;
        }
    }
    msgpack_unpacked_destroy (&result);
    return rc;
}

//  The request an agent answers, if it is the one that agent's bridge runs.
static request_t *running_request (pf_broker_t *self, agent_t *agent, pf_msg_t *msg)
{
    request_t *request = zhashx_lookup (self->requests, &msg->request_id);
    if (!request || request->agent != agent) {
        self->stats.late_replies++;
        return NULL;
    }
    request_unbind (request);
    return request;
}

static void handle_agent_reply (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now)
{
    request_t *request = running_request (self, agent, msg);
    if (request) {
        if (request->client)
            request_succeed (self, request, msg->flags, &msg->body);
        else
            self->stats.late_replies++;
        request_forget (self, request);
    }
    dispatch (self, agent->service, now);
}

static void handle_agent_error (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now)
{
    request_t *request = running_request (self, agent, msg);
    if (request) {
        if (!request->client) {
            self->stats.late_replies++;
            request_forget (self, request);
        }
        else if (msg->code == PF_BUSY) {
            //  The agent never started it (its bridge went away meanwhile).
            request->attempts--;
            enqueue (agent->service, request, true);
        }
        else
            request_fail (self, request, msg->code < PF_ERROR_COUNT ? msg->code : PF_INTERNAL,
                          msg->message, &msg->detail);
    }
    dispatch (self, agent->service, now);
}

static void handle_agent (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg, int64_t now)
{
    char key[2 * 256 + 1];
    routing_key (routing_id, key);
    if (msg->command == PF_W_READY) {
        handle_ready (self, routing_id, key, msg, now);
        return;
    }
    agent_t *agent = zhashx_lookup (self->agents, key);
    if (!agent) {
        //  Not registered (or forgotten after it went silent): make it start over.
        if (msg->command != PF_W_DISCONNECT)
            send_disconnect (self, routing_id, "not registered");
        return;
    }
    agent->expiry = now + (int64_t) self->config.heartbeat_ms * self->config.liveness;
    switch (msg->command) {
    case PF_W_HEARTBEAT:
        if (update_bridges (agent, msg->bridges) != 0)
            self->stats.malformed++;
        dispatch (self, agent->service, now);
        break;
    case PF_W_REPLY:
        handle_agent_reply (self, agent, msg, now);
        break;
    case PF_W_ERROR:
        handle_agent_error (self, agent, msg, now);
        break;
    case PF_W_DISCONNECT:
        agent_remove (self, agent, msg->message ? msg->message : "disconnected", now);
        break;
    case PF_W_SESSION_LOST:
        break; //  sessions are not bound yet
    default:
        self->stats.malformed++;
        break;
    }
}

//  --------------------------------------------------------------------------
//  Clients

static void handle_client_request (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg,
                                   int64_t now)
{
    service_t *service = zhashx_lookup (self->services, msg->service);
    bool starting = now - self->started < self->config.startup_grace_ms;
    if (!service && !starting) {
        send_client_error (self, routing_id, msg->request_id, PF_UNKNOWN_SERVICE,
                           "no agent serves this service", NULL);
        return;
    }
    if (msg->flags & PF_FLAG_BROADCAST) {
        send_client_error (self, routing_id, msg->request_id, PF_BAD_REQUEST,
                           "broadcast is not supported by this broker yet", NULL);
        return;
    }
    if (!service)
        service = service_require (self, msg->service);
    if (zlistx_size (service->queue) >= self->config.queue_max) {
        send_client_error (self, routing_id, msg->request_id, PF_BUSY,
                           "service queue full; retry after 100 ms", NULL);
        self->stats.errors[PF_BUSY]++;
        return;
    }
    request_t *request = calloc (1, sizeof *request);
    request->id = self->next_id++;
    request->client = zframe_dup (routing_id);
    request->msg = *msg; //  takes the body
    pf_msg_init (msg);
    request->service = service;
    uint32_t timeout = request->msg.timeout_ms ? request->msg.timeout_ms
                                               : self->config.default_timeout_ms;
    request->deadline = now + timeout;
    zhashx_insert (self->requests, &request->id, request);
    self->stats.requests++;
    enqueue (service, request, false);
    dispatch (self, service, now);
}

static void handle_client_cancel (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg)
{
    //  Cancel is best effort and matched by the client's own id: find the
    //  queued request among that client's (a linear scan until sessions and
    //  cancel get their own index).
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests)) {
        if (request->client && request->msg.request_id == msg->request_id
            && zframe_eq (request->client, routing_id) && request->queue_handle) {
            zlistx_delete (request->service->queue, request->queue_handle);
            request->queue_handle = NULL;
            request_fail (self, request, PF_CANCELLED, "cancelled by the client", NULL);
            return;
        }
    }
}

void pf_broker_handle (pf_broker_t *self, zmsg_t **msg_p, int64_t now)
{
    zmsg_t *in = *msg_p;
    *msg_p = NULL;
    zframe_t *routing_id = zmsg_pop (in);
    if (!routing_id) {
        zmsg_destroy (&in);
        return;
    }
    pf_msg_t msg;
    pf_msg_init (&msg);
    char err[256];
    int rc = pf_msg_decode (&msg, &in, self->config.max_body, err, sizeof err);
    if (rc != PF_OK) {
        self->stats.malformed++;
        pf_debug ("malformed message dropped: %s", err);
        if (msg.proto == PF_PROTO_C && msg.command == PF_C_REQUEST && msg.has_request_id)
            send_client_error (self, routing_id, msg.request_id, rc, err, NULL);
    }
    else if (msg.proto == PF_PROTO_W)
        handle_agent (self, routing_id, &msg, now);
    else if (msg.command == PF_C_REQUEST)
        handle_client_request (self, routing_id, &msg, now);
    else if (msg.command == PF_C_CANCEL)
        handle_client_cancel (self, routing_id, &msg);
    else
        self->stats.malformed++; //  REPLY/ERROR are broker-to-client only
    pf_msg_reset (&msg);
    zframe_destroy (&routing_id);
}

//  --------------------------------------------------------------------------
//  Timers

static void expire_queued (pf_broker_t *self, service_t *service, int64_t now)
{
    request_t *request = zlistx_first (service->queue);
    while (request) {
        request_t *next = zlistx_next (service->queue);
        if (request->deadline <= now) {
            zlistx_delete (service->queue, request->queue_handle);
            request->queue_handle = NULL;
            request_fail (self, request, PF_TIMEOUT, "deadline passed while queued", NULL);
        }
        request = next;
    }
}

static void check_agent (pf_broker_t *self, agent_t *agent, int64_t now)
{
    for (uint32_t index = 0; index < agent->bridge_count; index++) {
        request_t *request = agent->bridges[index].request;
        if (request && request->client
            && request->deadline + self->config.inflight_grace_ms <= now)
            request_fail (self, request, PF_TIMEOUT, "deadline passed; the agent did not answer",
                          NULL);
    }
    if (now - agent->last_sent >= self->config.heartbeat_ms) {
        pf_msg_t msg;
        pf_msg_init (&msg);
        msg.proto = PF_PROTO_W;
        msg.command = PF_W_HEARTBEAT;
        send_to_agent (self, agent, &msg, now);
    }
}

int64_t pf_broker_tick (pf_broker_t *self, int64_t now)
{
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        expire_queued (self, service, now);

    //  Collect expired agents first: removal changes the table being walked.
    zlistx_t *dead = zlistx_new ();
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents)) {
        if (agent->expiry <= now)
            zlistx_add_end (dead, agent);
        else
            check_agent (self, agent, now);
    }
    for (agent_t *agent = zlistx_first (dead); agent; agent = zlistx_next (dead))
        agent_remove (self, agent, "heartbeat expired", now);
    zlistx_destroy (&dead);

    //  Queued and running requests have deadlines to watch at a fine grain;
    //  an idle broker only needs to heartbeat.
    return zhashx_size (self->requests) > 0 ? TICK_MS : self->config.heartbeat_ms / 4 + 1;
}

void pf_broker_shutdown (pf_broker_t *self)
{
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents))
        send_disconnect (self, agent->routing_id, "broker shutting down");
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        if (request->client)
            send_client_error (self, request->client, request->msg.request_id, PF_SHUTTING_DOWN,
                               "the broker is shutting down", NULL);
}

void pf_broker_stats (pf_broker_t *self, pf_broker_stats_t *stats)
{
    *stats = self->stats;
    stats->agents = zhashx_size (self->agents);
    stats->queued = 0;
    stats->inflight = 0;
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        stats->queued += zlistx_size (service->queue);
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        stats->inflight += request->agent != NULL;
}
