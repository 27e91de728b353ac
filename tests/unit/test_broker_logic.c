/*  The broker's logic without sockets: messages in through pf_broker_handle,
    messages out through the send callback, time passed in by the test. */
#include "pf_broker.h"
#include "pf_error.h"
#include "pf_log.h"
#include "pf_proto.h"
#include <msgpack.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
    zframe_t *to;
    pf_msg_t msg;
    int flags; //  the send function's (PF_MSG_KEEP, PF_MSG_BATCHABLE)
} sent_t;

typedef struct {
    pf_broker_t *broker;
    zlistx_t *sent; //  sent_t, oldest first
    zframe_t *agent_a, *agent_b, *client;
    int64_t now;
} fixture_t;

//  Keeps what the broker sends, encoded and decoded again (so every
//  message must also be valid on the wire).
static int capture (void *arg, zframe_t *routing_id, pf_msg_t *out, int flags)
{
    fixture_t *fx = arg;
    //  PF_MSG_KEEP: the body stays the broker's; encode a copy of it.
    pf_msg_t shared = *out;
    if (flags & PF_MSG_KEEP)
        shared.body = out->body ? zframe_dup (out->body) : NULL;
    zmsg_t *msg = pf_msg_encode (&shared);
    //  What the encoding moved out of the copy is gone from out too.
    out->detail = shared.detail;
    out->sessions = shared.sessions;
    out->bridges = shared.bridges;
    if (!(flags & PF_MSG_KEEP))
        out->body = shared.body;
    assert_non_null (msg);
    sent_t *sent = calloc (1, sizeof *sent);
    sent->to = zframe_dup (routing_id);
    sent->flags = flags;
    char err[256];
    pf_msg_init (&sent->msg);
    assert_int_equal (pf_msg_decode (&sent->msg, &msg, 0, err, sizeof err), PF_OK);
    zlistx_add_end (fx->sent, sent);
    return 0;
}

static void sent_free (sent_t **sent_p)
{
    sent_t *sent = *sent_p;
    zframe_destroy (&sent->to);
    pf_msg_reset (&sent->msg);
    free (sent);
    *sent_p = NULL;
}

static fixture_t *fixture_new (uint32_t window)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    fx->sent = zlistx_new ();
    fx->agent_a = zframe_new ("A", 1);
    fx->agent_b = zframe_new ("B", 1);
    fx->client = zframe_new ("C", 1);
    fx->now = 1000;
    pf_broker_config_t config;
    pf_broker_config_defaults (&config);
    config.session_ttl_s = 10;
    config.window = window;
    config.window_ms = 10;
    fx->broker = pf_broker_new (&config, capture, fx, fx->now);
    return fx;
}

//  One request per bridge at a time (--window 1): the strict credit rules.
static int setup (void **state)
{
    *state = fixture_new (1);
    return 0;
}

//  Up to 4 requests per bridge while its oldest has run less than 10 ms.
static int setup_windowed (void **state)
{
    *state = fixture_new (4);
    return 0;
}

static int teardown (void **state)
{
    fixture_t *fx = *state;
    pf_broker_destroy (&fx->broker);
    sent_t *sent;
    while ((sent = zlistx_detach (fx->sent, NULL)))
        sent_free (&sent);
    zlistx_destroy (&fx->sent);
    zframe_destroy (&fx->agent_a);
    zframe_destroy (&fx->agent_b);
    zframe_destroy (&fx->client);
    free (fx);
    return 0;
}

static void feed (fixture_t *fx, zframe_t *from, pf_msg_t *msg)
{
    zmsg_t *out = pf_msg_encode (msg);
    assert_non_null (out);
    zframe_t *routing_id = zframe_dup (from);
    zmsg_prepend (out, &routing_id);
    pf_broker_handle (fx->broker, &out, fx->now);
    pf_msg_reset (msg);
}

//  The agent's HEARTBEAT: `bridges` bridges ready at `generation`; with
//  window > 0, each entry carries {window} too.
static void agent_roster (fixture_t *fx, zframe_t *agent, uint32_t bridges, uint32_t generation,
                          uint32_t window)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_array (&packer, bridges);
    for (uint32_t index = 0; index < bridges; index++) {
        msgpack_pack_array (&packer, window ? 4 : 3);
        msgpack_pack_uint32 (&packer, index);
        msgpack_pack_uint32 (&packer, generation);
        msgpack_pack_str_with_body (&packer, "ready", 5);
        if (window) {
            msgpack_pack_map (&packer, 1);
            msgpack_pack_str_with_body (&packer, "window", 6);
            msgpack_pack_uint32 (&packer, window);
        }
    }
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_HEARTBEAT;
    msg.bridges = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    feed (fx, agent, &msg);
}

