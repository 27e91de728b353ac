/*  test_client_stream — libpyfleet over unix:// against a broker played by
    the test: requests wait for a broker that is not up yet and go out once
    it is; bytes that are not PFC1 from the broker drop the connection, and
    the request is sent again on a new one if it is idempotent and the
    policy allows, else it times out locally; an endpoint that cannot name a
    socket is refused at once. */
#define _GNU_SOURCE //  accept4
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "pf_stream.h"
#include "pyfleet.h"

#define ERRLEN 256

typedef struct {
    char dir[64];
    char path[128];
    char endpoint[160];
    int listener;         //  -1 until the broker is "up"
    pf_stream_t conn;     //  the client's current connection
    int accepted;         //  connections accepted so far
    pf_client_t *client;
} fixture_t;

static int fixture_setup (void **state)
{
    fixture_t *self = calloc (1, sizeof *self);
    strcpy (self->dir, "/tmp/test_client_stream_XXXXXX");
    assert_non_null (mkdtemp (self->dir));
    snprintf (self->path, sizeof self->path, "%s/broker.sock", self->dir);
    snprintf (self->endpoint, sizeof self->endpoint, "unix://%s", self->path);
    self->listener = -1;
    pf_stream_init (&self->conn, -1, 0);
    self->client = pf_client_new (self->endpoint);
    assert_non_null (self->client);
    *state = self;
    return 0;
}

static int fixture_teardown (void **state)
{
    fixture_t *self = *state;
    pf_client_destroy (&self->client);
    pf_stream_close (&self->conn);
    if (self->listener >= 0) close (self->listener);
    unlink (self->path);
    rmdir (self->dir);
    free (self);
    return 0;
}

static void broker_up (fixture_t *self)
{
    self->listener = pf_stream_listen (self->path);
    assert_true (self->listener >= 0);
}

//  One step of the played broker: takes a new connection if one waits,
//  reads what the client sent. Returns the next whole request (in msg),
//  or false.
static bool broker_step (fixture_t *self, pf_msg_t *msg)
{
    int fd = self->listener >= 0 ? accept4 (self->listener, NULL, NULL, SOCK_NONBLOCK) : -1;
    if (fd >= 0) {
        pf_stream_close (&self->conn); //  the client only makes a new one after losing the last
        pf_stream_init (&self->conn, fd, 0);
        self->accepted++;
    }
    if (self->conn.fd < 0) return false;
    char err[ERRLEN];
    if (pf_stream_next (&self->conn, msg, err, ERRLEN) == PF_OK) return true;
    pf_stream_fill (&self->conn);
    return pf_stream_next (&self->conn, msg, err, ERRLEN) == PF_OK;
}

//  Plays the broker until the client hands back a reply (bounded): each
//  request read is passed to answer_fn. Returns the reply.
typedef void (answer_fn) (fixture_t *self, pf_msg_t *request);

static pf_reply_t *run_until_reply (fixture_t *self, answer_fn *answer)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    pf_reply_t *reply = NULL;
    for (int turn = 0; turn < 500 && !reply; turn++) {
        while (broker_step (self, &msg))
            answer (self, &msg);
        reply = pf_recv (self->client, 10);
    }
    pf_msg_reset (&msg);
    return reply;
}

static void reply_ok (fixture_t *self, pf_msg_t *request)
{
    pf_msg_t reply;
    pf_msg_init (&reply);
    reply.proto = PF_PROTO_C;
    reply.command = PF_C_REPLY;
    reply.request_id = request->request_id;
    reply.body = zframe_new (zframe_data (request->body), zframe_size (request->body));
    assert_int_equal (pf_stream_put (&self->conn, &reply), 0);
    assert_int_equal (pf_stream_flush (&self->conn), 0);
    pf_msg_reset (&reply);
}

//  The first connection gets bytes that are not PFC1; later ones, answers.
static void garbage_first (fixture_t *self, pf_msg_t *request)
{
    if (self->accepted > 1) {
        reply_ok (self, request);
        return;
    }
    assert_int_equal (write (self->conn.fd, "HTTP/1.1 400\r\n", 14), 14);
}

//  Reads the request and closes the connection without an answer.
static void hang_up (fixture_t *self, pf_msg_t *request)
{
    (void)request;
    pf_stream_close (&self->conn);
}

