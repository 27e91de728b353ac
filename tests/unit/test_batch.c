/*  test_batch — PFW2 BATCH (common/pf_batch, and the packed messages of
    common/pf_proto): every PFW2 command packs and unpacks to what
    pf_msg_encode/decode give; every malformed entry is a typed error that
    never stops the walk short of what it can read; the outbox keeps each
    peer's order, sends large messages alone, honours PF_MSG_KEEP, and cuts
    batches at their limits. */
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

static const int worker_commands[] = {
    PF_W_READY,       PF_W_HEARTBEAT,    PF_W_REQUEST, PF_W_REPLY,      PF_W_ERROR,
    PF_W_SESSION_END, PF_W_SESSION_LOST, PF_W_CANCEL,  PF_W_DISCONNECT, PF_W_RECYCLE,
};
#define COUNT(array) (sizeof (array) / sizeof ((array)[0]))

//  A message of command with every field set (full) or only the required ones.
static void sample (pf_msg_t *self, int command, bool full)
{
    pf_msg_init (self);
    self->proto = PF_PROTO_W;
    self->command = command;
    strcpy (self->service, "svc");
    strcpy (self->command_name, "cmd");
    strcpy (self->agent_id, "agent");
    if (command == PF_W_SESSION_END || command == PF_W_SESSION_LOST) strcpy (self->session, "s");
    if (!full) return;
    self->request_id = 0x0102030405060708ull + (uint64_t)command;
    self->flags = 0x11223344u;
    self->timeout_ms = 0x55667788u;
    self->bridge = PF_BRIDGE_ANY;
    self->generation = 0x99AABBCCu;
    self->pid = 4242;
    self->capacity = 64;
    self->code = PF_PYTHON_ERROR;
    memset (self->session, 'e', PF_MAX_NAME);
    memset (self->host, 'h', PF_MAX_NAME);
    self->message = strdup ("something went wrong");
    self->body = zframe_new ("\x81\xa1x\x01", 4);
    self->detail = zframe_new ("\x81\xa4type\xa9TypeError", 16);
    self->sessions = zframe_new ("\x90", 1);
    self->bridges = zframe_new ("\x91\x93\x00\x01\xa5ready", 10);
}

static void assert_frame_same (zframe_t *a, zframe_t *b)
{
    if (!a || !b) {
        //  An absent opaque field and an empty one are the same on the wire.
        assert_int_equal (a ? zframe_size (a) : 0, b ? zframe_size (b) : 0);
        return;
    }
    assert_int_equal (zframe_size (a), zframe_size (b));
    if (zframe_size (a)) assert_memory_equal (zframe_data (a), zframe_data (b), zframe_size (a));
}

static void assert_same_msg (pf_msg_t *a, pf_msg_t *b)
{
    assert_int_equal (a->proto, b->proto);
    assert_int_equal (a->command, b->command);
    assert_true (a->request_id == b->request_id);
    assert_int_equal (a->flags, b->flags);
    assert_int_equal (a->timeout_ms, b->timeout_ms);
    assert_int_equal (a->bridge, b->bridge);
    assert_int_equal (a->generation, b->generation);
    assert_int_equal (a->pid, b->pid);
    assert_int_equal (a->capacity, b->capacity);
    assert_int_equal (a->code, b->code);
    assert_string_equal (a->service, b->service);
    assert_string_equal (a->session, b->session);
    assert_string_equal (a->command_name, b->command_name);
    assert_string_equal (a->agent_id, b->agent_id);
    assert_string_equal (a->host, b->host);
    assert_string_equal (a->message ? a->message : "", b->message ? b->message : "");
    assert_frame_same (a->body, b->body);
    assert_frame_same (a->detail, b->detail);
    assert_frame_same (a->sessions, b->sessions);
    assert_frame_same (a->bridges, b->bridges);
}

