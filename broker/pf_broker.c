/*  pf_broker — routing, sessions, queueing, deadlines and agent tracking.

    Credits without prefetch: an agent lists the bridges that serve (HEARTBEAT)
    and the broker sends a bridge at most one request at a time, so the broker
    always knows which bridges are idle and a request never waits in an
    agent's buffer behind a slow one. Agents of a service are kept in LRU
    order; a dispatch moves the chosen agent to the end.

    Where a request waits:
    - no session: in its service's queue, until any idle bridge takes it;
    - a session's requests form a chain (FIFO, one at a time). Only the head
      is active. An unbound session's head waits in the service queue and
      binds the session to the bridge that takes it; a bound session's head
      waits in that bridge's own pending list, which a bridge serves before
      the service queue;
    - a broadcast request's copies wait in every serving bridge's pending list.

    Sessions are checked lazily: a session names (agent serial, bridge,
    generation), and a binding whose agent is gone or whose bridge moved to
    another generation is found stale on its next use. So losing an agent
    costs O(its bridges), not O(sessions), and a session costs only its table
    entry. Idle sessions expire by a bounded sweep over all sessions.

    Every accepted request is answered exactly once: by the agent's REPLY or
    ERROR, or by the broker itself (queue deadline, in-flight deadline plus a
    grace, agent lost, cancel). A request the broker already answered stays
    in the table, marked answered, until its agent reports back or dies, so a
    late reply is recognised and dropped, never delivered twice. */
#include "pf_batch.h"
#include "pf_broker.h"
#include "pf_broker_state.h"
#include "pf_error.h"
#include "pf_log.h"
#include "pf_proto.h"
#include <msgpack.h>
#include <sys/random.h>

#define MAX_BRIDGES_PER_AGENT 4096
#define TICK_MS               20

static void dispatch (pf_broker_t *self, service_t *service, int64_t now);
static void run_bridge (pf_broker_t *self, agent_t *agent, uint32_t bridge, int64_t now);
static void request_done (pf_broker_t *self, request_t *request, int64_t now);

void pf_broker_config_defaults (pf_broker_config_t *config)
{
    config->queue_max = 10000;
    config->session_queue_max = 1000;
    config->session_ttl_s = 1800;
    config->default_timeout_ms = 30000;
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->inflight_grace_ms = 1500;
    config->startup_grace_ms = 5000;
    config->max_body = PF_DEFAULT_MAX_BODY;
    config->window = 32;
    config->window_ms = 10;
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

static zhashx_t *id_table (void)
{
    zhashx_t *table = zhashx_new ();
    zhashx_set_key_hasher (table, id_hash);
    zhashx_set_key_comparator (table, id_compare);
    zhashx_set_key_duplicator (table, NULL);
    zhashx_set_key_destructor (table, NULL);
    return table;
}

//  A session key: the service's length as one byte (never 0), the service,
//  the session id, NUL. Unambiguous, and a plain C string for zhashx.
static void session_key (char *key, const char *service, const char *session)
{
    size_t length = strlen (service);
    key[0] = (char) length;
    memcpy (key + 1, service, length);
    strcpy (key + 1 + length, session);
}

static bool session_match (const void *item, const void *key)
{
    return strcmp (((const session_t *) item)->key, key) == 0;
}

static const char *session_id_of (session_t *session)
{
    return session->key + 1 + (unsigned char) session->key[0];
}

#define SPARE_REQUESTS_MAX 4096

//  Requests are recycled through a free list: a request is too large for
//  malloc's per-thread cache, and with a million sessions in the heap the
//  general allocator's bin searches came to dominate routing.
static request_t *request_alloc (pf_broker_t *self)
{
    request_t *request = self->spare_requests;
    if (!request)
        return calloc (1, sizeof *request);
    self->spare_requests = request->session_next;
    self->spare_count--;
    memset (request, 0, sizeof *request);
    return request;
}

static void request_destroy (pf_broker_t *self, request_t **self_p)
{
    request_t *request = *self_p;
    if (!request)
        return;
    zframe_destroy (&request->client);
    pf_msg_reset (&request->msg);
    free (request->cancel_key);
    if (request->results)
        msgpack_sbuffer_free (request->results);
    if (self && self->spare_count < SPARE_REQUESTS_MAX) {
        request->session_next = self->spare_requests;
        self->spare_requests = request;
        self->spare_count++;
    }
    else
        free (request);
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
    for (uint32_t index = 0; index < self->bridge_count; index++)
        zlistx_destroy (&self->bridges[index].pending);
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
    self->serials = id_table ();
    self->services = zhashx_new ();
    zhashx_set_destructor (self->services, service_destroy);
    self->requests = id_table ();
    self->cancels = zhashx_new ();
    zhashx_set_key_duplicator (self->cancels, NULL);
    zhashx_set_key_destructor (self->cancels, NULL);
    self->sessions = pf_table_new (session_match);
    //  Request ids start at a random point: a restarted broker must not
    //  reuse the ids of its previous run, or an agent's late reply to an old
    //  request (delivered once its socket reconnects) would answer a new one.
    if (getrandom (&self->next_id, sizeof self->next_id, 0) != sizeof self->next_id)
        self->next_id = (uint64_t) zclock_time () << 20;
    self->next_id = (self->next_id >> 2) | 1; //  never 0, and far from wrapping
    self->next_serial = 1;
    self->started = now;
    self->actions = zlistx_new ();
    zlistx_set_destructor (self->actions, (zlistx_destructor_fn *) zstr_free);
    return self;
}

void pf_broker_destroy (pf_broker_t **self_p)
{
    pf_broker_t *self = *self_p;
    if (!self)
        return;
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        request_destroy (NULL, &request);
    zhashx_destroy (&self->requests);
    while (self->spare_requests) {
        request_t *next = self->spare_requests->session_next;
        free (self->spare_requests);
        self->spare_requests = next;
    }
    zhashx_destroy (&self->cancels);
    while (self->first) {
        session_t *next = self->first->next;
        free (self->first);
        self->first = next;
    }
    pf_table_destroy (&self->sessions);
    zhashx_destroy (&self->serials);
    zhashx_destroy (&self->agents);
    zlistx_destroy (&self->actions);
    zhashx_destroy (&self->services);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Sending

static void send_to (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg, int flags)
{
    if (self->send (self->send_arg, routing_id, msg, flags) != 0)
        self->stats.send_failures++;
}

//  A request's answer may wait for its client's BATCH if the client reads them.
static int answer_flags (const request_t *request)
{
    return request && (request->msg.flags & PF_FLAG_BATCH_OK) ? PF_MSG_BATCHABLE : 0;
}

void broker_send_to_agent (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now)
{
    agent->last_sent = now;
    send_to (self, agent->routing_id, msg, 0);
}

static void send_disconnect (pf_broker_t *self, zframe_t *routing_id, const char *reason)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_DISCONNECT;
    msg.message = strdup (reason);
    send_to (self, routing_id, &msg, 0);
    pf_msg_reset (&msg);
}

//  Answers a client with an error; client and request id given directly so
//  that requests never accepted can be answered too.
//  request: the accepted request this answers, or NULL (a refusal).
static void send_client_error (pf_broker_t *self, zframe_t *client, uint64_t request_id, int code,
                               const char *message, zframe_t **detail_p, const request_t *request)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_ERROR;
    msg.request_id = request_id;
    msg.code = (uint16_t) code;
    msg.message = message && *message ? strndup (message, PF_MAX_MESSAGE) : NULL;
    if (detail_p) {
        msg.detail = *detail_p;
        *detail_p = NULL;
    }
    send_to (self, client, &msg, answer_flags (request));
    pf_msg_reset (&msg);
    self->stats.errors[code < 32 ? code : PF_INTERNAL]++;
}