static void requests_wait_for_a_broker_that_comes_up_later (void **state)
{
    fixture_t *self = *state;
    uint64_t id;
    assert_int_equal (pf_send (self->client, "svc", "echo", "\x81\xa1x\x01", 4, NULL, &id), 0);
    //  No broker: nothing arrives for a while, and nothing is lost.
    assert_null (pf_recv (self->client, 150));
    assert_int_equal (pf_client_outstanding (self->client), 1);
    broker_up (self);
    pf_reply_t *reply = run_until_reply (self, reply_ok);
    assert_non_null (reply);
    assert_true (pf_reply_ok (reply));
    assert_int_equal (pf_reply_request_id (reply), id);
    size_t size;
    const void *body = pf_reply_body (reply, &size);
    assert_int_equal (size, 4);
    assert_memory_equal (body, "\x81\xa1x\x01", 4);
    assert_int_equal (pf_reply_attempts (reply), 1);
    pf_reply_destroy (&reply);
}

static void garbage_from_the_broker_drops_the_connection_and_an_idempotent_request_goes_again (
    void **state)
{
    fixture_t *self = *state;
    pf_retry_t retry = {3, 10, 50};
    pf_client_set_retry (self->client, &retry);
    broker_up (self);
    pf_call_options_t options = {NULL, 5000, PF_CALL_IDEMPOTENT};
    assert_int_equal (pf_send (self->client, "svc", "echo", "\xc0", 1, &options, NULL), 0);
    pf_reply_t *reply = run_until_reply (self, garbage_first);
    assert_non_null (reply);
    assert_true (pf_reply_ok (reply));
    assert_false (pf_reply_local (reply));
    assert_int_equal (pf_reply_attempts (reply), 2);
    assert_int_equal (self->accepted, 2);
    pf_reply_destroy (&reply);
}

static void a_request_lost_with_its_connection_times_out_locally_by_its_deadline (void **state)
{
    fixture_t *self = *state;
    broker_up (self);
    pf_call_options_t options = {NULL, 200, 0}; //  not idempotent: never sent twice
    assert_int_equal (pf_send (self->client, "svc", "echo", "\xc0", 1, &options, NULL), 0);
    int64_t start = zclock_mono ();
    pf_reply_t *reply = run_until_reply (self, hang_up);
    int64_t elapsed = zclock_mono () - start;
    assert_non_null (reply);
    assert_int_equal (pf_reply_code (reply), PF_TIMEOUT);
    assert_true (pf_reply_local (reply));
    assert_int_equal (pf_reply_attempts (reply), 1);
    assert_int_equal (self->accepted, 1);
    assert_true (elapsed >= 200 && elapsed < 200 + PF_CLIENT_TIMEOUT_MARGIN_MS + 500);
    pf_reply_destroy (&reply);
}

static void a_broker_that_cannot_be_reached_is_a_timeout_that_says_why (void **state)
{
    fixture_t *self = *state;
    pf_call_options_t options = {NULL, 150, 0};
    pf_reply_t *reply = pf_call (self->client, "svc", "echo", "\xc0", 1, &options);
    assert_int_equal (pf_reply_code (reply), PF_TIMEOUT);
    assert_true (pf_reply_local (reply));
    assert_int_equal (pf_reply_attempts (reply), 0);
    assert_non_null (strstr (pf_reply_message (reply), "before the broker could be reached"));
    assert_non_null (strstr (pf_reply_message (reply), self->path));
    assert_non_null (strstr (pf_reply_message (reply), "No such file or directory"));
    pf_reply_destroy (&reply);
}

static void an_endpoint_that_cannot_name_a_socket_is_refused (void **state)
{
    (void)state;
    assert_null (pf_client_new ("unix://"));
    char endpoint[300] = "unix:///tmp/";
    memset (endpoint + strlen (endpoint), 'a', 200);
    assert_null (pf_client_new (endpoint));
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (requests_wait_for_a_broker_that_comes_up_later,
                                         fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown (
            garbage_from_the_broker_drops_the_connection_and_an_idempotent_request_goes_again,
            fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown (
            a_request_lost_with_its_connection_times_out_locally_by_its_deadline, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown (a_broker_that_cannot_be_reached_is_a_timeout_that_says_why,
                                         fixture_setup, fixture_teardown),
        cmocka_unit_test (an_endpoint_that_cannot_name_a_socket_is_refused),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