//  What pf_msg_encode + pf_msg_decode make of a sample: the reference.
static void reference (pf_msg_t *out, int command, bool full)
{
    pf_msg_t in;
    sample (&in, command, full);
    zmsg_t *msg = pf_msg_encode (&in);
    assert_non_null (msg);
    pf_msg_init (out);
    assert_int_equal (pf_msg_decode (out, &msg, 0, NULL, 0), PF_OK);
    pf_msg_reset (&in);
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

//  --------------------------------------------------------------------------

static void every_worker_command_packs_and_unpacks_as_encode_and_decode (void **state)
{
    (void)state;
    for (size_t index = 0; index < COUNT (worker_commands); index++)
        for (int full = 0; full < 2; full++) {
            pf_msg_t in, out, expected;
            sample (&in, worker_commands[index], full);
            reference (&expected, worker_commands[index], full);
            size_t size;
            byte *data = pack (&in, &size);
            assert_int_equal (data[0], worker_commands[index]);
            char err[ERRLEN];
            pf_msg_init (&out);
            int rc = pf_msg_unpack (&out, PF_PROTO_W, data, size, 0, err, sizeof err);
            if (rc != PF_OK) fail_msg ("%s: %s", pf_msg_command_name (PF_PROTO_W, in.command), err);
            assert_same_msg (&expected, &out);
            free (data);
            pf_msg_reset (&in);
            pf_msg_reset (&out);
            pf_msg_reset (&expected);
        }
}

static void a_reply_packs_to_the_bytes_of_the_table (void **state)
{
    (void)state;
    pf_msg_t in;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_REPLY;
    in.request_id = 9;
    in.bridge = 1;
    in.generation = 2;
    in.flags = 3;
    in.body = zframe_new ("\xc3", 1);
    size_t size;
    byte *data = pack (&in, &size);
    const byte expected[] = {0x04, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3,
                             0,    0, 0, 1, 0xc3};
    assert_int_equal (size, sizeof expected);
    assert_memory_equal (data, expected, size);
    free (data);
    pf_msg_reset (&in);
}

static void every_message_but_a_batch_packs (void **state)
{
    (void)state;
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_BATCH;
    assert_int_equal (pf_msg_packed_size (&msg), 0);
    msg.command = PF_C_CANCEL;
    assert_int_equal (pf_msg_packed_size (&msg), 1 + 8);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_BATCH;
    assert_int_equal (pf_msg_packed_size (&msg), 0);
    msg.command = PF_W_REQUEST;
    assert_int_equal (pf_msg_packed_size (&msg), 0); //  a REQUEST needs its command name
    strcpy (msg.command_name, "x");
    assert_true (pf_msg_packed_size (&msg) > 0);
    msg.proto = 3;
    assert_int_equal (pf_msg_packed_size (&msg), 0);
}

//  A client's answers pack and unpack as PFC1 (the broker's BATCH to a
//  client that set PF_FLAG_BATCH_OK).
static void client_answers_pack_and_unpack (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_ERROR;
    in.request_id = 77;
    in.code = PF_TIMEOUT;
    in.message = strdup ("late");
    in.detail = zframe_new ("\x80", 1);
    size_t size;
    byte *data = pack (&in, &size);
    char err[ERRLEN];
    pf_msg_init (&out);
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_C, data, size, 0, err, sizeof err), PF_OK);
    assert_int_equal (out.proto, PF_PROTO_C);
    assert_int_equal (out.command, PF_C_ERROR);
    assert_true (out.request_id == 77);
    assert_int_equal (out.code, PF_TIMEOUT);
    assert_string_equal (out.message, "late");
    assert_frame_same (out.detail, in.detail);
    //  The same bytes read as PFW2 are a different command: refused.
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, data, size, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    free (data);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void unpack_rejects_every_malformed_message_with_a_reason (void **state)
{
    (void)state;
    pf_msg_t in, out;
    sample (&in, PF_W_ERROR, true);
    size_t size;
    byte *data = pack (&in, &size);
    char err[ERRLEN];
    //  Cut anywhere: an error, never a crash; once the id is whole, it is kept.
    for (size_t cut = 0; cut < size; cut++) {
        pf_msg_init (&out);
        int rc = pf_msg_unpack (&out, PF_PROTO_W, data, cut, 0, err, sizeof err);
        assert_int_equal (rc, PF_BAD_REQUEST);
        assert_true (strlen (err) > 0);
        assert_int_equal (out.has_request_id, cut >= 9);
        assert_null (out.detail);
        assert_null (out.message);
        pf_msg_reset (&out);
    }
    //  A byte too many.
    byte *longer = malloc (size + 1);
    memcpy (longer, data, size);
    longer[size] = 0;
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, longer, size + 1, 0, err, sizeof err), PF_BAD_REQUEST);
    assert_string_equal (err, "ERROR: 1 bytes after the last field");
    free (longer);
    //  The detail over max_body.
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, data, size, 8, err, sizeof err), PF_TOO_LARGE);
    assert_string_equal (err, "detail: 16 bytes exceeds limit of 8");
    assert_true (out.has_request_id);
    //  A command that is not one, and a batch inside a batch.
    byte bad[] = {0x0C, 0, 0};
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, bad, sizeof bad, 0, err, sizeof err), PF_BAD_REQUEST);
    assert_string_equal (err, "batched message: unknown command 0x0C");
    bad[0] = PF_W_BATCH;
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, bad, sizeof bad, 0, err, sizeof err), PF_BAD_REQUEST);
    //  A name with a NUL byte.
    data[1 + 8 + 4 + 4 + 2 + 2] = 0; //  ERROR's message, first byte
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, data, size, 0, err, sizeof err), PF_BAD_REQUEST);
    assert_string_equal (err, "message: contains a NUL byte");
    pf_msg_reset (&out);
    free (data);
    pf_msg_reset (&in);
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
    sample (&a, PF_W_REPLY, true);
    sample (&b, PF_W_CANCEL, true);
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
        cmocka_unit_test (every_worker_command_packs_and_unpacks_as_encode_and_decode),
        cmocka_unit_test (a_reply_packs_to_the_bytes_of_the_table),
        cmocka_unit_test (every_message_but_a_batch_packs),
        cmocka_unit_test (client_answers_pack_and_unpack),
        cmocka_unit_test (unpack_rejects_every_malformed_message_with_a_reason),
        cmocka_unit_test (the_walk_goes_past_a_bad_message_and_stops_at_a_bad_length),
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