static void send_client_reply (pf_broker_t *self, request_t *request, uint32_t flags,
                               zframe_t *body)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_REPLY;
    msg.request_id = request->msg.request_id;
    msg.flags = flags | (request->rebound ? PF_REPLY_REBOUND : 0);
    msg.body = body;
    send_to (self, request->client, &msg, answer_flags (request));
    pf_msg_reset (&msg);
    self->stats.errors[PF_OK]++;
}

//  --------------------------------------------------------------------------
//  Requests: waiting, answering, forgetting

static void request_enqueue (request_t *request, zlistx_t *queue, bool at_front)
{
    request->queue = queue;
    request->queue_handle = at_front ? zlistx_add_start (queue, request)
                                     : zlistx_add_end (queue, request);
}

static void request_dequeue (request_t *request)
{
    if (request->queue) {
        zlistx_detach (request->queue, request->queue_handle);
        request->queue = NULL;
        request->queue_handle = NULL;
    }
}

//  Frees a request that is answered and runs nowhere.
static void request_forget (pf_broker_t *self, request_t *request)
{
    if (request->cancel_key)
        zhashx_delete (self->cancels, request->cancel_key);
    zhashx_delete (self->requests, &request->id);
    request_destroy (self, &request);
}

//  Counts a client's terminal answer: by code, and its latency.
static void record_answer (request_t *request, int code)
{
    service_t *service = request->service;
    service->errors[code < PF_ERROR_COUNT ? code : PF_INTERNAL]++;
    histogram_add (&service->latency, (uint64_t) (zclock_usecs () - request->accepted_us));
}

//  Appends one broadcast copy's outcome to its parent's combined result; the
//  last copy sends it.
static void broadcast_collect (pf_broker_t *self, request_t *copy, int code, const char *message,
                               zframe_t *body, int64_t now)
{
    request_t *parent = copy->parent;
    msgpack_packer packer;
    msgpack_packer_init (&packer, parent->results, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 5);
    msgpack_pack_str_with_body (&packer, "agent", 5);
    msgpack_pack_str_with_body (&packer, copy->msg.agent_id, strlen (copy->msg.agent_id));
    msgpack_pack_str_with_body (&packer, "bridge", 6);
    msgpack_pack_uint32 (&packer, copy->bridge);
    msgpack_pack_str_with_body (&packer, "ok", 2);
    if (code == PF_OK)
        msgpack_pack_true (&packer);
    else
        msgpack_pack_false (&packer);
    if (code == PF_OK) {
        msgpack_pack_str_with_body (&packer, "result", 6);
        if (body && zframe_size (body))
            msgpack_sbuffer_write (parent->results, (const char *) zframe_data (body),
                                   zframe_size (body));
        else
            msgpack_pack_nil (&packer);
    }
    else {
        msgpack_pack_str_with_body (&packer, "error", 5);
        const char *name = pf_error_name (code);
        msgpack_pack_str_with_body (&packer, name, strlen (name));
    }
    msgpack_pack_str_with_body (&packer, "message", 7);
    message = message ? message : "";
    msgpack_pack_str_with_body (&packer, message, strlen (message));
    parent->result_count++;
    if (--parent->remaining > 0)
        return;
    //  All copies are in: [{agent, bridge, ok, result|error, message}, ...]
    if (!parent->answered) {
        parent->answered = true;
        record_answer (parent, PF_OK);
        msgpack_sbuffer head;
        msgpack_sbuffer_init (&head);
        msgpack_packer head_packer;
        msgpack_packer_init (&head_packer, &head, msgpack_sbuffer_write);
        msgpack_pack_array (&head_packer, parent->result_count);
        zframe_t *combined = zframe_new (NULL, head.size + parent->results->size);
        memcpy (zframe_data (combined), head.data, head.size);
        memcpy (zframe_data (combined) + head.size, parent->results->data,
                parent->results->size);
        msgpack_sbuffer_destroy (&head);
        send_client_reply (self, parent, 0, combined);
        zframe_destroy (&parent->client);
        self->stats.replies++;
    }
    request_done (self, parent, now);
}

//  The one terminal error answer of a request.
static void request_fail (pf_broker_t *self, request_t *request, int code, const char *message,
                          zframe_t **detail_p, int64_t now)
{
    if (request->answered)
        ;
    else if (request->parent) {
        request->answered = true;
        broadcast_collect (self, request, code, message, NULL, now);
    }
    else {
        request->answered = true;
        record_answer (request, code);
        send_client_error (self, request->client, request->msg.request_id, code, message,
                           detail_p, request);
        zframe_destroy (&request->client);
        self->stats.replies++;
    }
    request_done (self, request, now);
}

static void request_succeed (pf_broker_t *self, request_t *request, uint32_t flags,
                             zframe_t **body_p, int64_t now)
{
    if (request->answered)
        ;
    else if (request->parent) {
        request->answered = true;
        broadcast_collect (self, request, PF_OK, NULL, *body_p, now);
    }
    else {
        request->answered = true;
        record_answer (request, PF_OK);
        send_client_reply (self, request, flags, *body_p);
        *body_p = NULL;
        self->stats.replies++;
    }
    zframe_destroy (&request->client);
    request_done (self, request, now);
}

//  --------------------------------------------------------------------------
//  Sessions

