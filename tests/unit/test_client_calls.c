/*  test_client_calls — libpyfleet against a fake broker: a ROUTER in an actor
    that answers PFC1 REQUESTs by command name, so that replies, errors,
    flags, stale answers and many requests in flight can be checked without
    the real broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pf_batch.h"
#include "pf_curve.h"
#include "pf_proto.h"
#include "pyfleet.h"

#include <czmq.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------------
//  The fake broker. Commands:
//    echo     REPLY with the request body
//    rebound  REPLY with the REBOUND flag
//    inspect  REPLY {session, flags, timeout_ms} as the broker saw them
//    raise    ERROR PYTHON_ERROR with a {type, message, traceback} detail
//    busy     ERROR BUSY, message only
//    silent   no answer at all
//    noisy    first garbage, a reply to an unknown id and a PFW2 message, then echo
//    twice    REPLY twice
//    batch    the first is held; the second is answered with the first, a
//             reply to an unknown id and its own, in one BATCH

static void send_to (zsock_t *router, zframe_t *identity, pf_msg_t *msg)
{
    zmsg_t *encoded = pf_msg_encode (msg);
    assert_non_null (encoded);
    zmsg_prepend (encoded, &identity);
    zmsg_send (&encoded, router);
}

static void reply_with (zsock_t *router, zframe_t *identity, uint64_t id, uint32_t flags,
                        zframe_t *body)
{
    pf_msg_t reply;
    pf_msg_init (&reply);
    reply.proto = PF_PROTO_C;
    reply.command = PF_C_REPLY;
    reply.request_id = id;
    reply.flags = flags;
    reply.body = body;
    send_to (router, identity, &reply);
    pf_msg_reset (&reply);
}

static zframe_t *pack_inspect (pf_msg_t *request)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 3);
    msgpack_pack_str_with_body (&packer, "session", 7);
    msgpack_pack_str_with_body (&packer, request->session, strlen (request->session));
    msgpack_pack_str_with_body (&packer, "flags", 5);
    msgpack_pack_uint32 (&packer, request->flags);
    msgpack_pack_str_with_body (&packer, "timeout_ms", 10);
    msgpack_pack_uint32 (&packer, request->timeout_ms);
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return frame;
}

static zframe_t *pack_python_error (void)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 3);
    msgpack_pack_str_with_body (&packer, "type", 4);
    msgpack_pack_str_with_body (&packer, "ValueError", 10);
    msgpack_pack_str_with_body (&packer, "message", 7);
    msgpack_pack_str_with_body (&packer, "bad value", 9);
    msgpack_pack_str_with_body (&packer, "traceback", 9);
    const char *traceback =
        "Traceback (most recent call last):\n  File \"x.py\"\nValueError: bad value\n";
    msgpack_pack_str_with_body (&packer, traceback, strlen (traceback));
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return frame;
}

//  The request "batch" holds for the next one.
static zframe_t *held_identity;
static uint64_t held_id;
static zframe_t *held_body;

static void answer_in_a_batch (zsock_t *router, zframe_t *identity, pf_msg_t *request)
{
    if (!held_identity) {
        held_identity = identity;
        held_id = request->request_id;
        held_body = request->body;
        request->body = NULL;
        return;
    }
    assert_true (request->flags & PF_FLAG_BATCH_OK);
    pf_outbox_t *outbox = pf_outbox_new ();
    uint64_t ids[] = {held_id, held_id + 1000000, request->request_id};
    zframe_t *bodies[] = {held_body, zframe_new ("\xc0", 1), request->body};
    request->body = NULL;
    for (size_t index = 0; index < 3; index++) {
        pf_msg_t reply;
        pf_msg_init (&reply);
        reply.proto = PF_PROTO_C;
        reply.command = PF_C_REPLY;
        reply.request_id = ids[index];
        reply.body = bodies[index];
        assert_int_equal (pf_outbox_send (outbox, router, identity, &reply, PF_MSG_BATCHABLE), 0);
        pf_msg_reset (&reply);
    }
    assert_int_equal (pf_outbox_flush (outbox, router), 0);
    pf_outbox_destroy (&outbox);
    zframe_destroy (&held_identity);
    zframe_destroy (&identity);
}

//  Requests the fake broker saw inside a BATCH.
static size_t batched_requests;

static void handle_one (zsock_t *router, zframe_t *identity, pf_msg_t *decoded);

static void handle_request (zsock_t *router)
{
    zmsg_t *msg = zmsg_recv (router);
    if (!msg) return;
    zframe_t *identity = zmsg_pop (msg);
    pf_msg_t request;
    pf_msg_init (&request);
    char err[128];
    if (pf_msg_decode (&request, &msg, 0, err, sizeof err) != PF_OK) {
        zframe_destroy (&identity);
        pf_msg_reset (&request);
        return;
    }
    if (request.command != PF_C_BATCH) {
        handle_one (router, identity, &request);
        return;
    }
    pf_msg_t one;
    pf_msg_init (&one);
    size_t offset = 0;
    while (pf_batch_next (PF_PROTO_C, request.body, &offset, &one, 0, err, sizeof err) == PF_OK) {
        batched_requests++;
        handle_one (router, zframe_dup (identity), &one);
    }
    pf_msg_reset (&one);
    pf_msg_reset (&request);
    zframe_destroy (&identity);
}

//  Answers one request as its command says; takes identity, resets request.
static void handle_one (zsock_t *router, zframe_t *identity, pf_msg_t *decoded)
{
    pf_msg_t request = *decoded;
    pf_msg_init (decoded);
    if (request.command != PF_C_REQUEST_PACKED) {
        zframe_destroy (&identity);
        pf_msg_reset (&request);
        return;
    }
    const char *command = request.command_name;
    uint64_t id = request.request_id;
    if (streq (command, "echo") || streq (command, "twice")) {
        if (streq (command, "twice"))
            reply_with (router, zframe_dup (identity), id, 0, zframe_dup (request.body));
        reply_with (router, identity, id, 0, request.body);
        request.body = NULL;
    } else if (streq (command, "rebound"))
        reply_with (router, identity, id, PF_REPLY_REBOUND, zframe_new ("\xc3", 1));
    else if (streq (command, "inspect") || streq (command, "session_end"))
        reply_with (router, identity, id, 0, pack_inspect (&request));
    else if (streq (command, "raise") || streq (command, "busy") || streq (command, "lost")) {
        pf_msg_t error;
        pf_msg_init (&error);
        error.proto = PF_PROTO_C;
        error.command = PF_C_ERROR;
        error.request_id = id;
        if (streq (command, "raise")) {
            error.code = PF_PYTHON_ERROR;
            error.message = strdup ("bad value");
            error.detail = pack_python_error ();
        } else if (streq (command, "lost")) {
            error.code = PF_WORKER_LOST;
            error.message = strdup ("agent died");
        } else {
            error.code = PF_BUSY;
            error.message = strdup ("queue full, retry in 100 ms");
        }
        send_to (router, identity, &error);
        pf_msg_reset (&error);
    } else if (streq (command, "noisy")) {
        zmsg_t *garbage = zmsg_new ();
        zmsg_addmem (garbage, "", 0);
        zmsg_addstr (garbage, "PFC1");
        zmsg_addstr (garbage, "not a command");
        zframe_t *to = zframe_dup (identity);
        zmsg_prepend (garbage, &to);
        zmsg_send (&garbage, router);
        reply_with (router, zframe_dup (identity), id + 1000000, 0, zframe_new ("\x01", 1));
        pf_msg_t worker;
        pf_msg_init (&worker);
        worker.proto = PF_PROTO_W;
        worker.command = PF_W_HEARTBEAT;
        send_to (router, zframe_dup (identity), &worker);
        pf_msg_reset (&worker);
        reply_with (router, identity, id, 0, request.body);
        request.body = NULL;
    } else if (streq (command, "batch"))
        answer_in_a_batch (router, identity, &request);
    else //  silent, and anything else
        zframe_destroy (&identity);
    pf_msg_reset (&request);
}

static void fake_broker (zsock_t *pipe, void *endpoint)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_sndhwm (router, 200000);
    zsock_set_rcvhwm (router, 200000);
    int rc = zsock_bind (router, "%s", (const char *)endpoint);
    zsock_signal (pipe, 0);
    zstr_send (pipe, rc >= 0 ? zsock_endpoint (router) : "");
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == router)
            handle_request (router);
        else
            break; //  $TERM from the pipe, or interrupted
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

typedef struct {
    zactor_t *broker;
    char *endpoint;
    pf_client_t *client;
} fixture_t;

static int setup (void **state)
{
    fixture_t *fixture = calloc (1, sizeof *fixture);
    fixture->broker = zactor_new (fake_broker, "tcp://127.0.0.1:*");
    fixture->endpoint = zstr_recv (fixture->broker);
    assert_true (strlen (fixture->endpoint) > 0);
    fixture->client = pf_client_new (fixture->endpoint);
    assert_non_null (fixture->client);
    pf_client_set_timeout (fixture->client, 5000);
    *state = fixture;
    return 0;
}

static int teardown (void **state)
{
    fixture_t *fixture = *state;
    pf_client_destroy (&fixture->client);
    zactor_destroy (&fixture->broker);
    zstr_free (&fixture->endpoint);
    free (fixture);
    return 0;
}

//  ---------------------------------------------------------------------------

static void call_returns_the_result_body (void **state)
{
    fixture_t *fixture = *state;
    const char args[] = "\x82\xa1"
                        "a\x01\xa1"
                        "b\x92\xc3\xc0"; //  {"a":1,"b":[true,null]}
    pf_reply_t *reply = pf_call (fixture->client, "svc", "echo", args, sizeof args - 1, NULL);
    assert_true (pf_reply_ok (reply));
    assert_int_equal (pf_reply_code (reply), PF_OK);
    assert_string_equal (pf_reply_code_name (reply), "OK");
    assert_string_equal (pf_reply_message (reply), "");
    assert_false (pf_reply_local (reply));
    assert_false (pf_reply_rebound (reply));
    size_t size;
    const void *body = pf_reply_body (reply, &size);
    assert_int_equal (size, sizeof args - 1);
    assert_memory_equal (body, args, size);
    char *json = pf_reply_body_json (reply);
    assert_string_equal (json, "{\"a\":1,\"b\":[true,null]}");
    free (json);
    assert_null (pf_reply_detail (reply, &size));
    assert_int_equal (size, 0);
    assert_null (pf_reply_error_type (reply));
    assert_null (pf_reply_traceback (reply));
    pf_reply_destroy (&reply);
}

static void empty_result_reads_as_json_null (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call (fixture->client, "svc", "echo", NULL, 0, NULL);
    assert_true (pf_reply_ok (reply));
    assert_null (pf_reply_body (reply, NULL));
    char *json = pf_reply_body_json (reply);
    assert_string_equal (json, "null");
    free (json);
    pf_reply_destroy (&reply);
}

static void python_error_carries_type_message_and_traceback (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call (fixture->client, "svc", "raise", NULL, 0, NULL);
    assert_false (pf_reply_ok (reply));
    assert_int_equal (pf_reply_code (reply), PF_PYTHON_ERROR);
    assert_string_equal (pf_reply_code_name (reply), "PYTHON_ERROR");
    assert_string_equal (pf_reply_message (reply), "bad value");
    assert_string_equal (pf_reply_error_type (reply), "ValueError");
    assert_non_null (strstr (pf_reply_traceback (reply), "Traceback (most recent call last)"));
    size_t size;
    assert_non_null (pf_reply_detail (reply, &size));
    assert_true (size > 0);
    assert_null (pf_reply_body (reply, NULL));
    assert_null (pf_reply_body_json (reply));
    assert_false (pf_reply_local (reply));
    pf_reply_destroy (&reply);
}

static void broker_errors_come_through_with_their_code (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call (fixture->client, "svc", "busy", NULL, 0, NULL);
    assert_int_equal (pf_reply_code (reply), PF_BUSY);
    assert_string_equal (pf_reply_message (reply), "queue full, retry in 100 ms");
    assert_null (pf_reply_error_type (reply));
    assert_null (pf_reply_detail (reply, NULL));
    pf_reply_destroy (&reply);
}

static void rebound_flag_is_reported (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call (fixture->client, "svc", "rebound", NULL, 0, NULL);
    assert_true (pf_reply_ok (reply));
    assert_true (pf_reply_rebound (reply));
    pf_reply_destroy (&reply);
}

static void session_flags_and_remaining_deadline_reach_the_broker (void **state)
{
    fixture_t *fixture = *state;
    pf_call_options_t options = {"user-42", 4000, PF_CALL_IDEMPOTENT | PF_CALL_SOFT_AFFINITY};
    pf_reply_t *reply = pf_call (fixture->client, "svc", "inspect", NULL, 0, &options);
    assert_true (pf_reply_ok (reply));
    char *text = pf_reply_body_json (reply);
    json_t *seen = json_loads (text, 0, NULL);
    assert_non_null (seen);
    assert_string_equal (json_string_value (json_object_get (seen, "session")), "user-42");
    //  Idempotent + soft, and the library's "reads BATCH".
    assert_int_equal (json_integer_value (json_object_get (seen, "flags")), 3 | PF_FLAG_BATCH_OK);
    json_int_t timeout = json_integer_value (json_object_get (seen, "timeout_ms"));
    assert_in_range (timeout, 3000, 4000);
    json_decref (seen);
    free (text);
    pf_reply_destroy (&reply);
}

static void unanswered_call_times_out_locally (void **state)
{
    fixture_t *fixture = *state;
    pf_call_options_t options = {NULL, 200, 0};
    int64_t start = zclock_mono ();
    pf_reply_t *reply = pf_call (fixture->client, "svc", "silent", NULL, 0, &options);
    int64_t elapsed = zclock_mono () - start;
    assert_int_equal (pf_reply_code (reply), PF_TIMEOUT);
    assert_true (pf_reply_local (reply));
    assert_in_range (elapsed, 200, 200 + PF_CLIENT_TIMEOUT_MARGIN_MS + 400);
    pf_reply_destroy (&reply);
}

static void garbage_and_stale_replies_are_dropped (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call (fixture->client, "svc", "noisy", "\x07", 1, NULL);
    assert_true (pf_reply_ok (reply));
    size_t size;
    assert_memory_equal (pf_reply_body (reply, &size), "\x07", 1);
    pf_reply_destroy (&reply);

    //  A second answer to the same id is dropped: the next call gets its own.
    reply = pf_call (fixture->client, "svc", "twice", "\x01", 1, NULL);
    assert_true (pf_reply_ok (reply));
    uint64_t first = pf_reply_request_id (reply);
    pf_reply_destroy (&reply);
    reply = pf_call (fixture->client, "svc", "echo", "\x02", 1, NULL);
    assert_true (pf_reply_request_id (reply) != first);
    assert_memory_equal (pf_reply_body (reply, &size), "\x02", 1);
    pf_reply_destroy (&reply);
}

static void call_keeps_async_replies_for_recv (void **state)
{
    fixture_t *fixture = *state;
    uint64_t async_id;
    assert_int_equal (pf_send (fixture->client, "svc", "echo", "\x0a", 1, NULL, &async_id), 0);
    pf_reply_t *reply = pf_call (fixture->client, "svc", "echo", "\x0b", 1, NULL);
    assert_true (pf_reply_request_id (reply) != async_id);
    size_t size;
    assert_memory_equal (pf_reply_body (reply, &size), "\x0b", 1);
    pf_reply_destroy (&reply);
    assert_int_equal (pf_client_outstanding (fixture->client), 1);
    reply = pf_recv (fixture->client, 5000);
    assert_non_null (reply);
    assert_int_equal (pf_reply_request_id (reply), async_id);
    assert_memory_equal (pf_reply_body (reply, &size), "\x0a", 1);
    pf_reply_destroy (&reply);
    assert_int_equal (pf_client_outstanding (fixture->client), 0);
}

static void ten_thousand_requests_in_flight_are_all_answered (void **state)
{
    fixture_t *fixture = *state;
    enum { COUNT = 10000 };
    uint64_t first_id = 0;
    for (uint32_t i = 0; i < COUNT; i++) {
        unsigned char body[5] = {0xce, (unsigned char)(i >> 24), (unsigned char)(i >> 16),
                                 (unsigned char)(i >> 8), (unsigned char)i}; //  uint32 i
        uint64_t id;
        assert_int_equal (pf_send (fixture->client, "svc", "echo", body, 5, NULL, &id), 0);
        if (i == 0) first_id = id;
    }
    assert_int_equal (pf_client_outstanding (fixture->client), COUNT);
    static bool seen[COUNT];
    memset (seen, 0, sizeof seen);
    for (int i = 0; i < COUNT; i++) {
        pf_reply_t *reply = pf_recv (fixture->client, 5000);
        assert_non_null (reply);
        assert_true (pf_reply_ok (reply));
        uint64_t index = pf_reply_request_id (reply) - first_id;
        assert_true (index < COUNT);
        assert_false (seen[index]);
        seen[index] = true;
        size_t size;
        const unsigned char *body = pf_reply_body (reply, &size);
        assert_int_equal (size, 5);
        uint32_t echoed =
            (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 | (uint32_t)body[3] << 8 | body[4];
        assert_int_equal (echoed, index);
        pf_reply_destroy (&reply);
    }
    assert_null (pf_recv (fixture->client, 0));
}

static void cancel_of_a_sent_request_still_gets_one_reply (void **state)
{
    fixture_t *fixture = *state;
    //  A first call proves the connection is up, so the next send leaves at once.
    pf_reply_t *reply = pf_call (fixture->client, "svc", "echo", NULL, 0, NULL);
    assert_true (pf_reply_ok (reply));
    pf_reply_destroy (&reply);
    //  The fake broker ignores CANCEL and answers: the one reply is the result.
    uint64_t id;
    assert_int_equal (pf_send (fixture->client, "svc", "echo", "\x05", 1, NULL, &id), 0);
    assert_int_equal (pf_cancel (fixture->client, id), 0);
    reply = pf_recv (fixture->client, 5000);
    assert_non_null (reply);
    assert_int_equal (pf_reply_request_id (reply), id);
    assert_true (pf_reply_ok (reply));
    assert_false (pf_reply_local (reply));
    pf_reply_destroy (&reply);
    assert_null (pf_recv (fixture->client, 0));
}

//  Requests sent before the broker is up wait in the client and go out once
//  it is reachable.
static void requests_sent_before_the_broker_starts_are_delivered (void **state)
{
    (void)state;
    char *endpoint = zsys_sprintf ("ipc:///tmp/pyfleet-test-client-%d.ipc", (int)getpid ());
    pf_client_t *client = pf_client_new (endpoint);
    pf_call_options_t options = {NULL, 5000, 0};
    uint64_t id;
    assert_int_equal (pf_send (client, "svc", "echo", "\x2a", 1, &options, &id), 0);
    assert_null (pf_recv (client, 100)); //  nobody there yet

    zactor_t *broker = zactor_new (fake_broker, endpoint);
    char *bound = zstr_recv (broker);
    assert_true (strlen (bound) > 0);
    pf_reply_t *reply = pf_recv (client, 5000);
    assert_non_null (reply);
    assert_int_equal (pf_reply_request_id (reply), id);
    assert_true (pf_reply_ok (reply));
    size_t size;
    assert_memory_equal (pf_reply_body (reply, &size), "\x2a", 1);
    pf_reply_destroy (&reply);
    pf_client_destroy (&client);
    zactor_destroy (&broker);
    zstr_free (&bound);
    zstr_free (&endpoint);
}

static void busy_is_retried_with_backoff_until_the_attempts_run_out (void **state)
{
    fixture_t *fixture = *state;
    pf_retry_t retry = {3, 20, 40};
    pf_client_set_retry (fixture->client, &retry);
    int64_t start = zclock_mono ();
    pf_reply_t *reply = pf_call (fixture->client, "svc", "busy", NULL, 0, NULL);
    int64_t elapsed = zclock_mono () - start;
    assert_int_equal (pf_reply_code (reply), PF_BUSY);
    assert_int_equal (pf_reply_attempts (reply), 3);
    //  Backoffs in [10, 20] then [20, 40] ms: at least 30 ms in all.
    assert_in_range (elapsed, 30, 1000);
    pf_reply_destroy (&reply);
}

static void without_a_policy_nothing_is_retried (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call (fixture->client, "svc", "busy", NULL, 0, NULL);
    assert_int_equal (pf_reply_code (reply), PF_BUSY);
    assert_int_equal (pf_reply_attempts (reply), 1);
    pf_reply_destroy (&reply);
    assert_int_equal (pf_client_retry (fixture->client).attempts, 1);
}

static void worker_lost_is_retried_only_for_idempotent_requests (void **state)
{
    fixture_t *fixture = *state;
    pf_retry_t retry = {4, 5, 10};
    pf_client_set_retry (fixture->client, &retry);
    pf_reply_t *reply = pf_call (fixture->client, "svc", "lost", NULL, 0, NULL);
    assert_int_equal (pf_reply_code (reply), PF_WORKER_LOST);
    assert_int_equal (pf_reply_attempts (reply), 1);
    pf_reply_destroy (&reply);
    pf_call_options_t options = {NULL, 0, PF_CALL_IDEMPOTENT};
    reply = pf_call (fixture->client, "svc", "lost", NULL, 0, &options);
    assert_int_equal (pf_reply_code (reply), PF_WORKER_LOST);
    assert_int_equal (pf_reply_attempts (reply), 4);
    pf_reply_destroy (&reply);
    //  Python errors are the application's answer: never retried.
    reply = pf_call (fixture->client, "svc", "raise", NULL, 0, &options);
    assert_int_equal (pf_reply_code (reply), PF_PYTHON_ERROR);
    assert_int_equal (pf_reply_attempts (reply), 1);
    pf_reply_destroy (&reply);
}

static void a_retry_that_would_pass_the_deadline_is_not_made (void **state)
{
    fixture_t *fixture = *state;
    pf_retry_t retry = {5, 2000, 4000};
    pf_client_set_retry (fixture->client, &retry);
    pf_call_options_t options = {NULL, 300, 0};
    int64_t start = zclock_mono ();
    pf_reply_t *reply = pf_call (fixture->client, "svc", "busy", NULL, 0, &options);
    assert_int_equal (pf_reply_code (reply), PF_BUSY);
    assert_int_equal (pf_reply_attempts (reply), 1);
    assert_true (zclock_mono () - start < 300);
    pf_reply_destroy (&reply);
}

static void async_busy_replies_are_retried_and_each_answered_once (void **state)
{
    fixture_t *fixture = *state;
    pf_retry_t retry = {3, 5, 10};
    pf_client_set_retry (fixture->client, &retry);
    for (int i = 0; i < 200; i++)
        assert_int_equal (pf_send (fixture->client, "svc", i % 2 ? "busy" : "echo", "\x01", 1,
                                   NULL, NULL),
                          0);
    int busy = 0, ok = 0;
    pf_reply_t *reply;
    while ((reply = pf_recv (fixture->client, 5000))) {
        if (pf_reply_code (reply) == PF_BUSY) {
            assert_int_equal (pf_reply_attempts (reply), 3);
            busy++;
        } else if (pf_reply_ok (reply))
            ok++;
        pf_reply_destroy (&reply);
    }
    assert_int_equal (busy, 100);
    assert_int_equal (ok, 100);
    assert_int_equal (pf_client_outstanding (fixture->client), 0);
}

static void cancel_while_waiting_to_retry_answers_cancelled_at_once (void **state)
{
    fixture_t *fixture = *state;
    pf_retry_t retry = {3, 2000, 2000};
    pf_client_set_retry (fixture->client, &retry);
    uint64_t id;
    assert_int_equal (pf_send (fixture->client, "svc", "busy", NULL, 0, NULL, &id), 0);
    //  The BUSY arrives and the retry waits >= 1 s: nothing comes in 300 ms.
    assert_null (pf_recv (fixture->client, 300));
    assert_int_equal (pf_cancel (fixture->client, id), 0);
    pf_reply_t *reply = pf_recv (fixture->client, 0);
    assert_non_null (reply);
    assert_int_equal (pf_reply_request_id (reply), id);
    assert_int_equal (pf_reply_code (reply), PF_CANCELLED);
    assert_true (pf_reply_local (reply));
    pf_reply_destroy (&reply);
    assert_int_equal (pf_client_outstanding (fixture->client), 0);
}

static void session_handle_sends_its_id_with_every_call_and_ends_it (void **state)
{
    fixture_t *fixture = *state;
    pf_session_t *named = pf_session_new (fixture->client, "svc", "user-7");
    assert_string_equal (pf_session_id (named), "user-7");
    pf_session_t *session = pf_session_new (fixture->client, "svc", NULL);
    pf_session_t *other = pf_session_new (fixture->client, "svc", NULL);
    assert_non_null (session);
    assert_int_equal (strlen (pf_session_id (session)), 34);
    assert_string_not_equal (pf_session_id (session), pf_session_id (other));
    pf_call_options_t options = {"ignored", 0, 0};
    pf_reply_t *replies[2] = {pf_session_call (session, "inspect", NULL, 0, &options),
                              pf_session_end (session, 0)};
    for (int i = 0; i < 2; i++) {
        char *text = pf_reply_body_json (replies[i]);
        json_t *seen = json_loads (text, 0, NULL);
        assert_non_null (seen);
        assert_string_equal (json_string_value (json_object_get (seen, "session")),
                             pf_session_id (session));
        json_decref (seen);
        free (text);
        pf_reply_destroy (&replies[i]);
    }
    uint64_t id;
    assert_int_equal (pf_session_send (named, "echo", "\x02", 1, NULL, &id), 0);
    pf_reply_t *reply = pf_recv (fixture->client, 5000);
    assert_int_equal (pf_reply_request_id (reply), id);
    pf_reply_destroy (&reply);
    assert_null (pf_session_new (fixture->client, "", NULL));
    pf_session_destroy (&session);
    pf_session_destroy (&session);
    pf_session_destroy (&other);
    pf_session_destroy (&named);
}

static void json_calls_pack_their_arguments_and_refuse_invalid_json (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_call_json (fixture->client, "svc", "echo", "{\"a\": [1, \"b\"]}", NULL);
    char *text = pf_reply_body_json (reply);
    assert_string_equal (text, "{\"a\":[1,\"b\"]}");
    free (text);
    pf_reply_destroy (&reply);
    reply = pf_call_json (fixture->client, "svc", "echo", "{nope", NULL);
    assert_int_equal (pf_reply_code (reply), PF_BAD_REQUEST);
    assert_true (pf_reply_local (reply));
    assert_non_null (strstr (pf_reply_message (reply), "JSON"));
    pf_reply_destroy (&reply);
    assert_int_equal (pf_send_json (fixture->client, "svc", "echo", "[", NULL, NULL), -1);
    assert_non_null (strstr (pf_client_error (fixture->client), "JSON"));
    assert_int_equal (pf_client_outstanding (fixture->client), 0);
}

//  Answers that come in one BATCH: pf_call gets its own (the last of the
//  batch), pf_recv the other, the stray one is dropped.
static void answers_in_one_batch_reach_pf_call_and_pf_recv (void **state)
{
    fixture_t *fixture = *state;
    uint64_t first;
    assert_int_equal (pf_send (fixture->client, "svc", "batch", "\x01", 1, NULL, &first), 0);
    pf_reply_t *reply = pf_call (fixture->client, "svc", "batch", "\x02", 1, NULL);
    assert_true (pf_reply_ok (reply));
    assert_true (pf_reply_request_id (reply) != first);
    size_t size;
    const byte *body = pf_reply_body (reply, &size);
    assert_int_equal (size, 1);
    assert_int_equal (body[0], 0x02);
    pf_reply_destroy (&reply);
    reply = pf_recv (fixture->client, 1000);
    assert_non_null (reply);
    assert_true (pf_reply_request_id (reply) == first);
    body = pf_reply_body (reply, &size);
    assert_int_equal (body[0], 0x01);
    pf_reply_destroy (&reply);
    //  Nothing else is outstanding: the stray answer was not a reply.
    assert_null (pf_recv (fixture->client, 100));
}

//  Batching: requests sent between two waits reach the broker as one BATCH
//  when the client waits, and each gets its reply; turning it off sends
//  what is queued.
static void batching_sends_the_queued_requests_as_one_batch (void **state)
{
    fixture_t *fixture = *state;
    pf_client_set_batching (fixture->client, true);
    size_t before = batched_requests;
    uint64_t ids[5];
    for (int index = 0; index < 5; index++) {
        byte arg = (byte)index;
        assert_int_equal (pf_send (fixture->client, "svc", "echo", &arg, 1, NULL, &ids[index]), 0);
    }
    for (int index = 0; index < 5; index++) {
        pf_reply_t *reply = pf_recv (fixture->client, 2000);
        assert_non_null (reply);
        assert_true (pf_reply_ok (reply));
        size_t size;
        const byte *body = pf_reply_body (reply, &size);
        assert_true (pf_reply_request_id (reply) == ids[body[0]]);
        pf_reply_destroy (&reply);
    }
    assert_int_equal (batched_requests - before, 5);
    //  A lone queued request goes alone; off sends it without a wait.
    assert_int_equal (pf_send (fixture->client, "svc", "echo", "\x07", 1, NULL, NULL), 0);
    pf_client_set_batching (fixture->client, false);
    pf_reply_t *reply = pf_recv (fixture->client, 2000);
    assert_non_null (reply);
    assert_true (pf_reply_ok (reply));
    pf_reply_destroy (&reply);
    assert_int_equal (batched_requests - before, 5);
}

static void broadcast_sets_the_broadcast_flag (void **state)
{
    fixture_t *fixture = *state;
    pf_reply_t *reply = pf_broadcast (fixture->client, "svc", "inspect", NULL, 0, NULL);
    char *text = pf_reply_body_json (reply);
    json_t *seen = json_loads (text, 0, NULL);
    assert_int_equal (json_integer_value (json_object_get (seen, "flags")),
                      PF_CALL_BROADCAST | PF_FLAG_BATCH_OK);
    json_decref (seen);
    free (text);
    pf_reply_destroy (&reply);
}

//  CurveZMQ keys are read before a client is made: a bad one gives no client
//  and a reason, never a client that can only time out.
static void keys_are_checked_before_a_client_is_made (void **state)
{
    (void)state;
    char dir[] = "/tmp/pf-test-keys-XXXXXX", cert[64], why[512];
    assert_non_null (mkdtemp (dir));
    snprintf (cert, sizeof cert, "%s/me", dir);
    assert_int_equal (pf_curve_keygen (cert, NULL, why, sizeof why), 0);
    char key[PF_CURVE_KEY_LEN + 1];
    assert_int_equal (pf_curve_public_key (cert, key, why, sizeof why), 0);

    assert_int_equal (pf_client_check_keys (NULL, why, sizeof why), 0);
    struct {
        pf_client_keys_t keys;
        const char *reason; //  NULL: good keys
    } cases[] = {
        {{cert, NULL}, "needs both"},
        {{NULL, key}, "needs both"},
        {{"/nonexistent/cert", key}, "no certificate at"},
        {{cert, "not a key"}, "neither a Z85 key"},
        {{cert, key}, NULL},
        {{cert, cert}, NULL}, //  the broker's key from its certificate file
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        why[0] = 0;
        int rc = pf_client_check_keys (&cases[i].keys, why, sizeof why);
        pf_client_t *client = pf_client_new_keys ("tcp://127.0.0.1:1", NULL, &cases[i].keys);
        if (cases[i].reason) {
            assert_int_equal (rc, -1);
            assert_non_null (strstr (why, cases[i].reason));
            assert_null (client);
        } else {
            assert_int_equal (rc, 0);
            assert_non_null (client);
        }
        pf_client_destroy (&client);
    }
    //  Over unix:// the keys are not used (the socket file's mode decides).
    pf_client_keys_t keys = {cert, key};
    pf_client_t *client = pf_client_new_keys ("unix:///tmp/pf-no-such.sock", NULL, &keys);
    assert_non_null (client);
    pf_client_destroy (&client);
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    assert_int_equal (system (command), 0);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (call_returns_the_result_body, setup, teardown),
        cmocka_unit_test_setup_teardown (busy_is_retried_with_backoff_until_the_attempts_run_out,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (without_a_policy_nothing_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown (worker_lost_is_retried_only_for_idempotent_requests,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (a_retry_that_would_pass_the_deadline_is_not_made, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (async_busy_replies_are_retried_and_each_answered_once,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (cancel_while_waiting_to_retry_answers_cancelled_at_once,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (session_handle_sends_its_id_with_every_call_and_ends_it,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (json_calls_pack_their_arguments_and_refuse_invalid_json,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (broadcast_sets_the_broadcast_flag, setup, teardown),
        cmocka_unit_test_setup_teardown (answers_in_one_batch_reach_pf_call_and_pf_recv, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (batching_sends_the_queued_requests_as_one_batch, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (empty_result_reads_as_json_null, setup, teardown),
        cmocka_unit_test_setup_teardown (python_error_carries_type_message_and_traceback, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (broker_errors_come_through_with_their_code, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (rebound_flag_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown (session_flags_and_remaining_deadline_reach_the_broker,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (unanswered_call_times_out_locally, setup, teardown),
        cmocka_unit_test_setup_teardown (garbage_and_stale_replies_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown (call_keeps_async_replies_for_recv, setup, teardown),
        cmocka_unit_test_setup_teardown (ten_thousand_requests_in_flight_are_all_answered, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (cancel_of_a_sent_request_still_gets_one_reply, setup,
                                         teardown),
        cmocka_unit_test (requests_sent_before_the_broker_starts_are_delivered),
        cmocka_unit_test (keys_are_checked_before_a_client_is_made),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