//  Registers an agent with `bridges` serving bridges, all at generation 1.
static void agent_ready (fixture_t *fx, zframe_t *agent, uint32_t bridges)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_READY;
    strcpy (msg.agent_id, zframe_streq (agent, "A") ? "agent-a" : "agent-b");
    strcpy (msg.service, "svc");
    msg.capacity = bridges;
    feed (fx, agent, &msg);
    agent_roster (fx, agent, bridges, 1, 0);
}

static void client_request (fixture_t *fx, uint64_t id, const char *session, uint32_t flags,
                            uint32_t timeout_ms)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    //  Both forms of REQUEST route the same way: odd ids come packed.
    msg.command = id % 2 ? PF_C_REQUEST_PACKED : PF_C_REQUEST;
    msg.request_id = id;
    strcpy (msg.service, "svc");
    strcpy (msg.session, session);
    strcpy (msg.command_name, "echo");
    msg.timeout_ms = timeout_ms;
    msg.flags = flags;
    msg.body = zframe_new ("\xc0", 1);
    feed (fx, fx->client, &msg);
}

//  The agent answers one of the requests the broker sent it.
//  An agent's answer to a request the broker sent it: a REPLY whose result
//  is nil, or an ERROR with code and message.
static void answer_init (pf_msg_t *msg, pf_msg_t *request, int command, int code,
                         const char *message)
{
    pf_msg_init (msg);
    msg->proto = PF_PROTO_W;
    msg->command = command;
    msg->request_id = request->request_id;
    msg->bridge = request->bridge;
    msg->generation = request->generation;
    if (command == PF_W_REPLY)
        msg->body = zframe_new ("\xc3", 1);
    else {
        msg->code = (uint16_t) code;
        msg->message = strdup (message);
    }
}

static void agent_reply (fixture_t *fx, zframe_t *agent, pf_msg_t *request)
{
    pf_msg_t msg;
    answer_init (&msg, request, PF_W_REPLY, 0, NULL);
    feed (fx, agent, &msg);
}

//  The agent answers one of the requests the broker sent it with an error.
static void agent_error (fixture_t *fx, zframe_t *agent, pf_msg_t *request, int code,
                         const char *message)
{
    pf_msg_t msg;
    answer_init (&msg, request, PF_W_ERROR, code, message);
    feed (fx, agent, &msg);
}

//  Takes the oldest sent message of the given command, or NULL.
static sent_t *take (fixture_t *fx, int proto, int command)
{
    for (sent_t *sent = zlistx_first (fx->sent); sent; sent = zlistx_next (fx->sent))
        if (sent->msg.proto == proto && sent->msg.command == command) {
            zlistx_detach_cur (fx->sent);
            return sent;
        }
    return NULL;
}

static size_t count (fixture_t *fx, int proto, int command)
{
    size_t n = 0;
    for (sent_t *sent = zlistx_first (fx->sent); sent; sent = zlistx_next (fx->sent))
        n += sent->msg.proto == proto && sent->msg.command == command;
    return n;
}

static void work_goes_only_to_idle_bridges_and_waits_otherwise (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    for (uint64_t id = 1; id <= 3; id++)
        client_request (fx, id, "", 0, 0);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 2);
    pf_broker_stats_t stats;
    pf_broker_stats (fx->broker, &stats);
    assert_int_equal (stats.queued, 1);

    sent_t *first = take (fx, PF_PROTO_W, PF_W_REQUEST);
    sent_t *second = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_int_not_equal (first->msg.bridge, second->msg.bridge);
    agent_reply (fx, fx->agent_a, &first->msg);
    sent_t *reply = take (fx, PF_PROTO_C, PF_C_REPLY);
    assert_non_null (reply);
    assert_int_equal (reply->msg.request_id, 1);
    sent_t *third = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (third);
    assert_int_equal (third->msg.bridge, first->msg.bridge);
    sent_free (&first);
    sent_free (&second);
    sent_free (&third);
    sent_free (&reply);
}