//  Sessions are listed in creation order and never move in the list: a
//  request only stamps last_used. Expiry sweeps the list a bounded stretch at
//  a time (expire_sessions). An LRU list would expire exactly on time but
//  relinks two random neighbours on every request; at a million sessions
//  those cache misses cost more than the routing.
static void session_unlink (pf_broker_t *self, session_t *session)
{
    if (self->sweep == session)
        self->sweep = session->next;
    if (session->prev)
        session->prev->next = session->next;
    else
        self->first = session->next;
    if (session->next)
        session->next->prev = session->prev;
    else
        self->last = session->prev;
}

static void session_touch (session_t *session, int64_t now)
{
    session->last_used = now;
}

session_t *broker_session_find (pf_broker_t *self, const char *service, const char *id)
{
    char key[2 * PF_MAX_NAME + 2];
    session_key (key, service, id);
    return pf_table_find (self->sessions, pf_table_hash (key, strlen (key)), key);
}

static session_t *session_require (pf_broker_t *self, const char *service, const char *id,
                                   int64_t now)
{
    char key[2 * PF_MAX_NAME + 2];
    session_key (key, service, id);
    size_t size = strlen (key) + 1;
    uint64_t hash = pf_table_hash (key, size - 1);
    session_t *session = pf_table_find (self->sessions, hash, key);
    if (!session) {
        session = calloc (1, sizeof *session + size);
        session->hash = hash;
        memcpy (session->key, key, size);
        pf_table_insert (self->sessions, hash, session);
        session->last_used = now;
        session->prev = self->last;
        if (self->last)
            self->last->next = session;
        else
            self->first = session;
        self->last = session;
    }
    return session;
}

static void session_delete (pf_broker_t *self, session_t *session)
{
    session_unlink (self, session);
    pf_table_remove (self->sessions, session->hash, session->key);
    free (session);
}

static void session_bind (session_t *session, agent_t *agent, uint32_t bridge)
{
    session->agent_serial = agent->serial;
    session->bridge = bridge;
    session->generation = agent->bridges[bridge].generation;
}

//  The agent holding a bound session's bridge, or NULL if that bridge (this
//  generation) is gone.
static agent_t *session_holder (pf_broker_t *self, session_t *session)
{
    agent_t *agent = zhashx_lookup (self->serials, &session->agent_serial);
    if (!agent || session->bridge >= agent->bridge_count)
        return NULL;
    bridge_slot_t *slot = &agent->bridges[session->bridge];
    if (!slot->serving || slot->generation != session->generation)
        return NULL;
    return agent;
}

static void send_session_end (pf_broker_t *self, session_t *session, int64_t now)
{
    agent_t *agent = session_holder (self, session);
    if (!agent)
        return;
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_SESSION_END;
    snprintf (msg.session, sizeof msg.session, "%s", session_id_of (session));
    msg.bridge = session->bridge;
    msg.generation = session->generation;
    broker_send_to_agent (self, agent, &msg, now);
    pf_msg_reset (&msg);
}

static void session_event (pf_broker_t *self, const char *topic, session_t *session)
{
    if (!self->event_fn)
        return;
    char service[PF_MAX_NAME + 1];
    size_t length = (unsigned char) session->key[0];
    memcpy (service, session->key + 1, length);
    service[length] = 0;
    broker_event (self, topic,
                  json_pack ("{s:s, s:s}", "service", service, "session", session_id_of (session)));
}

//  Makes a session's head request active: on its bridge if the session is
//  bound there, in the service queue if unbound. A stale binding is a lost
//  session: SESSION_LOST under hard affinity, a fresh binding under soft.
static void session_activate (pf_broker_t *self, request_t *request, int64_t now)
{
    session_t *session = request->session;
    if (session->agent_serial) {
        agent_t *agent = session_holder (self, session);
        if (agent) {
            bridge_slot_t *slot = &agent->bridges[session->bridge];
            if (!slot->pending)
                slot->pending = zlistx_new ();
            request_enqueue (request, slot->pending, false);
            run_bridge (self, agent, session->bridge, now);
            return;
        }
        self->stats.sessions_lost++;
        session_event (self, "session.lost", session);
        session->agent_serial = 0;
        if (!(request->msg.flags & PF_FLAG_SOFT)) {
            request_fail (self, request, PF_SESSION_LOST,
                          "the bridge holding this session is gone", NULL, now);
            return;
        }
        request->rebound = true;
    }
    request_enqueue (request, request->service->queue, false);
    dispatch (self, request->service, now);
}

//  A request of a session leaves the chain (answered, or about to be); the
//  next one becomes active.
static void session_advance (pf_broker_t *self, request_t *request, int64_t now)
{
    session_t *session = request->session;
    request->session = NULL;
    if (session->head != request)
        return; //  never activated (refused before it joined)
    session->head = request->session_next;
    if (!session->head)
        session->tail = NULL;
    session->count--;
    session_touch (session, now);
    if (session->head)
        session_activate (self, session->head, now);
}

//  --------------------------------------------------------------------------
//  Dispatch

//  Called once a request has its terminal answer (and is no longer waiting):
//  frees it unless it still runs, and moves its session along.
static void request_done (pf_broker_t *self, request_t *request, int64_t now)
{
    request_dequeue (request);
    if (request->session)
        session_advance (self, request, now);
    if (!request->agent)
        request_forget (self, request);
}

//  A bridge takes one more request when it is idle, or when its window
//  has room and its oldest request has run less than window_ms: requests
//  are short there, and the next one waiting at the agent saves a round
//  trip; a request never goes to wait behind a long one.
static bool slot_has_room (pf_broker_t *self, bridge_slot_t *slot, int64_t now)
{
    //  The agent says 1 for a bridge whose requests take long.
    uint32_t window = slot->window && slot->window < self->config.window ? slot->window
                                                                         : self->config.window;
    return !slot->first
        || (slot->inflight < window
            && now - slot->first->started < (int64_t) self->config.window_ms);
}

//  The bridge for the next request of the service queue: an idle one if
//  any (agents in LRU order, bridges round robin), else the least loaded
//  one with room. Bridges with requests of their own waiting are skipped.
static agent_t *find_bridge (pf_broker_t *self, service_t *service, uint32_t *bridge_p,
                             int64_t now)
{
    agent_t *best = NULL;
    uint32_t best_index = 0, best_load = UINT32_MAX;
    for (agent_t *agent = zlistx_first (service->agents); agent && best_load > 0;
         agent = zlistx_next (service->agents))
        for (uint32_t step = 0; !agent->draining && step < agent->bridge_count; step++) {
            uint32_t index = (agent->cursor + step) % agent->bridge_count;
            bridge_slot_t *slot = &agent->bridges[index];
            if (slot->serving && !slot->draining && slot->inflight < best_load
                && !(slot->pending && zlistx_size (slot->pending))
                && slot_has_room (self, slot, now)) {
                best = agent;
                best_index = index;
                best_load = slot->inflight;
                if (best_load == 0)
                    break;
            }
        }
    if (best) {
        best->cursor = best_index + 1;
        *bridge_p = best_index;
    }
    return best;
}

