/*  test_batch — BATCH (common/pf_batch): a malformed entry is a typed error
    that never stops the walk short of what it can read; the outbox keeps
    each peer's order, sends large messages alone, honours PF_MSG_KEEP, and
    cuts batches at their limits. The packed form of each message is
    specified in test_proto. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pf_batch.h"
#include "pf_error.h"

#define ERRLEN 256

//  A small message of the given command: request_id id, a 1-byte body.
static void small (pf_msg_t *self, int command, uint64_t id)
{
    pf_msg_init (self);
    self->proto = PF_PROTO_W;
    self->command = command;
    self->request_id = id;
    self->body = zframe_new ("\xc3", 1);
}

//  Packs msg into a malloc'd buffer; *size_p its size.
static byte *pack (pf_msg_t *msg, size_t *size_p)
{
    *size_p = pf_msg_packed_size (msg);
    assert_true (*size_p > 0);
    byte *data = malloc (*size_p);
    pf_msg_pack (msg, data);
    return data;
}

//  Builds a BATCH's messages frame from entries (u32 length + bytes).
static zframe_t *messages_of (const byte *const *entries, const size_t *sizes, size_t count)
{
    zframe_t *frame = zframe_new (NULL, 0);
    for (size_t index = 0; index < count; index++) {
        size_t size = zframe_size (frame);
        byte *data = malloc (size + 4 + sizes[index]);
        memcpy (data, zframe_data (frame), size);
        data[size] = (byte)(sizes[index] >> 24);
        data[size + 1] = (byte)(sizes[index] >> 16);
        data[size + 2] = (byte)(sizes[index] >> 8);
        data[size + 3] = (byte)sizes[index];
        memcpy (data + size + 4, entries[index], sizes[index]);
        zframe_reset (frame, data, size + 4 + sizes[index]);
        free (data);
    }
    return frame;
}

static void the_walk_goes_past_a_bad_message_and_stops_at_a_bad_length (void **state)
{
    (void)state;
    pf_msg_t a, b;
    small (&a, PF_W_REPLY, 11);
    small (&b, PF_W_CANCEL, 12);
    size_t size_a, size_b;
    byte *data_a = pack (&a, &size_a), *data_b = pack (&b, &size_b);
    const byte unknown[] = {0x0C};
    const byte *entries[] = {data_a, unknown, data_b};
    size_t sizes[] = {size_a, 1, size_b};
    zframe_t *messages = messages_of (entries, sizes, 3);

    pf_msg_t out;
    pf_msg_init (&out);
    char err[ERRLEN];
    size_t offset = 0;
    assert_int_equal (pf_batch_next (PF_PROTO_W, messages, &offset, &out, 0, err, sizeof err), PF_OK);
    assert_int_equal (out.command, PF_W_REPLY);
    assert_int_equal (pf_batch_next (PF_PROTO_W, messages, &offset, &out, 0, err, sizeof err), PF_BAD_REQUEST);
    assert_int_equal (pf_batch_next (PF_PROTO_W, messages, &offset, &out, 0, err, sizeof err), PF_OK);
    assert_int_equal (out.command, PF_W_CANCEL);
    assert_true (out.request_id == b.request_id);
    assert_int_equal (pf_batch_next (PF_PROTO_W, messages, &offset, &out, 0, err, sizeof err), -1);

    //  A length past the end: one error, then the end; three stray bytes too.
    size_t whole = zframe_size (messages);
    byte *cut = malloc (whole);
    memcpy (cut, zframe_data (messages), whole);
    zframe_t *short_frame = zframe_new (cut, whole - 1);
    offset = 0;
    assert_int_equal (pf_batch_next (PF_PROTO_W, short_frame, &offset, &out, 0, err, sizeof err), PF_OK);
    assert_int_equal (pf_batch_next (PF_PROTO_W, short_frame, &offset, &out, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    assert_int_equal (pf_batch_next (PF_PROTO_W, short_frame, &offset, &out, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    assert_non_null (strstr (err, "runs past the end"));
    assert_int_equal (pf_batch_next (PF_PROTO_W, short_frame, &offset, &out, 0, err, sizeof err), -1);
    zframe_reset (short_frame, cut, 3);
    offset = 0;
    assert_int_equal (pf_batch_next (PF_PROTO_W, short_frame, &offset, &out, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    assert_string_equal (err, "batch: 3 bytes left, too few for a message's length");
    assert_int_equal (pf_batch_next (PF_PROTO_W, short_frame, &offset, &out, 0, err, sizeof err), -1);
    offset = 0;
    assert_int_equal (pf_batch_next (PF_PROTO_W, NULL, &offset, &out, 0, err, sizeof err), -1);

    free (cut);
    zframe_destroy (&short_frame);
    zframe_destroy (&messages);
    free (data_a);
    free (data_b);
    pf_msg_reset (&a);
    pf_msg_reset (&b);
    pf_msg_reset (&out);
}

//  A receiver with a small max_body takes a BATCH larger than it (up to
//  PF_BATCH_MAX_FRAME) and holds each message in it to max_body.
static void a_small_max_body_limits_the_messages_not_the_batch (void **state)
{
    (void)state;
    pf_msg_t small_reply, big_reply;
    small (&small_reply, PF_W_REPLY, 1);
    small (&big_reply, PF_W_REPLY, 2);
    zframe_destroy (&big_reply.body);
    byte body[200] = {0};
    big_reply.body = zframe_new (body, sizeof body);
    pf_batch_t batch = {0};
    for (int index = 0; index < 20; index++)
        assert_int_equal (pf_batch_add (&batch, &small_reply), 0);
    assert_int_equal (pf_batch_add (&batch, &big_reply), 0);
    assert_true (batch.size > 500);
    pf_msg_t top;
    pf_msg_init (&top);
    top.proto = PF_PROTO_W;
    top.command = PF_W_BATCH;
    top.body = zframe_new (batch.data, batch.size);
    zmsg_t *msg = pf_msg_encode (&top);
    char err[ERRLEN];
    assert_int_equal (pf_msg_decode (&top, &msg, 100, err, sizeof err), PF_OK);
    pf_msg_t one;
    pf_msg_init (&one);
    size_t offset = 0;
    for (int index = 0; index < 20; index++)
        assert_int_equal (pf_batch_next (PF_PROTO_W, top.body, &offset, &one, 100, err, sizeof err),
                          PF_OK);
    assert_int_equal (pf_batch_next (PF_PROTO_W, top.body, &offset, &one, 100, err, sizeof err),
                      PF_TOO_LARGE);
    assert_true (one.has_request_id && one.request_id == 2);
    assert_int_equal (pf_batch_next (PF_PROTO_W, top.body, &offset, &one, 100, err, sizeof err), -1);
    pf_msg_reset (&one);
    pf_msg_reset (&top);
    pf_batch_free (&batch);
    pf_msg_reset (&small_reply);
    pf_msg_reset (&big_reply);
}

//  --------------------------------------------------------------------------
//  The outbox, over inproc sockets

typedef struct {
    zsock_t *router, *dealer_a, *dealer_b;
} sockets_t;

static int sockets_setup (void **state)
{
    static int instance = 0;
    instance++;
    sockets_t *self = calloc (1, sizeof *self);
    self->router = zsock_new (ZMQ_ROUTER);
    self->dealer_a = zsock_new (ZMQ_DEALER);
    self->dealer_b = zsock_new (ZMQ_DEALER);
    zsock_set_identity (self->dealer_a, "A");
    zsock_set_identity (self->dealer_b, "B");
    zsock_set_router_mandatory (self->router, 1);
    if (zsock_bind (self->router, "inproc://test-batch-%d", instance) ||
        zsock_connect (self->dealer_a, "inproc://test-batch-%d", instance) ||
        zsock_connect (self->dealer_b, "inproc://test-batch-%d", instance))
        return -1;
    *state = self;
    return 0;
}

static int sockets_teardown (void **state)
{
    sockets_t *self = *state;
    zsock_destroy (&self->dealer_a);
    zsock_destroy (&self->dealer_b);
    zsock_destroy (&self->router);
    free (self);
    return 0;
}

//  Receives one message on socket within a second; NULL if none came.
static zmsg_t *receive (zsock_t *socket)
{
    zpoller_t *poller = zpoller_new (socket, NULL);
    zmsg_t *msg = zpoller_wait (poller, 1000) ? zmsg_recv (socket) : NULL;
    zpoller_destroy (&poller);
    return msg;
}

//  Decodes msg (a dealer's view) and returns the commands of its messages,
//  a BATCH walked, each request id in ids.
static size_t received_commands (zmsg_t *msg, int *commands, uint64_t *ids, size_t max)
{
    pf_msg_t top, one;
    pf_msg_init (&top);
    pf_msg_init (&one);
    char err[ERRLEN];
    assert_int_equal (pf_msg_decode (&top, &msg, 0, err, sizeof err), PF_OK);
    size_t count = 0;
    if (top.command != PF_W_BATCH) {
        commands[0] = top.command;
        ids[0] = top.request_id;
        count = 1;
    } else {
        size_t offset = 0;
        int rc;
        while ((rc = pf_batch_next (PF_PROTO_W, top.body, &offset, &one, 0, err, sizeof err)) != -1) {
            assert_int_equal (rc, PF_OK);
            assert_true (count < max);
            commands[count] = one.command;
            ids[count++] = one.request_id;
        }
    }
    pf_msg_reset (&top);
    pf_msg_reset (&one);
    return count;
}

static void request_to (pf_msg_t *msg, uint64_t id, size_t body_size)
{
    pf_msg_init (msg);
    msg->proto = PF_PROTO_W;
    msg->command = PF_W_REQUEST;
    msg->request_id = id;
    strcpy (msg->command_name, "echo");
    byte *body = calloc (1, body_size ? body_size : 1);
    msg->body = zframe_new (body, body_size);
    free (body);
}

static void each_peer_gets_its_messages_in_order_large_ones_alone (void **state)
{
    sockets_t *sockets = *state;
    pf_outbox_t *outbox = pf_outbox_new ();
    zframe_t *to_a = zframe_new ("A", 1), *to_b = zframe_new ("B", 1);
    //  A: 1, 2, a large 3, 4. B: 10. Then a flush.
    size_t sizes[] = {10, 20, PF_BATCH_MAX_FIELD + 1, 30};
    for (size_t index = 0; index < 4; index++) {
        pf_msg_t msg;
        request_to (&msg, index + 1, sizes[index]);
        assert_int_equal (pf_outbox_send (outbox, sockets->router, to_a, &msg, 0), 0);
        assert_null (msg.body); //  taken, as a send takes it
        pf_msg_reset (&msg);
        if (index == 0) {
            request_to (&msg, 10, 5);
            assert_int_equal (pf_outbox_send (outbox, sockets->router, to_b, &msg, 0), 0);
            pf_msg_reset (&msg);
        }
    }
    assert_int_equal (pf_outbox_flush (outbox, sockets->router), 0);

    int commands[8];
    uint64_t ids[8];
    zmsg_t *msg = receive (sockets->dealer_a);
    assert_non_null (msg);
    assert_int_equal (received_commands (msg, commands, ids, 8), 2); //  the batch of 1, 2
    assert_true (ids[0] == 1 && ids[1] == 2);
    msg = receive (sockets->dealer_a);
    assert_int_equal (received_commands (msg, commands, ids, 8), 1); //  3, alone
    assert_int_equal (commands[0], PF_W_REQUEST);
    assert_true (ids[0] == 3);
    msg = receive (sockets->dealer_a);
    assert_int_equal (received_commands (msg, commands, ids, 8), 1); //  4, batched
    assert_true (ids[0] == 4);
    msg = receive (sockets->dealer_b);
    assert_int_equal (received_commands (msg, commands, ids, 8), 1);
    assert_true (ids[0] == 10);
    //  Nothing else, and a flush with nothing queued sends nothing.
    assert_int_equal (pf_outbox_flush (outbox, sockets->router), 0);
    zpoller_t *poller = zpoller_new (sockets->dealer_a, sockets->dealer_b, NULL);
    assert_null (zpoller_wait (poller, 50));
    zpoller_destroy (&poller);

    zframe_destroy (&to_a);
    zframe_destroy (&to_b);
    pf_outbox_destroy (&outbox);
    assert_null (outbox);
}

static void keep_leaves_the_body_and_a_gone_peer_counts_as_failed (void **state)
{
    sockets_t *sockets = *state;
    pf_outbox_t *outbox = pf_outbox_new ();
    zframe_t *to_a = zframe_new ("A", 1), *to_x = zframe_new ("X", 1);
    pf_msg_t msg;
    request_to (&msg, 7, 40);
    zframe_t *body = msg.body;
    assert_int_equal (pf_outbox_send (outbox, sockets->router, to_a, &msg, PF_MSG_KEEP), 0);
    assert_ptr_equal (msg.body, body);
    assert_int_equal (pf_outbox_send (outbox, sockets->router, to_x, &msg, PF_MSG_KEEP), 0);
    assert_int_equal (pf_outbox_send (outbox, sockets->router, to_x, &msg, PF_MSG_KEEP), 0);
    //  X is nobody (ROUTER_MANDATORY): its two messages fail, A's goes.
    assert_int_equal (pf_outbox_flush (outbox, sockets->router), 2);
    int commands[4];
    uint64_t ids[4];
    assert_int_equal (received_commands (receive (sockets->dealer_a), commands, ids, 4), 1);
    //  A NULL socket drops what is queued, counted.
    assert_int_equal (pf_outbox_send (outbox, sockets->router, to_a, &msg, PF_MSG_KEEP), 0);
    assert_int_equal (pf_outbox_flush (outbox, NULL), 1);
    pf_msg_reset (&msg);
    zframe_destroy (&to_a);
    zframe_destroy (&to_x);
    pf_outbox_destroy (&outbox);
}

static void a_full_batch_goes_out_before_the_flush (void **state)
{
    sockets_t *sockets = *state;
    pf_outbox_t *outbox = pf_outbox_new ();
    size_t total = PF_BATCH_MAX_MESSAGES + 10;
    for (size_t index = 0; index < total; index++) {
        pf_msg_t msg;
        request_to (&msg, index + 1, 100);
        assert_int_equal (pf_outbox_send (outbox, sockets->dealer_a, NULL, &msg, 0), 0);
        pf_msg_reset (&msg);
    }
    //  The first batch is out already, full.
    zmsg_t *first = receive (sockets->router);
    assert_non_null (first);
    zframe_t *peer = zmsg_pop (first);
    zframe_destroy (&peer);
    int *commands = calloc (total, sizeof *commands);
    uint64_t *ids = calloc (total, sizeof *ids);
    assert_int_equal (received_commands (first, commands, ids, total), PF_BATCH_MAX_MESSAGES);
    assert_int_equal (pf_outbox_flush (outbox, sockets->dealer_a), 0);
    zmsg_t *rest = receive (sockets->router);
    peer = zmsg_pop (rest);
    zframe_destroy (&peer);
    assert_int_equal (received_commands (rest, commands, ids, total), 10);
    assert_true (ids[9] == total);
    free (commands);
    free (ids);
    pf_outbox_destroy (&outbox);
}

static void misuse_is_refused (void **state)
{
    (void)state;
    pf_msg_t msg;
    request_to (&msg, 1, 1);
    assert_int_equal (pf_outbox_send (NULL, NULL, NULL, &msg, 0), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (pf_outbox_flush (NULL, NULL), 0);
    pf_outbox_destroy (NULL);
    pf_msg_reset (&msg);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (the_walk_goes_past_a_bad_message_and_stops_at_a_bad_length),
        cmocka_unit_test (a_small_max_body_limits_the_messages_not_the_batch),
        cmocka_unit_test_setup_teardown (each_peer_gets_its_messages_in_order_large_ones_alone,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (keep_leaves_the_body_and_a_gone_peer_counts_as_failed,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (a_full_batch_goes_out_before_the_flush, sockets_setup,
                                         sockets_teardown),
        cmocka_unit_test (misuse_is_refused),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