static void session_requests_stay_on_one_bridge_one_at_a_time (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 4);
    client_request (fx, 1, "s", 0, 0);
    client_request (fx, 2, "s", 0, 0);
    client_request (fx, 3, "s", 0, 0);
    //  Only the first runs; the others wait behind it, not on idle bridges.
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 1);
    uint32_t bridge = UINT32_MAX;
    for (uint64_t id = 1; id <= 3; id++) {
        sent_t *request = take (fx, PF_PROTO_W, PF_W_REQUEST);
        assert_non_null (request);
        assert_string_equal (request->msg.session, "s");
        if (bridge == UINT32_MAX)
            bridge = request->msg.bridge;
        assert_int_equal (request->msg.bridge, bridge);
        agent_reply (fx, fx->agent_a, &request->msg);
        sent_t *reply = take (fx, PF_PROTO_C, PF_C_REPLY);
        assert_int_equal (reply->msg.request_id, id);
        sent_free (&reply);
        sent_free (&request);
    }
}

static void a_replaced_bridge_loses_its_sessions_hard_or_soft (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    client_request (fx, 1, "hard", 0, 0);
    client_request (fx, 2, "soft", PF_FLAG_SOFT, 0);
    for (int i = 0; i < 2; i++) {
        sent_t *request = take (fx, PF_PROTO_W, PF_W_REQUEST);
        agent_reply (fx, fx->agent_a, &request->msg);
        sent_free (&request);
    }
    sent_t *reply;
    while ((reply = take (fx, PF_PROTO_C, PF_C_REPLY)))
        sent_free (&reply);
    //  Both bridges are replaced (generation 7).
    agent_roster (fx, fx->agent_a, 2, 7, 0);

    client_request (fx, 3, "hard", 0, 0);
    sent_t *lost = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_non_null (lost);
    assert_int_equal (lost->msg.request_id, 3);
    assert_int_equal (lost->msg.code, PF_SESSION_LOST);
    sent_free (&lost);

    client_request (fx, 4, "soft", PF_FLAG_SOFT, 0);
    sent_t *request = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (request);
    assert_int_equal (request->msg.generation, 7);
    agent_reply (fx, fx->agent_a, &request->msg);
    reply = take (fx, PF_PROTO_C, PF_C_REPLY);
    assert_int_equal (reply->msg.request_id, 4);
    assert_true (reply->msg.flags & PF_REPLY_REBOUND);
    sent_free (&request);
    sent_free (&reply);
}

static void queued_request_past_its_deadline_times_out_unstarted (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    client_request (fx, 1, "", 0, 5000);
    client_request (fx, 2, "", 0, 200);
    fx->now += 250;
    pf_broker_tick (fx->broker, fx->now);
    sent_t *timeout = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_non_null (timeout);
    assert_int_equal (timeout->msg.request_id, 2);
    assert_int_equal (timeout->msg.code, PF_TIMEOUT);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 1); //  only the first started
    sent_free (&timeout);
}

static void silent_agent_is_dead_its_work_reruns_or_fails (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    client_request (fx, 1, "", PF_FLAG_IDEMPOTENT, 60000);
    client_request (fx, 2, "", 0, 60000);
    agent_ready (fx, fx->agent_b, 1);
    sent_t *request;
    while ((request = take (fx, PF_PROTO_W, PF_W_REQUEST)))
        sent_free (&request);
    //  Only agent B keeps talking.
    for (int beat = 0; beat < 4; beat++) {
        fx->now += 1000;
        pf_msg_t msg;
        pf_msg_init (&msg);
        msg.proto = PF_PROTO_W;
        msg.command = PF_W_HEARTBEAT;
        feed (fx, fx->agent_b, &msg);
        pf_broker_tick (fx->broker, fx->now);
    }
    sent_t *lost = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_non_null (lost);
    assert_int_equal (lost->msg.request_id, 2);
    assert_int_equal (lost->msg.code, PF_WORKER_LOST);
    request = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (request);
    assert_true (zframe_streq (request->to, "B"));
    sent_free (&request);
    sent_free (&lost);
}