static void start_request (pf_broker_t *self, request_t *request, agent_t *agent, uint32_t bridge,
                           int64_t now)
{
    bridge_slot_t *slot = &agent->bridges[bridge];
    if (slot->last)
        slot->last->slot_next = request;
    else
        slot->first = request;
    slot->last = request;
    slot->inflight++;
    slot->requests++;
    agent->requests++;
    request->agent = agent;
    request->bridge = bridge;
    request->started = now;
    request->attempts++;
    if (request->session && !request->session->agent_serial)
        session_bind (request->session, agent, bridge);
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
    //  The body stays with the request, for a re-run elsewhere (handed back
    //  unstarted, or idempotent on a lost agent) and for the other broadcast
    //  copies: it goes out shared, not copied.
    msg.body = request->msg.body;
    agent->last_sent = now;
    send_to (self, agent->routing_id, &msg, PF_MSG_KEEP);
    msg.body = NULL;
    pf_msg_reset (&msg);
}

//  Gives a bridge with room its next requests: its own pending list first
//  (bound sessions, broadcast copies), then, unless it drains, the service
//  queue.
static void run_bridge (pf_broker_t *self, agent_t *agent, uint32_t bridge, int64_t now)
{
    bridge_slot_t *slot = &agent->bridges[bridge];
    while (slot->serving && slot_has_room (self, slot, now)) {
        request_t *request = slot->pending ? zlistx_first (slot->pending) : NULL;
        if (!request && !slot->draining && !agent->draining)
            request = zlistx_first (agent->service->queue);
        if (!request)
            return;
        request_dequeue (request);
        start_request (self, request, agent, bridge, now);
    }
}

static void dispatch (pf_broker_t *self, service_t *service, int64_t now)
{
    while (zlistx_size (service->queue) > 0) {
        uint32_t bridge;
        agent_t *agent = find_bridge (self, service, &bridge, now);
        if (!agent)
            return;
        request_t *request = zlistx_first (service->queue);
        request_dequeue (request);
        start_request (self, request, agent, bridge, now);
    }
}

//  Takes a request off the bridge it was sent to.
static void request_unbind (request_t *request)
{
    bridge_slot_t *slot = &request->agent->bridges[request->bridge];
    request_t *previous = NULL, *item = slot->first;
    while (item != request) {
        previous = item;
        item = item->slot_next;
    }
    if (previous)
        previous->slot_next = request->slot_next;
    else
        slot->first = request->slot_next;
    if (slot->last == request)
        slot->last = previous;
    slot->inflight--;
    request->slot_next = NULL;
    request->agent = NULL;
}

//  A request that was waiting for, or running on, a bridge that is gone.
//  ran: it may have started, so only idempotent requests run again.
static void request_orphaned (pf_broker_t *self, request_t *request, bool ran, int64_t now)
{
    if (request->answered) {
        request_done (self, request, now);
        return;
    }
    bool may_rerun = !ran || (request->msg.flags & PF_FLAG_IDEMPOTENT);
    if (request->parent) //  a broadcast copy belongs to that one bridge
        request_fail (self, request, PF_WORKER_LOST, "the bridge went away", NULL, now);
    else if (request->session) {
        //  The binding is stale now; activation reports or rebinds it.
        if (may_rerun && request->session->head == request)
            session_activate (self, request, now);
        else
            request_fail (self, request, ran ? PF_WORKER_LOST : PF_SESSION_LOST,
                          "the bridge holding this session is gone", NULL, now);
    }
    else if (may_rerun && request->attempts < 2)
        request_enqueue (request, request->service->queue, true);
    else
        request_fail (self, request, PF_WORKER_LOST, "the agent running the request was lost",
                      NULL, now);
}

//  A bridge stopped serving: its pending requests go elsewhere or fail.
static void bridge_gone (pf_broker_t *self, agent_t *agent, uint32_t bridge, int64_t now)
{
    bridge_slot_t *slot = &agent->bridges[bridge];
    request_t *request;
    while (slot->pending && (request = zlistx_first (slot->pending))) {
        request_dequeue (request);
        request_orphaned (self, request, false, now);
    }
}

//  --------------------------------------------------------------------------
//  Agents

static void agent_remove (pf_broker_t *self, agent_t *agent, const char *why, int64_t now)
{
    pf_info ("agent %s (%s pid %u) removed: %s", agent->agent_id, agent->host, agent->pid, why);
    if (self->event_fn)
        broker_event (self, "agent.left",
                      json_pack ("{s:s, s:s}", "agent", agent->agent_id, "reason", why));
    service_t *service = agent->service;
    //  Out of the tables first, so sessions bound here read as lost.
    zhashx_delete (self->serials, &agent->serial);
    zlistx_delete (service->agents, agent->service_handle);
    for (uint32_t index = 0; index < agent->bridge_count; index++) {
        bridge_slot_t *slot = &agent->bridges[index];
        slot->serving = false;
        //  Any of them may have started: only idempotent ones run again.
        request_t *request;
        while ((request = slot->first)) {
            request_unbind (request);
            request_orphaned (self, request, true, now);
        }
        bridge_gone (self, agent, index, now);
    }
    zhashx_delete (self->agents, agent->key);
    dispatch (self, service, now);
}

void pf_broker_routing_key (zframe_t *routing_id, char *key)
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

//  Copies a msgpack str or bin object into text (at most size-1 bytes); -1
//  if it is neither or too long.
static int object_text (msgpack_object *object, char *text, size_t size)
{
    const char *data;
    uint32_t length;
    if (object->type == MSGPACK_OBJECT_STR) {
        data = object->via.str.ptr;
        length = object->via.str.size;
    }
    else if (object->type == MSGPACK_OBJECT_BIN) {
        data = object->via.bin.ptr;
        length = object->via.bin.size;
    }
    else
        return -1;
    if (length >= size || memchr (data, 0, length))
        return -1;
    memcpy (text, data, length);
    text[length] = 0;
    return 0;
}

//  Parses a msgpack array of arrays whose first two elements (after an
//  optional leading string) are unsigned integers; calls fn for each entry.
//  Returns the number of malformed entries, or -1 if the frame is not such
//  an array at all.
typedef void(entry_fn) (pf_broker_t *self, agent_t *agent, msgpack_object *entry, int64_t now);

