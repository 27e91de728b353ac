/*  test_stream — PFC1 over a Unix stream socket (common/pf_stream): messages
    arrive whole and in order however the bytes are cut; an entry over the
    limit is refused by its request id and skipped without being held, and
    the stream goes on; bytes that cannot start an entry end it; a writer
    refuses what it cannot pack and what its peer does not read; listening
    replaces a dead broker's socket file, never a live one's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "pf_error.h"
#include "pf_stream.h"

#define ERRLEN 256

typedef struct {
    pf_stream_t writer, reader;
} pair_t;

static int pair_setup (void **state)
{
    int fds[2];
    assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    pair_t *pair = calloc (1, sizeof *pair);
    pf_stream_init (&pair->writer, fds[0], 0);
    pf_stream_init (&pair->reader, fds[1], 1024); //  a small max_body for the limit tests
    *state = pair;
    return 0;
}

static int pair_teardown (void **state)
{
    pair_t *pair = *state;
    pf_stream_close (&pair->writer);
    pf_stream_close (&pair->reader);
    free (pair);
    return 0;
}

static void request (pf_msg_t *msg, uint64_t id, size_t body_size)
{
    pf_msg_init (msg);
    msg->proto = PF_PROTO_C;
    msg->command = PF_C_REQUEST_PACKED;
    msg->request_id = id;
    msg->timeout_ms = 1500;
    msg->flags = PF_FLAG_IDEMPOTENT;
    strcpy (msg->service, "svc");
    strcpy (msg->session, "s-1");
    strcpy (msg->command_name, "echo");
    byte *body = malloc (body_size ? body_size : 1);
    for (size_t index = 0; index < body_size; index++)
        body[index] = (byte)(index * 7 + id);
    msg->body = zframe_new (body, body_size);
    free (body);
}

static void error_answer (pf_msg_t *msg, uint64_t id)
{
    pf_msg_init (msg);
    msg->proto = PF_PROTO_C;
    msg->command = PF_C_ERROR;
    msg->request_id = id;
    msg->code = PF_PYTHON_ERROR;
    msg->message = strdup ("ValueError: boom");
    msg->detail = zframe_new ("\x80", 1);
}

static void put (pf_stream_t *stream, pf_msg_t *msg)
{
    assert_int_equal (pf_stream_put (stream, msg), 0);
    pf_msg_reset (msg);
}

//  Reads from the socket until the next entry decodes (bounded).
static int next (pf_stream_t *stream, pf_msg_t *msg, char *err)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        int rc = pf_stream_next (stream, msg, err, ERRLEN);
        if (rc != -1 || errno != EAGAIN) return rc;
        if (pf_stream_fill (stream) <= 0 && errno != EAGAIN) return -1;
    }
    fail_msg ("no entry after 1000 reads");
    return -1;
}

static void check_request (pf_msg_t *msg, uint64_t id, size_t body_size)
{
    assert_int_equal (msg->proto, PF_PROTO_C);
    assert_int_equal (msg->command, PF_C_REQUEST_PACKED);
    assert_int_equal (msg->request_id, id);
    assert_int_equal (msg->timeout_ms, 1500);
    assert_int_equal (msg->flags, PF_FLAG_IDEMPOTENT);
    assert_string_equal (msg->service, "svc");
    assert_string_equal (msg->session, "s-1");
    assert_string_equal (msg->command_name, "echo");
    assert_int_equal (zframe_size (msg->body), body_size);
    for (size_t index = 0; index < body_size; index++)
        assert_int_equal (zframe_data (msg->body)[index], (byte)(index * 7 + id));
}

static void messages_arrive_whole_and_in_order (void **state)
{
    pair_t *pair = *state;
    pf_msg_t msg;
    for (uint64_t id = 1; id <= 50; id++) {
        request (&msg, id, id * 10);
        put (&pair->writer, &msg);
    }
    error_answer (&msg, 51);
    put (&pair->writer, &msg);
    assert_int_equal (pf_stream_flush (&pair->writer), 0);
    assert_int_equal (pf_stream_pending (&pair->writer), 0);
    char err[ERRLEN];
    for (uint64_t id = 1; id <= 50; id++) {
        assert_int_equal (next (&pair->reader, &msg, err), PF_OK);
        check_request (&msg, id, id * 10);
    }
    assert_int_equal (next (&pair->reader, &msg, err), PF_OK);
    assert_int_equal (msg.command, PF_C_ERROR);
    assert_int_equal (msg.code, PF_PYTHON_ERROR);
    assert_string_equal (msg.message, "ValueError: boom");
    assert_int_equal (zframe_size (msg.detail), 1);
    //  Nothing more: EAGAIN, then the end of the stream once the writer closes.
    assert_int_equal (pf_stream_next (&pair->reader, &msg, err, ERRLEN), -1);
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (pf_stream_fill (&pair->reader), -1);
    assert_int_equal (errno, EAGAIN);
    pf_stream_close (&pair->writer);
    assert_int_equal (pf_stream_fill (&pair->reader), 0);
    pf_msg_reset (&msg);
}

static void bytes_cut_anywhere_make_the_same_messages (void **state)
{
    pair_t *pair = *state;
    pf_msg_t msg;
    request (&msg, 7, 300);
    put (&pair->writer, &msg);
    request (&msg, 8, 0);
    put (&pair->writer, &msg);
    //  One byte at a time: the reader has nothing until an entry is whole.
    const byte *bytes = pair->writer.out + pair->writer.out_start;
    size_t total = pf_stream_pending (&pair->writer);
    char err[ERRLEN];
    int whole = 0;
    for (size_t index = 0; index < total; index++) {
        assert_int_equal (write (pair->writer.fd, bytes + index, 1), 1);
        assert_int_equal (pf_stream_fill (&pair->reader), 1);
        int rc = pf_stream_next (&pair->reader, &msg, err, ERRLEN);
        if (rc == -1) {
            assert_int_equal (errno, EAGAIN);
            continue;
        }
        assert_int_equal (rc, PF_OK);
        check_request (&msg, whole ? 8 : 7, whole ? 0 : 300);
        whole++;
        //  The first entry ends 4 + its packed size into the stream.
        assert_true (whole == 2 ? index == total - 1 : index < total - 1);
    }
    assert_int_equal (whole, 2);
    pf_msg_reset (&msg);
}

static void an_entry_over_the_limit_is_refused_by_id_and_skipped (void **state)
{
    pair_t *pair = *state;
    pf_msg_t msg;
    request (&msg, 41, 100);
    put (&pair->writer, &msg);
    request (&msg, 42, 1024 + PF_STREAM_MAX_HEAD + 1000); //  over the reader's entry limit
    put (&pair->writer, &msg);
    request (&msg, 43, 1025); //  within the entry limit, over max_body
    put (&pair->writer, &msg);
    request (&msg, 44, 1024);
    put (&pair->writer, &msg);
    assert_int_equal (pf_stream_flush (&pair->writer), 0);
    char err[ERRLEN];
    assert_int_equal (next (&pair->reader, &msg, err), PF_OK);
    check_request (&msg, 41, 100);
    assert_int_equal (next (&pair->reader, &msg, err), PF_TOO_LARGE);
    assert_true (msg.has_request_id);
    assert_int_equal (msg.request_id, 42);
    assert_int_equal (msg.command, PF_C_REQUEST_PACKED);
    assert_non_null (strstr (err, "over the limit"));
    //  The reader never held the refused entry.
    assert_true (pair->reader.in_alloc < 1024 + PF_STREAM_MAX_HEAD + 1000);
    assert_int_equal (next (&pair->reader, &msg, err), PF_TOO_LARGE);
    assert_int_equal (msg.request_id, 43);
    assert_non_null (strstr (err, "exceeds limit"));
    assert_int_equal (next (&pair->reader, &msg, err), PF_OK);
    check_request (&msg, 44, 1024);
    pf_msg_reset (&msg);
}

static void a_bad_entry_is_an_error_and_the_stream_goes_on (void **state)
{
    pair_t *pair = *state;
    //  A REQUEST_PACKED whose service name is empty, then a good one.
    const byte bad[] = {0, 0, 0, 26, PF_C_REQUEST_PACKED, 0, 0, 0, 0, 0, 0, 0, 9, //  id 9
                        0, 0, 0, 0, 0, 0, 0, 0, //  timeout_ms, flags
                        0, 0, 1, 'x',           //  service "", session "", command "x"
                        0, 0, 0, 1, 0xc0};      //  body
    assert_int_equal (write (pair->writer.fd, bad, sizeof bad), sizeof bad);
    pf_msg_t msg;
    request (&msg, 10, 5);
    put (&pair->writer, &msg);
    assert_int_equal (pf_stream_flush (&pair->writer), 0);
    char err[ERRLEN];
    assert_int_equal (next (&pair->reader, &msg, err), PF_BAD_REQUEST);
    assert_true (msg.has_request_id);
    assert_int_equal (msg.request_id, 9);
    assert_non_null (strstr (err, "service"));
    assert_int_equal (next (&pair->reader, &msg, err), PF_OK);
    check_request (&msg, 10, 5);
    pf_msg_reset (&msg);
}

static void bytes_that_cannot_start_an_entry_end_the_stream (void **state)
{
    pair_t *pair = *state;
    char err[ERRLEN];
    pf_msg_t msg;
    pf_msg_init (&msg);
    //  An HTTP request: a length of 1.2 GB, then a command byte of '/'.
    const char *http = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal (write (pair->writer.fd, http, strlen (http)), (ssize_t)strlen (http));
    assert_true (pf_stream_fill (&pair->reader) > 0);
    assert_int_equal (pf_stream_next (&pair->reader, &msg, err, ERRLEN), -1);
    assert_int_equal (errno, EPROTO);
    assert_non_null (strstr (err, "not PFC1"));

    //  A zero length, and a PFW2 command byte.
    pf_stream_t reader;
    int fds[2];
    const byte zero[] = {0, 0, 0, 0, 1}, worker[] = {0, 0, 0, 1, PF_W_BATCH};
    const byte *inputs[] = {zero, worker};
    for (int index = 0; index < 2; index++) {
        assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        pf_stream_init (&reader, fds[1], 0);
        assert_int_equal (write (fds[0], inputs[index], 5), 5);
        assert_int_equal (pf_stream_fill (&reader), 5);
        assert_int_equal (pf_stream_next (&reader, &msg, err, ERRLEN), -1);
        assert_int_equal (errno, EPROTO);
        close (fds[0]);
        pf_stream_close (&reader);
    }
}

static void the_writer_refuses_what_it_cannot_pack_or_its_peer_does_not_read (void **state)
{
    pair_t *pair = *state;
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W; //  not PFC1
    msg.command = PF_W_CANCEL;
    assert_int_equal (pf_stream_put (&pair->writer, &msg), -1);
    assert_int_equal (errno, EINVAL);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_BATCH; //  never on a stream
    assert_int_equal (pf_stream_put (&pair->writer, &msg), -1);
    assert_int_equal (errno, EINVAL);
    //  1 MiB bodies until the unread bytes reach the bound: the socket takes
    //  what it can, the rest waits, then the writer refuses.
    request (&msg, 1, 1024 * 1024);
    int rc = 0, puts = 0;
    while (puts < 200 && (rc = pf_stream_put (&pair->writer, &msg)) == 0) {
        puts++;
        assert_true (pf_stream_flush (&pair->writer) >= 0);
    }
    assert_int_equal (rc, -1);
    assert_int_equal (errno, ENOBUFS);
    assert_true (puts >= 60 && puts < 200);
    assert_int_equal (pf_stream_flush (&pair->writer), 1); //  still waiting for the peer
    //  The peer reads: the writer drains and takes messages again.
    char err[ERRLEN];
    pf_msg_t read;
    pf_msg_init (&read);
    pf_stream_t *reader = &pair->reader;
    reader->max_body = 2 * 1024 * 1024;
    for (int index = 0; index < puts; index++) {
        for (int attempt = 0; attempt < 100000; attempt++) {
            rc = pf_stream_next (reader, &read, err, ERRLEN);
            if (rc != -1) break;
            pf_stream_flush (&pair->writer);
            pf_stream_fill (reader);
        }
        assert_int_equal (rc, PF_OK);
        check_request (&read, 1, 1024 * 1024);
    }
    assert_int_equal (pf_stream_flush (&pair->writer), 0);
    assert_int_equal (pf_stream_put (&pair->writer, &msg), 0);
    pf_msg_reset (&read);
    pf_msg_reset (&msg);
}

static void a_dead_brokers_socket_file_is_replaced_a_live_ones_is_not (void **state)
{
    (void)state;
    char dir[] = "/tmp/test_stream_XXXXXX";
    assert_non_null (mkdtemp (dir));
    char path[128];
    snprintf (path, sizeof path, "%s/broker.sock", dir);
    assert_string_equal (pf_stream_path ("unix:///run/x.sock"), "/run/x.sock");
    assert_null (pf_stream_path ("ipc:///run/x.sock"));

    assert_int_equal (pf_stream_connect (path), -1);
    assert_int_equal (errno, ENOENT);
    int live = pf_stream_listen (path);
    assert_true (live >= 0);
    assert_int_equal (pf_stream_listen (path), -1);
    assert_int_equal (errno, EADDRINUSE);
    int client = pf_stream_connect (path);
    assert_true (client >= 0);
    close (client);
    close (live); //  the file stays, as after a kill -9
    assert_int_equal (access (path, F_OK), 0);
    assert_int_equal (pf_stream_connect (path), -1);
    assert_int_equal (errno, ECONNREFUSED);
    int again = pf_stream_listen (path);
    assert_true (again >= 0);
    client = pf_stream_connect (path);
    assert_true (client >= 0);
    close (client);
    close (again);
    //  A path too long for a socket address is refused, not cut.
    char longer[200];
    memset (longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    assert_int_equal (pf_stream_listen (longer), -1);
    assert_int_equal (errno, ENAMETOOLONG);
    unlink (path);
    rmdir (dir);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (messages_arrive_whole_and_in_order, pair_setup,
                                         pair_teardown),
        cmocka_unit_test_setup_teardown (bytes_cut_anywhere_make_the_same_messages, pair_setup,
                                         pair_teardown),
        cmocka_unit_test_setup_teardown (an_entry_over_the_limit_is_refused_by_id_and_skipped,
                                         pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown (a_bad_entry_is_an_error_and_the_stream_goes_on,
                                         pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown (bytes_that_cannot_start_an_entry_end_the_stream,
                                         pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown (
            the_writer_refuses_what_it_cannot_pack_or_its_peer_does_not_read, pair_setup,
            pair_teardown),
        cmocka_unit_test (a_dead_brokers_socket_file_is_replaced_a_live_ones_is_not),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