//  Requests sent to each bridge of agent A, by bridge index (0..7).
static void count_by_bridge (fixture_t *fx, size_t counts[8])
{
    memset (counts, 0, 8 * sizeof counts[0]);
    for (sent_t *sent = zlistx_first (fx->sent); sent; sent = zlistx_next (fx->sent))
        if (sent->msg.proto == PF_PROTO_W && sent->msg.command == PF_W_REQUEST
            && sent->msg.bridge < 8)
            counts[sent->msg.bridge]++;
}

static void a_window_streams_requests_to_the_least_loaded_bridge_up_to_its_size (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    for (uint64_t id = 1; id <= 5; id++)
        client_request (fx, id, "", 0, 0);
    size_t counts[8];
    count_by_bridge (fx, counts);
    assert_int_equal (counts[0] + counts[1], 5);
    assert_true (counts[0] >= 2 && counts[1] >= 2); //  3 and 2, either way round
    for (uint64_t id = 6; id <= 9; id++)
        client_request (fx, id, "", 0, 0);
    count_by_bridge (fx, counts);
    assert_int_equal (counts[0], 4);
    assert_int_equal (counts[1], 4);
    pf_broker_stats_t stats;
    pf_broker_stats (fx->broker, &stats);
    assert_int_equal (stats.queued, 1);
}

static void no_request_is_sent_to_wait_behind_one_that_ran_window_ms (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    client_request (fx, 1, "", 0, 0);
    fx->now += 10;
    client_request (fx, 2, "", 0, 0);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 1);
    sent_t *first = take (fx, PF_PROTO_W, PF_W_REQUEST);
    agent_reply (fx, fx->agent_a, &first->msg);
    sent_t *second = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (second);
    assert_int_equal (second->msg.request_id, first->msg.request_id + 1);
    sent_free (&first);
    sent_free (&second);
}

//  The agent hands back (BUSY, not started) a request that waited behind
//  a long one: it runs on the next bridge to free up, not the long one's.
static void a_request_handed_back_unstarted_runs_on_another_bridge (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    for (uint64_t id = 1; id <= 3; id++)
        client_request (fx, id, "", 0, 0);
    sent_t *requests[3];
    for (int i = 0; i < 3; i++)
        requests[i] = take (fx, PF_PROTO_W, PF_W_REQUEST);
    uint32_t slow = requests[2]->msg.bridge;
    sent_t *other = requests[0]->msg.bridge == slow ? requests[1] : requests[0];
    fx->now += 20;
    agent_error (fx, fx->agent_a, &requests[2]->msg, PF_BUSY,
                 "bridge busy with a long request; not started");
    //  Both bridges' oldest requests have run 20 ms: it waits at the broker.
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 0);
    assert_int_equal (count (fx, PF_PROTO_C, PF_C_ERROR), 0);
    agent_reply (fx, fx->agent_a, &other->msg);
    sent_t *again = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (again);
    assert_int_equal (again->msg.request_id, requests[2]->msg.request_id);
    assert_int_equal (again->msg.bridge, other->msg.bridge);
    sent_free (&again);
    for (int i = 0; i < 3; i++)
        sent_free (&requests[i]);
}

static void an_agent_lost_with_a_window_in_flight_reruns_only_idempotent_requests (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    client_request (fx, 1, "", 0, 60000);
    client_request (fx, 2, "", PF_FLAG_IDEMPOTENT, 60000);
    client_request (fx, 3, "", 0, 60000);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 3);
    agent_ready (fx, fx->agent_b, 1);
    sent_t *request;
    while ((request = take (fx, PF_PROTO_W, PF_W_REQUEST)))
        sent_free (&request);
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_DISCONNECT;
    msg.message = strdup ("agent stopping");
    feed (fx, fx->agent_a, &msg);
    for (uint64_t id = 1; id <= 3; id += 2) {
        sent_t *lost = take (fx, PF_PROTO_C, PF_C_ERROR);
        assert_non_null (lost);
        assert_int_equal (lost->msg.request_id, id);
        assert_int_equal (lost->msg.code, PF_WORKER_LOST);
        sent_free (&lost);
    }
    request = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (request);
    assert_true (zframe_streq (request->to, "B"));
    assert_null (take (fx, PF_PROTO_W, PF_W_REQUEST));
    sent_free (&request);
}