static int for_each_entry (pf_broker_t *self, agent_t *agent, zframe_t *frame, entry_fn *fn,
                           int64_t now)
{
    if (!frame || zframe_size (frame) == 0)
        return 0;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&result, (const char *) zframe_data (frame), zframe_size (frame),
                             &offset)
            == MSGPACK_UNPACK_SUCCESS
        && offset == zframe_size (frame) && result.data.type == MSGPACK_OBJECT_ARRAY) {
        rc = 0;
        for (uint32_t i = 0; i < result.data.via.array.size; i++) {
            msgpack_object *entry = &result.data.via.array.ptr[i];
            if (entry->type != MSGPACK_OBJECT_ARRAY || entry->via.array.size < 3)
                rc++;
            else
                fn (self, agent, entry, now);
        }
    }
    msgpack_unpacked_destroy (&result);
    return rc;
}

//  READY's sessions entry [session, bridge, generation]: a restarted broker
//  (or a re-registering agent) learns which bridge holds which session.
static void adopt_session (pf_broker_t *self, agent_t *agent, msgpack_object *entry, int64_t now)
{
    msgpack_object *item = entry->via.array.ptr;
    char id[PF_MAX_NAME + 1];
    if (object_text (&item[0], id, sizeof id) != 0 || !*id
        || item[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || item[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || item[1].via.u64 >= agent->bridge_count) {
        self->stats.malformed++;
        return;
    }
    session_t *session = session_require (self, agent->service->name, id, now);
    session->agent_serial = agent->serial;
    session->bridge = (uint32_t) item[1].via.u64;
    session->generation = (uint32_t) item[2].via.u64;
}

static void bridge_event (pf_broker_t *self, const char *topic, agent_t *agent, uint32_t bridge,
                          uint32_t generation)
{
    if (self->event_fn)
        broker_event (self, topic,
                      json_pack ("{s:s, s:i, s:i}", "agent", agent->agent_id, "bridge",
                                 (json_int_t) bridge, "generation", (json_int_t) generation));
}

//  HEARTBEAT's bridges entry [index, generation, state, {pid, rss_kb}?].
static void update_bridge (pf_broker_t *self, agent_t *agent, msgpack_object *entry, int64_t now)
{
    (void) now;
    msgpack_object *item = entry->via.array.ptr;
    char state[32] = "";
    if (item[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || item[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || item[0].via.u64 >= agent->bridge_count) {
        self->stats.malformed++;
        return;
    }
    object_text (&item[2], state, sizeof state);
    bridge_slot_t *slot = &agent->bridges[item[0].via.u64];
    if (slot->generation != (uint32_t) item[1].via.u64)
        slot->requests = slot->errors = 0;
    slot->generation = (uint32_t) item[1].via.u64;
    slot->serving = true;
    slot->draining = strcmp (state, "draining") == 0;
    //  Optional fourth element: {pid, rss_kb} for monitoring, {window} for
    //  dispatch.
    slot->window = 0;
    if (entry->via.array.size >= 4 && item[3].type == MSGPACK_OBJECT_MAP) {
        msgpack_object_map *map = &item[3].via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            char key[16];
            if (object_text (&map->ptr[i].key, key, sizeof key) != 0
                || map->ptr[i].val.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                continue;
            if (strcmp (key, "pid") == 0)
                slot->pid = (uint32_t) map->ptr[i].val.via.u64;
            else if (strcmp (key, "window") == 0)
                slot->window = (uint32_t) map->ptr[i].val.via.u64;
            else if (strcmp (key, "rss_kb") == 0)
                slot->rss_kb = map->ptr[i].val.via.u64;
        }
    }
}

static void handle_heartbeat (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now)
{
    if (!msg->bridges || zframe_size (msg->bridges) == 0)
        return; //  a bare heartbeat: nothing changed
    uint32_t count = agent->bridge_count;
    uint32_t old_generation[count];
    bool old_serving[count], old_draining[count];
    for (uint32_t index = 0; index < count; index++) {
        old_generation[index] = agent->bridges[index].generation;
        old_serving[index] = agent->bridges[index].serving;
        old_draining[index] = agent->bridges[index].draining;
        agent->bridges[index].serving = false;
    }
    if (for_each_entry (self, agent, msg->bridges, update_bridge, now) < 0) {
        self->stats.malformed++;
        for (uint32_t index = 0; index < count; index++)
            agent->bridges[index].serving = old_serving[index];
        return;
    }
    uint32_t serving_before = 0, serving_now = 0;
    for (uint32_t index = 0; index < count; index++) {
        bridge_slot_t *slot = &agent->bridges[index];
        serving_before += old_serving[index];
        serving_now += slot->serving;
        bool replaced = slot->generation != old_generation[index];
        if (old_serving[index] && (!slot->serving || replaced)) {
            bridge_event (self, "bridge.down", agent, index, old_generation[index]);
            bridge_gone (self, agent, index, now);
        }
        if (slot->serving && (!old_serving[index] || replaced))
            bridge_event (self, "bridge.up", agent, index, slot->generation);
        if (slot->serving && slot->draining && !old_draining[index])
            bridge_event (self, "bridge.draining", agent, index, slot->generation);
    }
    if (serving_now != serving_before)
        pf_info ("agent %s: %u of %u bridges serving", agent->agent_id, serving_now, count);
    for (uint32_t index = 0; index < count; index++)
        run_bridge (self, agent, index, now);
    dispatch (self, agent->service, now);
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
    agent->serial = self->next_serial++;
    agent->routing_id = zframe_dup (routing_id);
    memcpy (agent->agent_id, msg->agent_id, sizeof agent->agent_id);
    memcpy (agent->host, msg->host, sizeof agent->host);
    memcpy (agent->curve_key, msg->user_id, sizeof agent->curve_key);
    agent->pid = msg->pid;
    agent->bridge_count = msg->capacity;
    agent->bridges = calloc (msg->capacity, sizeof *agent->bridges);
    agent->service = service_require (self, msg->service);
    agent->service_handle = zlistx_add_start (agent->service->agents, agent);
    agent->silence_ms = (int64_t) self->config.heartbeat_ms * self->config.liveness;
    agent->expiry = now + agent->silence_ms;
    agent->last_sent = now;
    agent->joined = agent->last_heard = now;
    zhashx_insert (self->agents, agent->key, agent);
    if (self->event_fn)
        broker_event (self, "agent.joined",
                      json_pack ("{s:s, s:s, s:i, s:s, s:i}", "agent", agent->agent_id, "host",
                                 agent->host, "pid", (json_int_t) agent->pid, "service",
                                 msg->service, "capacity", (json_int_t) msg->capacity));
    zhashx_insert (self->serials, &agent->serial, agent);
    if (for_each_entry (self, agent, msg->sessions, adopt_session, now) != 0)
        self->stats.malformed++;
    pf_info ("agent %s (%s pid %u%s%s) ready for '%s' with %u bridges, %zu sessions known",
             agent->agent_id, agent->host, agent->pid, *agent->curve_key ? ", key " : "",
             agent->curve_key, msg->service, msg->capacity, pf_table_size (self->sessions));
}

//  The request an agent answers, if that agent runs it; taken off its bridge.
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

static void handle_agent_answer (pf_broker_t *self, agent_t *agent, pf_msg_t *msg, int64_t now)
{
    request_t *request = running_request (self, agent, msg);
    uint32_t bridge = request ? request->bridge : msg->bridge;
    if (request) {
        if (request->answered) {
            self->stats.late_replies++;
            request_done (self, request, now);
        }
        else if (msg->command == PF_W_REPLY)
            request_succeed (self, request, msg->flags, &msg->body, now);
        else if (msg->code == PF_BUSY) {
            //  The agent never started it (its bridge went away meanwhile).
            request->attempts--;
            request_orphaned (self, request, false, now);
        }
        else {
            agent->errors++;
            if (bridge < agent->bridge_count)
                agent->bridges[bridge].errors++;
            request_fail (self, request, msg->code < PF_ERROR_COUNT ? msg->code : PF_INTERNAL,
                          msg->message, &msg->detail, now);
        }
    }
    if (bridge < agent->bridge_count)
        run_bridge (self, agent, bridge, now);
    dispatch (self, agent->service, now);
}

static void handle_agent (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg, int64_t now)
{
    char key[2 * 256 + 1];
    pf_broker_routing_key (routing_id, key);
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
    agent->expiry = now + agent->silence_ms;
    agent->last_heard = now;
    switch (msg->command) {
    case PF_W_HEARTBEAT:
        handle_heartbeat (self, agent, msg, now);
        break;
    case PF_W_REPLY:
    case PF_W_ERROR:
        handle_agent_answer (self, agent, msg, now);
        break;
    case PF_W_DISCONNECT:
        agent_remove (self, agent, msg->message ? msg->message : "disconnected", now);
        break;
    case PF_W_SESSION_LOST: {
        //  The roster would show it stale anyway; this only makes it sooner.
        //  The session stays, bound to a bridge that cannot exist, so its
        //  next request is told SESSION_LOST rather than silently rebound.
        session_t *session = broker_session_find (self, agent->service->name, msg->session);
        if (session && session->agent_serial == agent->serial && session->bridge == msg->bridge
            && session->generation == msg->generation)
            session->bridge = UINT32_MAX;
        break;
    }
    default:
        self->stats.malformed++;
        break;
    }
}

//  --------------------------------------------------------------------------
//  Clients

static request_t *request_new (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg,
                               service_t *service, int64_t now)
{
    request_t *request = request_alloc (self);
    request->id = self->next_id++;
    request->client = zframe_dup (routing_id);
    request->msg = *msg; //  takes the body
    pf_msg_init (msg);
    request->service = service;
    uint32_t timeout = request->msg.timeout_ms ? request->msg.timeout_ms
                                               : self->config.default_timeout_ms;
    request->deadline = now + timeout;
    request->accepted_us = zclock_usecs ();
    zhashx_insert (self->requests, &request->id, request);
    service->requests++;
    rate_add (&service->rate, now);
    rate_add (&self->rate, now);
    return request;
}

//  "client routing id in hex/request id": what a CANCEL names. Written by
//  hand: snprintf was an eighth of the broker's own work per request.
#define CANCEL_KEY_SIZE (2 * 256 + 22)
static void cancel_key (zframe_t *routing_id, uint64_t request_id, char *key)
{
    pf_broker_routing_key (routing_id, key);
    char *end = key + strlen (key);
    *end++ = '/';
    char digits[20];
    int count = 0;
    do
        digits[count++] = (char) ('0' + request_id % 10);
    while ((request_id /= 10));
    while (count)
        *end++ = digits[--count];
    *end = '\0';
}

static void index_for_cancel (pf_broker_t *self, request_t *request, zframe_t *routing_id)
{
    char key[CANCEL_KEY_SIZE];
    cancel_key (routing_id, request->msg.request_id, key);
    request->cancel_key = strdup (key);
    if (zhashx_insert (self->cancels, request->cancel_key, request) != 0) {
        //  The client reused an id still in flight: cancel reaches the first.
        free (request->cancel_key);
        request->cancel_key = NULL;
    }
}

//  A broadcast runs a copy on every bridge that serves the service now, each
//  through its bridge's pending list, and answers one combined result.
static void start_broadcast (pf_broker_t *self, request_t *request, int64_t now)
{
    request->results = msgpack_sbuffer_new ();
    zlistx_t *targets = zlistx_new ();
    for (agent_t *agent = zlistx_first (request->service->agents); agent;
         agent = zlistx_next (request->service->agents))
        for (uint32_t index = 0; index < agent->bridge_count; index++)
            if (agent->bridges[index].serving) {
                request_t *copy = request_alloc (self);
                copy->id = self->next_id++;
                copy->parent = request;
                copy->service = request->service;
                copy->deadline = request->deadline;
                copy->bridge = index;
                memcpy (&copy->msg, &request->msg, sizeof copy->msg);
                copy->msg.session[0] = 0;
                memcpy (copy->msg.agent_id, agent->agent_id, sizeof copy->msg.agent_id);
                copy->msg.message = NULL;
                copy->msg.body = request->msg.body ? zframe_dup (request->msg.body) : NULL;
                copy->msg.detail = copy->msg.sessions = copy->msg.bridges = NULL;
                zhashx_insert (self->requests, &copy->id, copy);
                bridge_slot_t *slot = &agent->bridges[index];
                if (!slot->pending)
                    slot->pending = zlistx_new ();
                request_enqueue (copy, slot->pending, false);
                zlistx_add_end (targets, agent);
                request->remaining++;
            }
    if (request->remaining == 0) {
        request_fail (self, request, PF_UNKNOWN_SERVICE, "no bridge serves this service now",
                      NULL, now);
        zlistx_destroy (&targets);
        return;
    }
    //  The parent itself never runs: it waits for its copies.
    for (agent_t *agent = zlistx_first (targets); agent; agent = zlistx_next (targets))
        for (uint32_t index = 0; index < agent->bridge_count; index++)
            run_bridge (self, agent, index, now);
    zlistx_destroy (&targets);
}

static void handle_client_request (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg,
                                   int64_t now)
{
    service_t *service = zhashx_lookup (self->services, msg->service);
    bool starting = now - self->started < self->config.startup_grace_ms;
    if (!service && !starting) {
        send_client_error (self, routing_id, msg->request_id, PF_UNKNOWN_SERVICE,
                           "no agent serves this service", NULL, NULL);
        return;
    }
    if (!service)
        service = service_require (self, msg->service);
    if (zlistx_size (service->queue) >= self->config.queue_max) {
        send_client_error (self, routing_id, msg->request_id, PF_BUSY,
                           "service queue full; retry after 100 ms", NULL, NULL);
        return;
    }
    //  The built-in session_end may name any session in its arguments: a
    //  client ends only its own, by sending it in that session (the bridge
    //  refuses another name there).
    if (streq (msg->command_name, "session_end") &&
        (!*msg->session || (msg->flags & PF_FLAG_BROADCAST))) {
        send_client_error (self, routing_id, msg->request_id, PF_BAD_REQUEST,
                           "session_end ends the session it is sent in: give one", NULL, NULL);
        return;
    }
    session_t *session = NULL;
    if (*msg->session && !(msg->flags & PF_FLAG_BROADCAST)) {
        session = session_require (self, msg->service, msg->session, now);
        //  A session belongs to the CurveZMQ key that made it (or, made
        //  without one or adopted from an agent after a restart, to the first
        //  key that uses it).
        uint64_t owner =
            *msg->user_id ? pf_table_hash (msg->user_id, strlen (msg->user_id)) | 1 : 0;
        if (session->owner && session->owner != owner) {
            send_client_error (self, routing_id, msg->request_id, PF_UNAUTHORIZED,
                               "this session belongs to another client key", NULL, NULL);
            return;
        }
        session->owner = owner;
        if (session->count >= self->config.session_queue_max) {
            send_client_error (self, routing_id, msg->request_id, PF_BUSY,
                               "session queue full; retry after 100 ms", NULL, NULL);
            return;
        }
    }
    request_t *request = request_new (self, routing_id, msg, service, now);
    index_for_cancel (self, request, routing_id);
    self->stats.requests++;
    if (request->msg.flags & PF_FLAG_BROADCAST)
        start_broadcast (self, request, now);
    else if (session) {
        request->session = session;
        if (session->tail)
            session->tail->session_next = request;
        else
            session->head = request;
        session->tail = request;
        session->count++;
        //  last_used is stamped when its last request is answered: a session
        //  with requests never expires.
        if (session->head == request)
            session_activate (self, request, now);
    }
    else {
        request_enqueue (request, service->queue, false);
        dispatch (self, service, now);
    }
}

//  Removes a request from its session chain without running it.
static void session_remove (pf_broker_t *self, request_t *request, int64_t now)
{
    session_t *session = request->session;
    if (session->head == request) {
        session_advance (self, request, now);
        return;
    }
    for (request_t *prev = session->head; prev; prev = prev->session_next)
        if (prev->session_next == request) {
            prev->session_next = request->session_next;
            if (session->tail == request)
                session->tail = prev;
            session->count--;
            break;
        }
    request->session = NULL;
}

static void handle_client_cancel (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *msg,
                                  int64_t now)
{
    char key[CANCEL_KEY_SIZE];
    cancel_key (routing_id, msg->request_id, key);
    request_t *request = zhashx_lookup (self->cancels, key);
    if (!request || request->answered || request->results)
        return; //  already answered, or a broadcast: cancel is best effort
    if (request->session && request->session->head != request)
        session_remove (self, request, now);
    //  Queued: never runs. Sent to an agent: answered now, and the agent is
    //  told, so it does not start the request if it has not yet; a late
    //  reply is dropped.
    agent_t *agent = request->agent;
    uint64_t id = request->id;
    request_fail (self, request, PF_CANCELLED, "cancelled by the client", NULL, now);
    if (agent) {
        pf_msg_t cancel;
        pf_msg_init (&cancel);
        cancel.proto = PF_PROTO_W;
        cancel.command = PF_W_CANCEL;
        cancel.request_id = id;
        broker_send_to_agent (self, agent, &cancel, now);
        pf_msg_reset (&cancel);
    }
}

void pf_broker_agent_silence (pf_broker_t *self, zframe_t *routing_id, uint32_t ms, int64_t now)
{
    char key[2 * 256 + 1];
    pf_broker_routing_key (routing_id, key);
    agent_t *agent = zhashx_lookup (self->agents, key);
    int64_t own = (int64_t) self->config.heartbeat_ms * self->config.liveness;
    if (agent) {
        agent->silence_ms = ms > own ? ms : own;
        agent->expiry = now + agent->silence_ms;
    }
}

bool pf_broker_serves (pf_broker_t *self, const char *service)
{
    service_t *entry = zhashx_lookup (self->services, service);
    return entry && zlistx_size (entry->agents) > 0;
}

size_t pf_broker_client_gone (pf_broker_t *self, zframe_t *routing_id, int64_t now)
{
    char prefix[CANCEL_KEY_SIZE];
    pf_broker_routing_key (routing_id, prefix);
    size_t length = strlen (prefix);
    prefix[length++] = '/';
    //  The ids first: each cancel changes the index.
    size_t count = 0, alloc = 0;
    uint64_t *ids = NULL;
    for (request_t *request = zhashx_first (self->cancels); request;
         request = zhashx_next (self->cancels)) {
        //  (One answered already waits only for its agent's late answer.)
        if (request->answered || request->results ||
            strncmp (zhashx_cursor (self->cancels), prefix, length) != 0)
            continue;
        if (count == alloc) {
            alloc = alloc ? 2 * alloc : 64;
            uint64_t *more = realloc (ids, alloc * sizeof *ids);
            if (!more) break;
            ids = more;
        }
        ids[count++] = request->msg.request_id;
    }
    pf_msg_t cancel;
    pf_msg_init (&cancel);
    for (size_t index = 0; index < count; index++) {
        cancel.request_id = ids[index];
        handle_client_cancel (self, routing_id, &cancel, now);
    }
    free (ids);
    return count;
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
    pf_broker_handle_msg (self, routing_id, rc, &msg, err, now);
    zframe_destroy (&routing_id);
}

//  A BATCH (an agent's, or a client's requests): each message as if it had
//  come alone.
static void handle_batch (pf_broker_t *self, zframe_t *routing_id, pf_msg_t *batch, int64_t now)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    char err[256];
    size_t offset = 0;
    int rc;
    while ((rc = pf_batch_next (batch->proto, batch->body, &offset, &msg, self->config.max_body,
                                err, sizeof err)) != -1) {
        memcpy (msg.user_id, batch->user_id, sizeof msg.user_id);
        pf_broker_handle_msg (self, routing_id, rc, &msg, err, now);
    }
}

void pf_broker_handle_msg (pf_broker_t *self, zframe_t *routing_id, int rc, pf_msg_t *msg,
                           const char *err, int64_t now)
{
    if (rc == PF_OK && pf_msg_is_batch (msg->proto, msg->command))
        handle_batch (self, routing_id, msg, now);
    else if (rc != PF_OK) {
        self->stats.malformed++;
        pf_debug ("malformed message dropped: %s", err);
        if (pf_msg_is_request (msg) && msg->has_request_id)
            send_client_error (self, routing_id, msg->request_id, rc, err, NULL, NULL);
    }
    else if (msg->proto == PF_PROTO_W)
        handle_agent (self, routing_id, msg, now);
    else if (pf_msg_is_request (msg))
        handle_client_request (self, routing_id, msg, now);
    else if (msg->command == PF_C_CANCEL)
        handle_client_cancel (self, routing_id, msg, now);
    else
        self->stats.malformed++; //  REPLY/ERROR are broker-to-client only
    pf_msg_reset (msg);
}

//  --------------------------------------------------------------------------
//  Timers

static void expire_waiting (pf_broker_t *self, zlistx_t *queue, int64_t now)
{
    if (!queue)
        return;
    request_t *request = zlistx_first (queue);
    while (request) {
        request_t *next = zlistx_next (queue);
        if (request->deadline <= now) {
            //  A removal may reshape the list: restart from its head.
            request_fail (self, request, PF_TIMEOUT, "deadline passed while queued", NULL, now);
            next = zlistx_first (queue);
        }
        request = next;
    }
}

static void check_agent (pf_broker_t *self, agent_t *agent, int64_t now)
{
    for (uint32_t index = 0; index < agent->bridge_count; index++) {
        request_t *next;
        for (request_t *request = agent->bridges[index].first; request; request = next) {
            next = request->slot_next;
            if (!request->answered && request->deadline + self->config.inflight_grace_ms <= now)
                request_fail (self, request, PF_TIMEOUT,
                              "deadline passed; the agent did not answer", NULL, now);
        }
        expire_waiting (self, agent->bridges[index].pending, now);
    }
    if (now - agent->last_sent >= self->config.heartbeat_ms) {
        pf_msg_t msg;
        pf_msg_init (&msg);
        msg.proto = PF_PROTO_W;
        msg.command = PF_W_HEARTBEAT;
        broker_send_to_agent (self, agent, &msg, now);
    }
}

//  Nothing runs on the agent and nothing waits for its bridges.
static bool agent_idle (agent_t *agent)
{
    for (uint32_t index = 0; index < agent->bridge_count; index++) {
        bridge_slot_t *slot = &agent->bridges[index];
        if (slot->first || (slot->pending && zlistx_size (slot->pending)))
            return false;
    }
    return true;
}

static void expire_sessions (pf_broker_t *self, int64_t now)
{
    int64_t ttl = (int64_t) self->config.session_ttl_s * 1000;
    //  A bounded stretch per tick, resumed next tick, so a million sessions
    //  cost the loop no pause; a pass over all of them takes seconds, well
    //  inside any useful TTL.
    if (!self->sweep)
        self->sweep = self->first;
    for (int budget = 10000; budget > 0 && self->sweep; budget--) {
        session_t *session = self->sweep;
        self->sweep = session->next;
        if (session->count > 0 || session->last_used + ttl > now)
            continue; //  busy, or used lately
        session_event (self, "session.expired", session);
        send_session_end (self, session, now);
        session_delete (self, session);
        self->stats.sessions_expired++;
    }
}

int64_t pf_broker_tick (pf_broker_t *self, int64_t now)
{
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        expire_waiting (self, service->queue, now);
    //  Requests queued behind a session's active one wait in no list: found
    //  through the requests table (live requests, not all sessions).
    zlistx_t *expired = zlistx_new ();
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        if (request->session && request->session->head != request && request->deadline <= now)
            zlistx_add_end (expired, request);
    for (request_t *request = zlistx_first (expired); request; request = zlistx_next (expired)) {
        session_remove (self, request, now);
        request_fail (self, request, PF_TIMEOUT, "deadline passed while queued", NULL, now);
    }
    zlistx_destroy (&expired);

    //  Collect expired agents first: removal changes the table being walked.
    zlistx_t *dead = zlistx_new ();
    zlistx_t *drained = zlistx_new ();
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents)) {
        if (agent->expiry <= now)
            zlistx_add_end (dead, agent);
        else {
            check_agent (self, agent, now);
            if (agent->draining && agent_idle (agent))
                zlistx_add_end (drained, agent);
        }
    }
    for (agent_t *agent = zlistx_first (dead); agent; agent = zlistx_next (dead))
        agent_remove (self, agent, "heartbeat expired", now);
    for (agent_t *agent = zlistx_first (drained); agent; agent = zlistx_next (drained)) {
        send_disconnect (self, agent->routing_id, "drain");
        agent_remove (self, agent, "drained", now);
    }
    zlistx_destroy (&dead);
    zlistx_destroy (&drained);
    expire_sessions (self, now);

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
        if (!request->answered && request->client)
            send_client_error (self, request->client, request->msg.request_id, PF_SHUTTING_DOWN,
                               "the broker is shutting down", NULL, request);
}

void pf_broker_send_failed (pf_broker_t *self, size_t count)
{
    self->stats.send_failures += count;
}

void pf_broker_stats (pf_broker_t *self, pf_broker_stats_t *stats)
{
    *stats = self->stats;
    stats->agents = zhashx_size (self->agents);
    stats->sessions = pf_table_size (self->sessions);
    stats->queued = 0;
    stats->inflight = 0;
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        stats->queued += zlistx_size (service->queue);
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        stats->inflight += request->agent != NULL;
}

void pf_broker_set_unix_clients (pf_broker_t *self, size_t count)
{
    self->stats.unix_clients = count;
}

void pf_broker_set_event_fn (pf_broker_t *self, pf_broker_event_fn *fn, void *arg)
{
    self->event_fn = fn;
    self->event_arg = arg;
}

void broker_event (pf_broker_t *self, const char *topic, json_t *event)
{
    if (!event)
        return;
    if (!self->event_fn) {
        json_decref (event);
        return;
    }
    json_object_set_new (event, "event", json_string (topic));
    self->event_fn (self->event_arg, topic, event);
}

agent_t *broker_agent_by_id (pf_broker_t *self, const char *agent_id)
{
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents))
        if (strcmp (agent->agent_id, agent_id) == 0)
            return agent;
    return NULL;
}

void broker_session_end (pf_broker_t *self, session_t *session, int64_t now)
{
    send_session_end (self, session, now);
    if (session->count == 0)
        session_delete (self, session);
    else
        session->agent_serial = 0; //  its waiting requests start a new binding
}
