/*  test_client_timeout — libpyfleet with no broker at all: every request
    still gets exactly one reply, a local TIMEOUT, and bad arguments are
    refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pyfleet.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  The protocol's name limit (pf_proto.h PF_MAX_NAME), which the client enforces.
#define PF_MAX_NAME_TEST 255

//  An endpoint where nothing listens: a TCP port bound but never listened
//  on, held until release_endpoint, so no test running beside this one
//  (ctest -j) can be given it and answer.
static int reserved_fd = -1;

static char *unused_endpoint (void)
{
    reserved_fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (reserved_fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    assert_int_equal (bind (reserved_fd, (struct sockaddr *) &address, length), 0);
    assert_int_equal (getsockname (reserved_fd, (struct sockaddr *) &address, &length), 0);
    return zsys_sprintf ("tcp://127.0.0.1:%d", ntohs (address.sin_port));
}

static void release_endpoint (char **endpoint)
{
    zstr_free (endpoint);
    close (reserved_fd);
    reserved_fd = -1;
}

static void call_without_broker_times_out_locally_after_deadline_plus_margin (void **state)
{
    (void)state;
    char *endpoint = unused_endpoint ();
    pf_client_t *client = pf_client_new (endpoint);
    assert_non_null (client);
    pf_call_options_t options = {NULL, 300, 0};
    int64_t start = zclock_mono ();
    pf_reply_t *reply = pf_call (client, "svc", "echo", "\x80", 1, &options);
    int64_t elapsed = zclock_mono () - start;
    assert_non_null (reply);
    assert_false (pf_reply_ok (reply));
    assert_int_equal (pf_reply_code (reply), PF_TIMEOUT);
    assert_string_equal (pf_reply_code_name (reply), "TIMEOUT");
    assert_true (pf_reply_local (reply));
    assert_true (strlen (pf_reply_message (reply)) > 0);
    assert_null (pf_reply_body (reply, NULL));
    assert_null (pf_reply_body_json (reply));
    assert_in_range (elapsed, 300, 300 + PF_CLIENT_TIMEOUT_MARGIN_MS + 400);
    pf_reply_destroy (&reply);
    pf_reply_destroy (&reply); //  safe twice
    assert_int_equal (pf_client_outstanding (client), 0);
    pf_client_destroy (&client);
    pf_client_destroy (&client);
    release_endpoint (&endpoint);
}

static void client_timeout_is_the_default_deadline (void **state)
{
    (void)state;
    char *endpoint = unused_endpoint ();
    pf_client_t *client = pf_client_new (endpoint);
    assert_int_equal (pf_client_timeout (client), PF_CLIENT_DEFAULT_TIMEOUT_MS);
    pf_client_set_timeout (client, 200);
    pf_client_set_timeout (client, 0); //  ignored: must be > 0
    assert_int_equal (pf_client_timeout (client), 200);
    int64_t start = zclock_mono ();
    pf_reply_t *reply = pf_call (client, "svc", "echo", NULL, 0, NULL);
    int64_t elapsed = zclock_mono () - start;
    assert_int_equal (pf_reply_code (reply), PF_TIMEOUT);
    assert_in_range (elapsed, 200, 200 + PF_CLIENT_TIMEOUT_MARGIN_MS + 400);
    pf_reply_destroy (&reply);
    pf_client_destroy (&client);
    release_endpoint (&endpoint);
}

static void thousand_sends_get_exactly_one_timeout_each (void **state)
{
    (void)state;
    char *endpoint = unused_endpoint ();
    pf_client_t *client = pf_client_new (endpoint);
    pf_call_options_t options = {NULL, 300, PF_CALL_IDEMPOTENT};
    enum { COUNT = 1000 };
    uint64_t first_id = 0;
    for (int i = 0; i < COUNT; i++) {
        uint64_t id;
        assert_int_equal (pf_send (client, "svc", "echo", NULL, 0, &options, &id), 0);
        if (i == 0) first_id = id;
        assert_true (id == first_id + (uint64_t)i); //  consecutive ids
    }
    assert_int_equal (pf_client_outstanding (client), COUNT);
    static bool seen[COUNT];
    memset (seen, 0, sizeof seen);
    int64_t start = zclock_mono ();
    for (int i = 0; i < COUNT; i++) {
        pf_reply_t *reply = pf_recv (client, 5000);
        assert_non_null (reply);
        assert_int_equal (pf_reply_code (reply), PF_TIMEOUT);
        assert_true (pf_reply_local (reply));
        uint64_t index = pf_reply_request_id (reply) - first_id;
        assert_true (index < COUNT);
        assert_false (seen[index]);
        seen[index] = true;
        pf_reply_destroy (&reply);
    }
    assert_true (zclock_mono () - start < 2000);
    assert_int_equal (pf_client_outstanding (client), 0);
    //  Nothing outstanding: pf_recv returns at once, even asked to wait forever.
    start = zclock_mono ();
    assert_null (pf_recv (client, -1));
    assert_true (zclock_mono () - start < 100);
    pf_client_destroy (&client);
    release_endpoint (&endpoint);
}

static void recv_returns_null_when_its_wait_ends_first (void **state)
{
    (void)state;
    char *endpoint = unused_endpoint ();
    pf_client_t *client = pf_client_new (endpoint);
    pf_call_options_t options = {NULL, 10000, 0};
    assert_int_equal (pf_send (client, "svc", "echo", NULL, 0, &options, NULL), 0);
    int64_t start = zclock_mono ();
    assert_null (pf_recv (client, 100));
    int64_t elapsed = zclock_mono () - start;
    assert_in_range (elapsed, 100, 600);
    assert_null (pf_recv (client, 0));
    assert_int_equal (pf_client_outstanding (client), 1);
    pf_client_destroy (&client); //  with a request outstanding: no leak, no hang
    release_endpoint (&endpoint);
}

static void cancel_of_an_unsent_request_answers_it_once (void **state)
{
    (void)state;
    char *endpoint = unused_endpoint ();
    pf_client_t *client = pf_client_new (endpoint);
    uint64_t id;
    assert_int_equal (pf_send (client, "svc", "sleep", NULL, 0, NULL, &id), 0);
    assert_int_equal (pf_cancel (client, id), 0);
    assert_int_equal (pf_cancel (client, id), -1); //  already answered
    assert_true (strlen (pf_client_error (client)) > 0);
    pf_reply_t *reply = pf_recv (client, 1000);
    assert_non_null (reply);
    assert_int_equal (pf_reply_request_id (reply), id);
    assert_int_equal (pf_reply_code (reply), PF_CANCELLED);
    assert_true (pf_reply_local (reply));
    pf_reply_destroy (&reply);
    assert_null (pf_recv (client, 0));
    assert_int_equal (pf_cancel (client, 12345), -1);
    pf_client_destroy (&client);
    release_endpoint (&endpoint);
}

static void invalid_arguments_are_refused_before_sending (void **state)
{
    (void)state;
    char *endpoint = unused_endpoint ();
    pf_client_t *client = pf_client_new (endpoint);
    char long_name[PF_MAX_NAME_TEST + 2];
    memset (long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;

    assert_int_equal (pf_send (client, "", "echo", NULL, 0, NULL, NULL), -1);
    assert_non_null (strstr (pf_client_error (client), "service"));
    assert_int_equal (pf_send (client, NULL, "echo", NULL, 0, NULL, NULL), -1);
    assert_int_equal (pf_send (client, "svc", NULL, NULL, 0, NULL, NULL), -1);
    assert_int_equal (pf_send (client, "svc", long_name, NULL, 0, NULL, NULL), -1);
    assert_non_null (strstr (pf_client_error (client), "command"));
    pf_call_options_t bad_session = {long_name, 0, 0};
    assert_int_equal (pf_send (client, "svc", "echo", NULL, 0, &bad_session, NULL), -1);
    pf_call_options_t bad_flags = {NULL, 0, 0x80};
    assert_int_equal (pf_send (client, "svc", "echo", NULL, 0, &bad_flags, NULL), -1);
    assert_int_equal (pf_send (client, "svc", "echo", NULL, 5, NULL, NULL), -1);
    assert_int_equal (pf_client_outstanding (client), 0);

    pf_reply_t *reply = pf_call (client, long_name, "echo", NULL, 0, NULL);
    assert_int_equal (pf_reply_code (reply), PF_BAD_REQUEST);
    assert_true (pf_reply_local (reply));
    pf_reply_destroy (&reply);
    //  The size is checked before the bytes are read.
    reply = pf_call (client, "svc", "echo", "x", (size_t)64 * 1024 * 1024 + 1, NULL);
    assert_int_equal (pf_reply_code (reply), PF_TOO_LARGE);
    pf_reply_destroy (&reply);
    pf_client_destroy (&client);
    release_endpoint (&endpoint);
}

static void invalid_endpoint_gives_no_client (void **state)
{
    (void)state;
    assert_null (pf_client_new ("nonsense"));
    assert_null (pf_client_new (""));
    assert_null (pf_client_new (NULL));
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (call_without_broker_times_out_locally_after_deadline_plus_margin),
        cmocka_unit_test (client_timeout_is_the_default_deadline),
        cmocka_unit_test (thousand_sends_get_exactly_one_timeout_each),
        cmocka_unit_test (recv_returns_null_when_its_wait_ends_first),
        cmocka_unit_test (cancel_of_an_unsent_request_answers_it_once),
        cmocka_unit_test (invalid_arguments_are_refused_before_sending),
        cmocka_unit_test (invalid_endpoint_gives_no_client),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