//  The agent says a bridge's requests take long ({window: 1} in its roster
//  entry): the broker sends it one at a time, whatever its own --window.
static void an_agent_can_narrow_a_bridge_window_to_one (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    agent_roster (fx, fx->agent_a, 1, 1, 1);

    for (uint64_t id = 1; id <= 3; id++)
        client_request (fx, id, "", 0, 0);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 1);
    sent_t *first = take (fx, PF_PROTO_W, PF_W_REQUEST);
    agent_reply (fx, fx->agent_a, &first->msg);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 1);
    sent_free (&first);
}

static void a_cancel_answers_the_client_and_tells_the_agent_that_has_the_request (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    client_request (fx, 7, "", 0, 0);
    sent_t *request = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (request);
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_CANCEL;
    msg.request_id = 7;
    feed (fx, fx->client, &msg);
    sent_t *cancelled = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_non_null (cancelled);
    assert_int_equal (cancelled->msg.code, PF_CANCELLED);
    sent_t *told = take (fx, PF_PROTO_W, PF_W_CANCEL);
    assert_non_null (told);
    assert_true (zframe_streq (told->to, "A"));
    assert_true (told->msg.request_id == request->msg.request_id);
    //  The agent's answer (it dropped the request) is late: nothing more for the client.
    agent_error (fx, fx->agent_a, &request->msg, PF_CANCELLED, "cancelled; not started");
    assert_int_equal (count (fx, PF_PROTO_C, PF_C_ERROR) + count (fx, PF_PROTO_C, PF_C_REPLY), 0);
    pf_broker_stats_t stats;
    pf_broker_stats (fx->broker, &stats);
    assert_int_equal (stats.late_replies, 1);
    sent_free (&request);
    sent_free (&cancelled);
    sent_free (&told);
}

static void a_client_gone_for_good_has_its_requests_cancelled_and_no_one_elses (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    for (uint64_t id = 1; id <= 3; id++) //  one runs, two wait
        client_request (fx, id, "", 0, 0);
    zframe_t *gone = fx->client;
    fx->client = zframe_new ("D", 1);
    client_request (fx, 1, "", 0, 0); //  the same id from another client
    sent_t *running = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (running);

    assert_int_equal (pf_broker_client_gone (fx->broker, gone, fx->now), 3);
    assert_int_equal (count (fx, PF_PROTO_C, PF_C_ERROR), 3);
    for (int index = 0; index < 3; index++) {
        sent_t *cancelled = take (fx, PF_PROTO_C, PF_C_ERROR);
        assert_true (zframe_eq (cancelled->to, gone));
        assert_int_equal (cancelled->msg.code, PF_CANCELLED);
        sent_free (&cancelled);
    }
    sent_t *told = take (fx, PF_PROTO_W, PF_W_CANCEL);
    assert_non_null (told);
    assert_true (told->msg.request_id == running->msg.request_id);
    assert_int_equal (pf_broker_client_gone (fx->broker, gone, fx->now), 0);
    //  Once the bridge is free, the other client's request runs.
    agent_error (fx, fx->agent_a, &running->msg, PF_CANCELLED, "cancelled; not started");
    sent_t *next = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (next);
    agent_reply (fx, fx->agent_a, &next->msg);
    sent_t *answer = take (fx, PF_PROTO_C, PF_C_REPLY);
    assert_non_null (answer);
    assert_true (zframe_streq (answer->to, "D"));
    assert_int_equal (answer->msg.request_id, 1);
    zframe_destroy (&gone);
    sent_free (&running);
    sent_free (&told);
    sent_free (&next);
    sent_free (&answer);
}

static void late_reply_after_a_broker_timeout_is_dropped (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    client_request (fx, 1, "", 0, 100);
    sent_t *request = take (fx, PF_PROTO_W, PF_W_REQUEST);
    fx->now += 100 + 1500;
    pf_broker_tick (fx->broker, fx->now);
    sent_t *timeout = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_int_equal (timeout->msg.code, PF_TIMEOUT);
    agent_reply (fx, fx->agent_a, &request->msg);
    assert_null (take (fx, PF_PROTO_C, PF_C_REPLY));
    pf_broker_stats_t stats;
    pf_broker_stats (fx->broker, &stats);
    assert_int_equal (stats.late_replies, 1);
    sent_free (&request);
    sent_free (&timeout);
}

static void idle_sessions_expire_and_their_agent_is_told (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 1);
    const char *names[] = {"ttl-a", "ttl-b", "ttl-c"};
    for (int i = 0; i < 3; i++) {
        client_request (fx, (uint64_t) i + 1, names[i], 0, 0);
        sent_t *request = take (fx, PF_PROTO_W, PF_W_REQUEST);
        agent_reply (fx, fx->agent_a, &request->msg);
        sent_free (&request);
    }
    //  The agent stays alive (heartbeats) while the session idles.
    for (int second = 0; second < 9; second++) {
        fx->now += 1000;
        pf_msg_t beat;
        pf_msg_init (&beat);
        beat.proto = PF_PROTO_W;
        beat.command = PF_W_HEARTBEAT;
        feed (fx, fx->agent_a, &beat);
        pf_broker_tick (fx->broker, fx->now);
    }
    assert_null (take (fx, PF_PROTO_W, PF_W_SESSION_END));
    fx->now += 1001;
    pf_broker_tick (fx->broker, fx->now);
    for (int i = 0; i < 3; i++) {
        sent_t *end = take (fx, PF_PROTO_W, PF_W_SESSION_END);
        assert_non_null (end);
        assert_string_equal (end->msg.session, names[i]);
        sent_free (&end);
    }
    pf_broker_stats_t stats;
    pf_broker_stats (fx->broker, &stats);
    assert_int_equal (stats.sessions, 0);
}

static void malformed_and_unknown_peers_are_counted_not_fatal (void **state)
{
    fixture_t *fx = *state;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "X");
    zmsg_addstr (msg, "");
    zmsg_addstr (msg, "PFC1");
    zmsg_addstr (msg, "garbage");
    pf_broker_handle (fx->broker, &msg, fx->now);
    msg = zmsg_new ();
    pf_broker_handle (fx->broker, &msg, fx->now); //  not even a routing id
    //  A heartbeat from an agent that never said READY: told to start over.
    pf_msg_t beat;
    pf_msg_init (&beat);
    beat.proto = PF_PROTO_W;
    beat.command = PF_W_HEARTBEAT;
    feed (fx, fx->agent_b, &beat);
    sent_t *disconnect = take (fx, PF_PROTO_W, PF_W_DISCONNECT);
    assert_non_null (disconnect);
    sent_free (&disconnect);
    //  A packed REQUEST with an empty service: answered BAD_REQUEST by id.
    msg = zmsg_new ();
    zmsg_addstr (msg, "C");
    zmsg_addstr (msg, "");
    zmsg_addstr (msg, "PFC1");
    zmsg_addmem (msg, "\x05", 1);
    zmsg_addmem (msg, "\0\0\0\0\0\0\0\x2a" "\0\0\x03\xe8" "\0\0\0\0" "\0" "\0" "\x04ping", 23);
    zmsg_addmem (msg, NULL, 0);
    pf_broker_handle (fx->broker, &msg, fx->now);
    sent_t *refused = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_non_null (refused);
    assert_int_equal (refused->msg.request_id, 42);
    assert_int_equal (refused->msg.code, PF_BAD_REQUEST);
    sent_free (&refused);
    pf_broker_stats_t stats;
    pf_broker_stats (fx->broker, &stats);
    assert_true (stats.malformed >= 2);
}

//  An agent's BATCH: each message as if it had come alone, in order; a bad
//  one in the middle is counted and skipped.
static void a_batch_from_an_agent_is_handled_message_by_message (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    client_request (fx, 1, "", PF_FLAG_BATCH_OK, 5000);
    client_request (fx, 2, "", 0, 5000);
    sent_t *first = take (fx, PF_PROTO_W, PF_W_REQUEST);
    sent_t *second = take (fx, PF_PROTO_W, PF_W_REQUEST);
    assert_non_null (first);
    assert_non_null (second);
    //  REPLY to the first, garbage, ERROR to the second.
    pf_msg_t reply, error;
    answer_init (&reply, &first->msg, PF_W_REPLY, 0, NULL);
    answer_init (&error, &second->msg, PF_W_ERROR, PF_PYTHON_ERROR, "boom");
    size_t reply_size = pf_msg_packed_size (&reply), error_size = pf_msg_packed_size (&error);
    size_t size = 4 + reply_size + 4 + 1 + 4 + error_size;
    byte *data = calloc (1, size), *at = data;
    at[3] = (byte) reply_size;
    pf_msg_pack (&reply, at + 4);
    at += 4 + reply_size;
    at[3] = 1;
    at[4] = 0x7F; //  no such command
    at += 5;
    at[3] = (byte) error_size;
    pf_msg_pack (&error, at + 4);
    pf_msg_t batch;
    pf_msg_init (&batch);
    batch.proto = PF_PROTO_W;
    batch.command = PF_W_BATCH;
    batch.body = zframe_new (data, size);
    free (data);
    pf_broker_stats_t before, after;
    pf_broker_stats (fx->broker, &before);
    feed (fx, fx->agent_a, &batch);
    pf_broker_stats (fx->broker, &after);
    assert_int_equal (after.malformed, before.malformed + 1);

    //  The client that reads BATCH may get its answer in one; the other not.
    sent_t *answer = take (fx, PF_PROTO_C, PF_C_REPLY);
    assert_non_null (answer);
    assert_int_equal (answer->msg.request_id, 1);
    assert_true (answer->flags & PF_MSG_BATCHABLE);
    sent_free (&answer);
    answer = take (fx, PF_PROTO_C, PF_C_ERROR);
    assert_non_null (answer);
    assert_int_equal (answer->msg.request_id, 2);
    assert_false (answer->flags & PF_MSG_BATCHABLE);
    assert_int_equal (answer->msg.code, PF_PYTHON_ERROR);
    sent_free (&answer);
    sent_free (&first);
    sent_free (&second);
    pf_msg_reset (&reply);
    pf_msg_reset (&error);
}

static void broadcast_runs_once_per_bridge_and_answers_once (void **state)
{
    fixture_t *fx = *state;
    agent_ready (fx, fx->agent_a, 2);
    agent_ready (fx, fx->agent_b, 1);
    client_request (fx, 9, "", PF_FLAG_BROADCAST, 0);
    assert_int_equal (count (fx, PF_PROTO_W, PF_W_REQUEST), 3);
    sent_t *request;
    while ((request = take (fx, PF_PROTO_W, PF_W_REQUEST))) {
        assert_null (take (fx, PF_PROTO_C, PF_C_REPLY));
        agent_reply (fx, request->to, &request->msg);
        sent_free (&request);
    }
    sent_t *reply = take (fx, PF_PROTO_C, PF_C_REPLY);
    assert_non_null (reply);
    assert_int_equal (reply->msg.request_id, 9);
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    assert_int_equal (msgpack_unpack_next (&result, (char *) zframe_data (reply->msg.body),
                                           zframe_size (reply->msg.body), NULL),
                      MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (result.data.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (result.data.via.array.size, 3);
    msgpack_unpacked_destroy (&result);
    assert_null (take (fx, PF_PROTO_C, PF_C_REPLY));
    sent_free (&reply);
}

int main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    pf_log_init ("test", PF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (work_goes_only_to_idle_bridges_and_waits_otherwise, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (session_requests_stay_on_one_bridge_one_at_a_time, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (a_replaced_bridge_loses_its_sessions_hard_or_soft, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (queued_request_past_its_deadline_times_out_unstarted,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (silent_agent_is_dead_its_work_reruns_or_fails, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (
            a_window_streams_requests_to_the_least_loaded_bridge_up_to_its_size, setup_windowed,
            teardown),
        cmocka_unit_test_setup_teardown (no_request_is_sent_to_wait_behind_one_that_ran_window_ms,
                                         setup_windowed, teardown),
        cmocka_unit_test_setup_teardown (a_request_handed_back_unstarted_runs_on_another_bridge,
                                         setup_windowed, teardown),
        cmocka_unit_test_setup_teardown (
            an_agent_lost_with_a_window_in_flight_reruns_only_idempotent_requests, setup_windowed,
            teardown),
        cmocka_unit_test_setup_teardown (an_agent_can_narrow_a_bridge_window_to_one,
                                         setup_windowed, teardown),
        cmocka_unit_test_setup_teardown (
            a_cancel_answers_the_client_and_tells_the_agent_that_has_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown (
            a_client_gone_for_good_has_its_requests_cancelled_and_no_one_elses, setup, teardown),
        cmocka_unit_test_setup_teardown (late_reply_after_a_broker_timeout_is_dropped, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (idle_sessions_expire_and_their_agent_is_told, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (a_batch_from_an_agent_is_handled_message_by_message, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (malformed_and_unknown_peers_are_counted_not_fatal, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (broadcast_runs_once_per_bridge_and_answers_once, setup,
                                         teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
