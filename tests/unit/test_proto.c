/*  test_proto — specification of the PFC1/PFW2 codec (common/pf_proto).

    Every command of both protocols round-trips with all its fields; the wire
    bytes are pinned against hand-built frames (a round trip alone would pass
    if encoder and decoder were wrong the same way); and every kind of
    malformed message gets the typed error and the specific reason that
    docs/PROTOCOL.md promises, without leaking or crashing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pf_error.h"
#include "pf_proto.h"

#define ERRLEN 256

//  --------------------------------------------------------------------------
//  Helpers to build raw frames

static void add_u16 (zmsg_t *msg, uint16_t value)
{
    byte data[2] = {(byte)(value >> 8), (byte)value};
    zmsg_addmem (msg, data, 2);
}

static void add_u32 (zmsg_t *msg, uint32_t value)
{
    byte data[4] = {(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value};
    zmsg_addmem (msg, data, 4);
}

static void add_u64 (zmsg_t *msg, uint64_t value)
{
    byte data[8];
    for (int index = 7; index >= 0; index--) {
        data[index] = (byte)value;
        value >>= 8;
    }
    zmsg_addmem (msg, data, 8);
}

static void add_str (zmsg_t *msg, const char *text)
{
    zmsg_addmem (msg, text, strlen (text));
}

//  A PFW2 packed head, built byte by byte from docs/PROTOCOL.md 3.2.
typedef struct {
    byte data[2048];
    size_t size;
} head_t;

static void head_int (head_t *head, uint64_t value, size_t size)
{
    for (size_t index = 0; index < size; index++)
        head->data[head->size + index] = (byte)(value >> (8 * (size - 1 - index)));
    head->size += size;
}

//  A name: one length byte, then the bytes.
static void head_name (head_t *head, const char *text)
{
    head_int (head, strlen (text), 1);
    memcpy (head->data + head->size, text, strlen (text));
    head->size += strlen (text);
}

static void add_head (zmsg_t *msg, const head_t *head)
{
    zmsg_addmem (msg, head->data, head->size);
}

static zmsg_t *new_head (const char *proto, byte command)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    add_str (msg, proto);
    zmsg_addmem (msg, &command, 1);
    return msg;
}

//  A well-formed PFC1 REQUEST, built by hand from the frame table.
static zmsg_t *raw_client_request (void)
{
    zmsg_t *msg = new_head ("PFC1", PF_C_REQUEST);
    add_u64 (msg, 0x0102030405060708ull);
    add_str (msg, "echo");
    add_str (msg, "s1");
    add_str (msg, "ping");
    add_u32 (msg, 5000);
    add_u32 (msg, PF_FLAG_IDEMPOTENT);
    zmsg_addmem (msg, "\x81\xa1x\x01", 4);
    return msg;
}

//  Returns a copy of msg with frame `index` replaced by data/size (data NULL
//  and size SIZE_MAX: frame removed). Destroys msg.
static zmsg_t *with_frame (zmsg_t *msg, size_t index, const void *data, size_t size)
{
    zmsg_t *result = zmsg_new ();
    size_t position = 0;
    zframe_t *frame;
    while ((frame = zmsg_pop (msg))) {
        if (position++ == index) {
            zframe_destroy (&frame);
            if (!(data == NULL && size == SIZE_MAX)) zmsg_addmem (result, data, size);
        } else
            zmsg_append (result, &frame);
    }
    zmsg_destroy (&msg);
    return result;
}

static zmsg_t *without_frame (zmsg_t *msg, size_t index)
{
    return with_frame (msg, index, NULL, SIZE_MAX);
}

static zframe_t *frame_at (zmsg_t *msg, size_t index)
{
    zframe_t *frame = zmsg_first (msg);
    while (frame && index--)
        frame = zmsg_next (msg);
    return frame;
}

static void assert_frame_equal (zmsg_t *msg, size_t index, const void *data, size_t size)
{
    zframe_t *frame = frame_at (msg, index);
    assert_non_null (frame);
    assert_int_equal (zframe_size (frame), size);
    if (size) assert_memory_equal (zframe_data (frame), data, size);
}

//  msg holds the frames of expected, byte for byte.
static void assert_same_frames (zmsg_t *msg, zmsg_t *expected)
{
    assert_int_equal (zmsg_size (msg), zmsg_size (expected));
    for (size_t index = 0; index < zmsg_size (expected); index++) {
        zframe_t *frame = frame_at (expected, index);
        assert_frame_equal (msg, index, zframe_data (frame), zframe_size (frame));
    }
}

static void assert_frame_bytes (zframe_t *frame, const void *data, size_t size)
{
    assert_non_null (frame);
    assert_int_equal (zframe_size (frame), size);
    if (size) assert_memory_equal (zframe_data (frame), data, size);
}

//  Decodes msg expecting failure with `code` and a reason containing `reason`.
static void assert_decode_fails (zmsg_t *msg, size_t max_body, int code, const char *reason)
{
    pf_msg_t decoded;
    pf_msg_init (&decoded);
    char err[ERRLEN];
    int rc = pf_msg_decode (&decoded, &msg, max_body, err, sizeof (err));
    assert_null (msg);
    if (rc != code || !strstr (err, reason))
        fail_msg ("expected %s \"%s\", got %s \"%s\"", pf_error_name (code), reason,
                  pf_error_name (rc), err);
    assert_null (decoded.body);
    assert_null (decoded.detail);
    assert_null (decoded.sessions);
    assert_null (decoded.bridges);
    assert_null (decoded.message);
    pf_msg_reset (&decoded);
}

//  Encodes self, checks the frame count, decodes into out (which must pass).
static void round_trip (pf_msg_t *self, pf_msg_t *out, size_t expected_frames)
{
    zmsg_t *msg = pf_msg_encode (self);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), expected_frames);
    assert_null (self->body);
    assert_null (self->detail);
    assert_null (self->sessions);
    assert_null (self->bridges);
    char err[ERRLEN];
    pf_msg_init (out);
    int rc = pf_msg_decode (out, &msg, 0, err, sizeof (err));
    if (rc != PF_OK) fail_msg ("decode failed: %s", err);
    assert_null (msg);
    assert_int_equal (out->proto, self->proto);
    assert_int_equal (out->command, self->command);
}

static char *repeat (char c, size_t size)
{
    char *text = malloc (size + 1);
    memset (text, c, size);
    text[size] = '\0';
    return text;
}

#define COUNT(array) (sizeof (array) / sizeof ((array)[0]))

static const byte binary[] = {0x00, 0xFF, 0x00, 0x00, 0x7F, 0x80, 0x00, 0x01};

//  --------------------------------------------------------------------------
//  PFC1 round trips

static void client_request_round_trips_every_field_at_max_length (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_REQUEST;
    in.request_id = UINT64_MAX - 1;
    memset (in.service, 's', PF_MAX_NAME);
    memset (in.session, 'e', PF_MAX_NAME);
    memset (in.command_name, 'c', PF_MAX_NAME);
    in.timeout_ms = 0xFFFFFFFEu;
    in.flags = PF_FLAG_IDEMPOTENT | PF_FLAG_SOFT | PF_FLAG_BROADCAST;
    in.body = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 10);
    assert_true (out.has_request_id);
    assert_true (out.request_id == UINT64_MAX - 1);
    assert_string_equal (out.service, in.service);
    assert_int_equal (strlen (out.service), PF_MAX_NAME);
    assert_string_equal (out.session, in.session);
    assert_string_equal (out.command_name, in.command_name);
    assert_int_equal (out.timeout_ms, 0xFFFFFFFEu);
    assert_int_equal (out.flags, PF_FLAG_IDEMPOTENT | PF_FLAG_SOFT | PF_FLAG_BROADCAST);
    assert_frame_bytes (out.body, binary, sizeof (binary));
    //  Fields REQUEST does not carry stay zero.
    assert_int_equal (out.bridge, 0);
    assert_int_equal (out.code, 0);
    assert_string_equal (out.agent_id, "");
    assert_null (out.message);
    assert_null (out.detail);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void client_request_with_empty_session_and_null_body_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_REQUEST;
    in.request_id = 7;
    strcpy (in.service, "echo");
    strcpy (in.command_name, "ping");

    round_trip (&in, &out, 10);
    assert_int_equal (out.request_id, 7);
    assert_string_equal (out.session, "");
    //  A NULL body travels as an empty frame and decodes as an empty frame.
    assert_non_null (out.body);
    assert_int_equal (zframe_size (out.body), 0);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void client_reply_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_REPLY;
    in.request_id = 42;
    in.flags = PF_REPLY_REBOUND;
    in.body = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 6);
    assert_int_equal (out.request_id, 42);
    assert_int_equal (out.flags, PF_REPLY_REBOUND);
    assert_frame_bytes (out.body, binary, sizeof (binary));
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void client_error_round_trips_code_message_and_detail (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_ERROR;
    in.request_id = 9;
    in.code = PF_PYTHON_ERROR;
    in.message = repeat ('m', PF_MAX_MESSAGE);
    in.detail = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 7);
    assert_int_equal (out.request_id, 9);
    assert_int_equal (out.code, PF_PYTHON_ERROR);
    assert_non_null (out.message);
    assert_int_equal (strlen (out.message), PF_MAX_MESSAGE);
    assert_string_equal (out.message, in.message);
    assert_frame_bytes (out.detail, binary, sizeof (binary));
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void client_error_with_empty_message_and_detail_decodes_null_message (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_ERROR;
    in.request_id = 10;
    in.code = PF_TIMEOUT;

    round_trip (&in, &out, 7);
    assert_int_equal (out.code, PF_TIMEOUT);
    assert_null (out.message);
    assert_non_null (out.detail);
    assert_int_equal (zframe_size (out.detail), 0);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void client_cancel_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_CANCEL;
    in.request_id = 0;

    round_trip (&in, &out, 4);
    assert_true (out.has_request_id);
    assert_int_equal (out.request_id, 0);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

//  --------------------------------------------------------------------------
//  PFW2 round trips

static void worker_ready_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_READY;
    memset (in.agent_id, 'a', PF_MAX_NAME);
    memset (in.host, 'h', PF_MAX_NAME);
    in.pid = 123456;
    strcpy (in.service, "dspy");
    in.capacity = 16;
    in.sessions = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 5);
    assert_string_equal (out.agent_id, in.agent_id);
    assert_string_equal (out.host, in.host);
    assert_int_equal (out.pid, 123456);
    assert_string_equal (out.service, "dspy");
    assert_int_equal (out.capacity, 16);
    assert_frame_bytes (out.sessions, binary, sizeof (binary));
    assert_false (out.has_request_id);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_ready_with_empty_host_and_sessions_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_READY;
    strcpy (in.agent_id, "agent-1");
    strcpy (in.service, "echo");
    in.capacity = 1;

    round_trip (&in, &out, 5);
    assert_string_equal (out.host, "");
    assert_non_null (out.sessions);
    assert_int_equal (zframe_size (out.sessions), 0);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_heartbeat_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_HEARTBEAT;
    in.bridges = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 4);
    assert_frame_bytes (out.bridges, binary, sizeof (binary));
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_request_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_REQUEST;
    in.request_id = 0x8000000000000001ull;
    memset (in.session, 'x', PF_MAX_NAME);
    memset (in.command_name, 'y', PF_MAX_NAME);
    in.bridge = PF_BRIDGE_ANY;
    in.generation = 3;
    in.timeout_ms = 30000;
    in.flags = PF_FLAG_BROADCAST;
    in.body = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 5);
    assert_true (out.request_id == 0x8000000000000001ull);
    assert_string_equal (out.session, in.session);
    assert_string_equal (out.command_name, in.command_name);
    assert_int_equal (out.bridge, PF_BRIDGE_ANY);
    assert_int_equal (out.generation, 3);
    assert_int_equal (out.timeout_ms, 30000);
    assert_int_equal (out.flags, PF_FLAG_BROADCAST);
    assert_frame_bytes (out.body, binary, sizeof (binary));
    assert_string_equal (out.service, "");
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_request_with_empty_session_and_body_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_REQUEST;
    in.request_id = 5;
    strcpy (in.command_name, "ping");
    in.body = zframe_new (NULL, 0);

    round_trip (&in, &out, 5);
    assert_string_equal (out.session, "");
    assert_int_equal (zframe_size (out.body), 0);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_reply_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_REPLY;
    in.request_id = 77;
    in.bridge = 2;
    in.generation = 0xFFFFFFFFu;
    in.flags = PF_REPLY_REBOUND;
    in.body = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 5);
    assert_int_equal (out.request_id, 77);
    assert_int_equal (out.bridge, 2);
    assert_int_equal (out.generation, 0xFFFFFFFFu);
    assert_int_equal (out.flags, PF_REPLY_REBOUND);
    assert_frame_bytes (out.body, binary, sizeof (binary));
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_error_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_ERROR;
    in.request_id = 78;
    in.bridge = 1;
    in.generation = 4;
    in.code = PF_BRIDGE_CRASHED;
    in.message = strdup ("bridge 1 exited with signal 9");
    in.detail = zframe_new (binary, sizeof (binary));

    round_trip (&in, &out, 5);
    assert_int_equal (out.request_id, 78);
    assert_int_equal (out.bridge, 1);
    assert_int_equal (out.generation, 4);
    assert_int_equal (out.code, PF_BRIDGE_CRASHED);
    assert_string_equal (out.message, "bridge 1 exited with signal 9");
    assert_frame_bytes (out.detail, binary, sizeof (binary));
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_session_end_and_session_lost_round_trip (void **state)
{
    (void)state;
    int commands[] = {PF_W_SESSION_END, PF_W_SESSION_LOST};
    for (size_t index = 0; index < 2; index++) {
        pf_msg_t in, out;
        pf_msg_init (&in);
        in.proto = PF_PROTO_W;
        in.command = commands[index];
        memset (in.session, 'q', PF_MAX_NAME);
        in.bridge = 6;
        in.generation = 2;

        round_trip (&in, &out, 4);
        assert_string_equal (out.session, in.session);
        assert_int_equal (out.bridge, 6);
        assert_int_equal (out.generation, 2);
        pf_msg_reset (&in);
        pf_msg_reset (&out);
    }
}

static void worker_cancel_round_trips (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_CANCEL;
    in.request_id = UINT64_MAX;

    round_trip (&in, &out, 4);
    assert_true (out.request_id == UINT64_MAX);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_recycle_round_trips_one_bridge_or_all (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_RECYCLE;
    in.bridge = 3;
    round_trip (&in, &out, 4);
    assert_int_equal (out.bridge, 3);
    pf_msg_reset (&out);
    in.bridge = PF_BRIDGE_ANY;
    round_trip (&in, &out, 4);
    assert_int_equal (out.bridge, PF_BRIDGE_ANY);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

static void worker_disconnect_round_trips_with_and_without_message (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_DISCONNECT;
    in.message = strdup ("shutting down");
    round_trip (&in, &out, 4);
    assert_string_equal (out.message, "shutting down");
    pf_msg_reset (&in);
    pf_msg_reset (&out);

    in.proto = PF_PROTO_W;
    in.command = PF_W_DISCONNECT;
    round_trip (&in, &out, 4);
    assert_null (out.message);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
}

//  --------------------------------------------------------------------------
//  Wire format and ownership

static void encode_writes_the_frames_of_the_table_big_endian (void **state)
{
    (void)state;
    pf_msg_t in;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_REQUEST;
    in.request_id = 0x0102030405060708ull;
    strcpy (in.service, "echo");
    strcpy (in.session, "s1");
    strcpy (in.command_name, "ping");
    in.timeout_ms = 5000;
    in.flags = PF_FLAG_IDEMPOTENT;
    in.body = zframe_new ("\x81\xa1x\x01", 4);

    zmsg_t *encoded = pf_msg_encode (&in);
    zmsg_t *expected = raw_client_request ();
    assert_non_null (encoded);
    assert_same_frames (encoded, expected);
    assert_frame_equal (encoded, 3, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_frame_equal (encoded, 7, "\x00\x00\x13\x88", 4);
    zmsg_destroy (&encoded);
    zmsg_destroy (&expected);
    pf_msg_reset (&in);
}

static void encode_packs_the_worker_error_head_big_endian (void **state)
{
    (void)state;
    pf_msg_t in;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_ERROR;
    in.request_id = 1;
    in.bridge = 0x0A0B0C0D;
    in.generation = 1;
    in.code = 0x0102;
    in.message = strdup ("no");
    zmsg_t *encoded = pf_msg_encode (&in);
    assert_non_null (encoded);
    assert_int_equal (zmsg_size (encoded), 5);
    assert_frame_equal (encoded, 0, "", 0);
    assert_frame_equal (encoded, 1, "PFW2", 4);
    assert_frame_equal (encoded, 2, "\x05", 1);
    //  request_id u64, bridge u32, generation u32, code u16, message (u16 length).
    assert_frame_equal (encoded, 3,
                        "\0\0\0\0\0\0\0\x01"
                        "\x0A\x0B\x0C\x0D"
                        "\0\0\0\x01"
                        "\x01\x02"
                        "\0\x02no",
                        22);
    assert_frame_equal (encoded, 4, "", 0); //  NULL detail
    zmsg_destroy (&encoded);
    pf_msg_reset (&in);
}

//  A PFW2 REQUEST built by hand: the head packs the integers, then the two
//  names with their length byte.
static zmsg_t *raw_worker_request (const char *session, const char *command)
{
    zmsg_t *msg = new_head ("PFW2", PF_W_REQUEST);
    head_t head = {.size = 0};
    head_int (&head, 0x0102030405060708ull, 8);
    head_int (&head, 2, 4);
    head_int (&head, 7, 4);
    head_int (&head, 5000, 4);
    head_int (&head, PF_FLAG_SOFT, 4);
    head_name (&head, session);
    head_name (&head, command);
    add_head (msg, &head);
    zmsg_addmem (msg, "\x81\xa1x\x01", 4);
    return msg;
}

static void decode_reads_a_hand_built_worker_request (void **state)
{
    (void)state;
    zmsg_t *msg = raw_worker_request ("s1", "ping");
    pf_msg_t out;
    pf_msg_init (&out);
    char err[ERRLEN];
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_OK);
    assert_true (out.request_id == 0x0102030405060708ull);
    assert_int_equal (out.bridge, 2);
    assert_int_equal (out.generation, 7);
    assert_int_equal (out.timeout_ms, 5000);
    assert_int_equal (out.flags, PF_FLAG_SOFT);
    assert_string_equal (out.session, "s1");
    assert_string_equal (out.command_name, "ping");
    assert_frame_bytes (out.body, "\x81\xa1x\x01", 4);
    pf_msg_reset (&out);

    //  The same message, encoded: the same bytes.
    pf_msg_init (&out);
    out.proto = PF_PROTO_W;
    out.command = PF_W_REQUEST;
    out.request_id = 0x0102030405060708ull;
    out.bridge = 2;
    out.generation = 7;
    out.timeout_ms = 5000;
    out.flags = PF_FLAG_SOFT;
    strcpy (out.session, "s1");
    strcpy (out.command_name, "ping");
    out.body = zframe_new ("\x81\xa1x\x01", 4);
    zmsg_t *encoded = pf_msg_encode (&out);
    zmsg_t *expected = raw_worker_request ("s1", "ping");
    assert_same_frames (encoded, expected);
    zmsg_destroy (&encoded);
    zmsg_destroy (&expected);
    pf_msg_reset (&out);
}

//  REQUEST_PACKED carries REQUEST's fields in a packed head: the same
//  message in 5 frames, and the same bytes as a hand-built one.
static void client_packed_request_round_trips_and_matches_hand_built_bytes (void **state)
{
    (void)state;
    pf_msg_t in, out;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_REQUEST_PACKED;
    in.request_id = 0x0102030405060708ull;
    strcpy (in.service, "echo");
    strcpy (in.session, "s1");
    strcpy (in.command_name, "ping");
    in.timeout_ms = 5000;
    in.flags = PF_FLAG_IDEMPOTENT;
    in.body = zframe_new ("\x81\xa1x\x01", 4);
    zmsg_t *encoded = pf_msg_encode (&in);
    assert_non_null (encoded);

    zmsg_t *expected = new_head ("PFC1", PF_C_REQUEST_PACKED);
    head_t head = {.size = 0};
    head_int (&head, 0x0102030405060708ull, 8);
    head_int (&head, 5000, 4);
    head_int (&head, PF_FLAG_IDEMPOTENT, 4);
    head_name (&head, "echo");
    head_name (&head, "s1");
    head_name (&head, "ping");
    add_head (expected, &head);
    zmsg_addmem (expected, "\x81\xa1x\x01", 4);
    assert_int_equal (zmsg_size (encoded), 5);
    assert_same_frames (encoded, expected);
    zmsg_destroy (&expected);

    pf_msg_init (&out);
    char err[ERRLEN];
    assert_int_equal (pf_msg_decode (&out, &encoded, 0, err, sizeof (err)), PF_OK);
    assert_true (pf_msg_is_request (&out));
    assert_int_equal (out.command, PF_C_REQUEST_PACKED);
    assert_true (out.request_id == 0x0102030405060708ull);
    assert_string_equal (out.service, "echo");
    assert_string_equal (out.session, "s1");
    assert_string_equal (out.command_name, "ping");
    assert_int_equal (out.timeout_ms, 5000);
    assert_int_equal (out.flags, PF_FLAG_IDEMPOTENT);
    assert_frame_bytes (out.body, "\x81\xa1x\x01", 4);
    pf_msg_reset (&out);

    //  A service too long inside the head: named, and the id still answers.
    expected = new_head ("PFC1", PF_C_REQUEST_PACKED);
    head.size = 16;
    head_int (&head, 0, 1);
    head_name (&head, "");
    head_name (&head, "ping");
    add_head (expected, &head);
    zmsg_addmem (expected, NULL, 0);
    assert_int_equal (pf_msg_decode (&out, &expected, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_string_equal (err, "service: empty");
    assert_true (out.has_request_id);
    assert_true (pf_msg_is_request (&out));
    pf_msg_reset (&out);
    pf_msg_reset (&in);
}

//  A head cut short, one with bytes left over, a name whose length runs past
//  the head, a bad name inside it: each is named, and the request id (read
//  first) still answers the request.
static void decode_rejects_a_malformed_packed_head (void **state)
{
    (void)state;
    struct {
        size_t cut;  //  bytes dropped from the end of the head
        size_t grow; //  zero bytes added to it
        const char *session, *command, *reason;
    } cases[] = {
        {3, 0, "s1", "ping", "command: head ends 3 bytes short"},
        {8, 0, "s1", "ping", "session: head ends before its length"},
        {12, 0, "s1", "ping", "flags: head ends 4 bytes short"},
        {0, 3, "s1", "ping", "command: 3 bytes after the head's last field"},
        {0, 0, "s1", "", "command: empty"},
        {0, 0, "s\x01", "ping", "session: contains a NUL byte"},
    };
    for (size_t index = 0; index < COUNT (cases); index++) {
        zmsg_t *msg = raw_worker_request (cases[index].session, cases[index].command);
        if (index == 5) {
            //  A NUL inside the session: rewrite its second byte.
            zframe_t *head = frame_at (msg, 3);
            zframe_data (head)[24 + 1 + 1] = 0;
        }
        zframe_t *head = frame_at (msg, 3);
        byte bytes[600] = {0};
        size_t size = zframe_size (head);
        memcpy (bytes, zframe_data (head), size);
        size = size - cases[index].cut + cases[index].grow;
        msg = with_frame (msg, 3, bytes, size);
        pf_msg_t out;
        pf_msg_init (&out);
        char err[ERRLEN];
        int rc = pf_msg_decode (&out, &msg, 0, err, sizeof (err));
        if (rc != PF_BAD_REQUEST || !strstr (err, cases[index].reason))
            fail_msg ("case %zu: expected \"%s\", got %d \"%s\"", index, cases[index].reason, rc,
                      err);
        assert_true (out.has_request_id);
        assert_true (out.request_id == 0x0102030405060708ull);
        assert_null (out.body);
        pf_msg_reset (&out);
    }
    //  Fewer than 8 bytes: no id to answer with.
    zmsg_t *msg = with_frame (raw_worker_request ("", "x"), 3, "\x01\x02", 2);
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, NULL, 0), PF_BAD_REQUEST);
    assert_false (out.has_request_id);
    pf_msg_reset (&out);
}

static void decode_reads_a_hand_built_request (void **state)
{
    (void)state;
    zmsg_t *msg = raw_client_request ();
    pf_msg_t out;
    pf_msg_init (&out);
    char err[ERRLEN];
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_OK);
    assert_null (msg);
    assert_int_equal (out.proto, PF_PROTO_C);
    assert_int_equal (out.command, PF_C_REQUEST);
    assert_true (out.request_id == 0x0102030405060708ull);
    assert_string_equal (out.service, "echo");
    assert_string_equal (out.session, "s1");
    assert_string_equal (out.command_name, "ping");
    assert_int_equal (out.timeout_ms, 5000);
    assert_int_equal (out.flags, PF_FLAG_IDEMPOTENT);
    assert_frame_bytes (out.body, "\x81\xa1x\x01", 4);
    pf_msg_reset (&out);
}

static void decode_moves_the_body_frame_without_copying (void **state)
{
    (void)state;
    zmsg_t *msg = raw_client_request ();
    zframe_t *body = zmsg_last (msg);
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, NULL, 0), PF_OK);
    assert_ptr_equal (out.body, body);
    pf_msg_reset (&out);
}

static void encode_moves_owned_frames_into_the_message (void **state)
{
    (void)state;
    pf_msg_t in;
    pf_msg_init (&in);
    in.proto = PF_PROTO_W;
    in.command = PF_W_ERROR;
    in.request_id = 1;
    zframe_t *detail = zframe_new (binary, sizeof (binary));
    in.detail = detail;
    zmsg_t *encoded = pf_msg_encode (&in);
    assert_non_null (encoded);
    assert_null (in.detail);
    assert_ptr_equal (zmsg_last (encoded), detail);
    zmsg_destroy (&encoded);
    pf_msg_reset (&in);
}

static void decode_into_a_used_message_frees_what_it_held (void **state)
{
    (void)state;
    pf_msg_t out;
    pf_msg_init (&out);
    out.message = strdup ("old");
    out.detail = zframe_new ("old", 3);
    strcpy (out.agent_id, "old-agent");
    zmsg_t *msg = raw_client_request ();
    assert_int_equal (pf_msg_decode (&out, &msg, 0, NULL, 0), PF_OK);
    assert_null (out.message);
    assert_null (out.detail);
    assert_string_equal (out.agent_id, "");
    pf_msg_reset (&out);
}

static void reset_is_safe_twice_and_on_null (void **state)
{
    (void)state;
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.body = zframe_new ("x", 1);
    msg.message = strdup ("x");
    pf_msg_reset (&msg);
    pf_msg_reset (&msg);
    pf_msg_reset (NULL);
    pf_msg_init (NULL);
    assert_null (msg.body);
    assert_null (msg.message);
}

static void command_names_are_per_protocol (void **state)
{
    (void)state;
    assert_string_equal (pf_msg_command_name (PF_PROTO_C, PF_C_REQUEST), "REQUEST");
    assert_string_equal (pf_msg_command_name (PF_PROTO_C, PF_C_CANCEL), "CANCEL");
    assert_string_equal (pf_msg_command_name (PF_PROTO_C, PF_C_REQUEST_PACKED), "REQUEST_PACKED");
    assert_string_equal (pf_msg_command_name (PF_PROTO_C, PF_C_BATCH), "BATCH");
    assert_string_equal (pf_msg_command_name (PF_PROTO_C, 0x07), "?");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, PF_W_READY), "READY");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, PF_W_SESSION_LOST), "SESSION_LOST");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, PF_W_DISCONNECT), "DISCONNECT");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, 0), "?");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, PF_W_RECYCLE), "RECYCLE");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, PF_W_BATCH), "BATCH");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, 0x0C), "?");
    assert_string_equal (pf_msg_command_name (PF_PROTO_W, -1), "?");
    assert_string_equal (pf_msg_command_name (PF_PROTO_MDPC, PF_MDP_REQUEST), "MDP REQUEST");
    assert_string_equal (pf_msg_command_name (PF_PROTO_MDPC, PF_MDP_MMI), "MMI REPLY");
    assert_string_equal (pf_msg_command_name (PF_PROTO_MDPC, 0x05), "?");
    assert_string_equal (pf_msg_command_name (PF_PROTO_MDPW, PF_MDPW_READY), "MDP READY");
    assert_string_equal (pf_msg_command_name (5, PF_C_REQUEST), "?");
}

//  --------------------------------------------------------------------------
//  MDP/0.1 clients (RFC 7): no command frame, no request id

static zmsg_t *raw_mdp_request (int frames)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    add_str (msg, "MDPC01");
    const char *fields[] = {"echo", "ping", "\x81\xa1x\x01", "extra"};
    for (int index = 0; index < frames; index++) add_str (msg, fields[index]);
    return msg;
}

static void mdp_request_decodes_with_or_without_arguments (void **state)
{
    (void)state;
    pf_msg_t out;
    pf_msg_init (&out);
    char err[ERRLEN];
    zmsg_t *msg = raw_mdp_request (3);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_OK);
    assert_int_equal (out.proto, PF_PROTO_MDPC);
    assert_int_equal (out.command, PF_MDP_REQUEST);
    assert_string_equal (out.service, "echo");
    assert_string_equal (out.command_name, "ping");
    assert_frame_bytes (out.body, "\x81\xa1x\x01", 4);
    assert_false (out.has_request_id);
    //  No arguments: an empty body, never a NULL one.
    msg = raw_mdp_request (2);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_OK);
    assert_frame_bytes (out.body, NULL, 0);
    pf_msg_reset (&out);
}

static void mdp_request_of_the_wrong_shape_is_refused_keeping_its_service (void **state)
{
    (void)state;
    int counts[] = {0, 1, 4};
    for (size_t index = 0; index < sizeof counts / sizeof counts[0]; index++) {
        pf_msg_t out;
        pf_msg_init (&out);
        char err[ERRLEN];
        zmsg_t *msg = raw_mdp_request (counts[index]);
        assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
        assert_non_null (strstr (err, "expected SERVICE COMMAND [ARGS] after MDPC01"));
        assert_int_equal (out.proto, PF_PROTO_MDPC);
        //  Kept, so the client can be answered under its service.
        assert_string_equal (out.service, counts[index] ? "echo" : "");
        assert_null (out.body);
    }
    assert_decode_fails (with_frame (raw_mdp_request (3), 2, "", 0), 0, PF_BAD_REQUEST,
                         "service: empty");
    assert_decode_fails (with_frame (raw_mdp_request (3), 3, "", 0), 0, PF_BAD_REQUEST,
                         "command: empty");
    assert_decode_fails (raw_mdp_request (3), 2, PF_TOO_LARGE, "body: 4 bytes exceeds");
}

static void mdp_answers_encode_to_the_frames_of_rfc_7 (void **state)
{
    (void)state;
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_MDPC;
    msg.command = PF_MDP_REPLY;
    strcpy (msg.service, "echo");
    strcpy (msg.command_name, "OK");
    msg.body = zframe_new ("\xc0", 1);
    zmsg_t *encoded = pf_msg_encode (&msg);
    assert_non_null (encoded);
    assert_int_equal (zmsg_size (encoded), 5);
    assert_frame_bytes (zmsg_first (encoded), NULL, 0);
    assert_frame_bytes (zmsg_next (encoded), "MDPC01", 6);
    assert_frame_bytes (zmsg_next (encoded), "echo", 4);
    assert_frame_bytes (zmsg_next (encoded), "OK", 2);
    assert_frame_bytes (zmsg_next (encoded), "\xc0", 1);
    zmsg_destroy (&encoded);
    pf_msg_reset (&msg);

    msg.proto = PF_PROTO_MDPC;
    msg.command = PF_MDP_ERROR;
    strcpy (msg.service, "echo");
    strcpy (msg.command_name, "TIMEOUT");
    msg.message = strdup ("too slow");
    msg.detail = zframe_new (NULL, 0);
    encoded = pf_msg_encode (&msg);
    assert_int_equal (zmsg_size (encoded), 6);
    zmsg_first (encoded);
    zmsg_next (encoded);
    zmsg_next (encoded);
    assert_frame_bytes (zmsg_next (encoded), "TIMEOUT", 7);
    assert_frame_bytes (zmsg_next (encoded), "too slow", 8);
    assert_frame_bytes (zmsg_next (encoded), NULL, 0);
    zmsg_destroy (&encoded);
    pf_msg_reset (&msg);

    msg.proto = PF_PROTO_MDPC;
    msg.command = PF_MDP_MMI;
    strcpy (msg.service, "mmi.service");
    strcpy (msg.command_name, "404");
    encoded = pf_msg_encode (&msg);
    assert_int_equal (zmsg_size (encoded), 4);
    zmsg_last (encoded);
    assert_frame_bytes (zmsg_last (encoded), "404", 3);
    zmsg_destroy (&encoded);
    pf_msg_reset (&msg);
}

static void mdp_worker_messages_decode_and_encode_with_their_command_frame (void **state)
{
    (void)state;
    char err[ERRLEN];
    pf_msg_t out;
    pf_msg_init (&out);
    //  READY from a worker.
    zmsg_t *msg = new_head ("MDPW01", PF_MDPW_READY);
    add_str (msg, "echo");
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_OK);
    assert_int_equal (out.proto, PF_PROTO_MDPW);
    assert_int_equal (out.command, PF_MDPW_READY);
    assert_string_equal (out.service, "echo");
    //  REPLY: the address (our request id), an empty frame, the result.
    msg = new_head ("MDPW01", PF_MDPW_REPLY);
    add_u64 (msg, 77);
    zmsg_addmem (msg, NULL, 0);
    zmsg_addmem (msg, "\xc3", 1);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_OK);
    assert_true (out.request_id == 77);
    assert_string_equal (out.host, "");
    assert_frame_bytes (out.body, "\xc3", 1);
    //  A REPLY of two result frames, an address of the wrong size, a HEARTBEAT with a frame.
    msg = new_head ("MDPW01", PF_MDPW_REPLY);
    add_u64 (msg, 77);
    zmsg_addmem (msg, NULL, 0);
    zmsg_addmem (msg, "a", 1);
    zmsg_addmem (msg, "b", 1);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "expected 6 frames, got 7");
    msg = new_head ("MDPW01", PF_MDPW_REPLY);
    zmsg_addmem (msg, "addr", 4);
    zmsg_addmem (msg, NULL, 0);
    zmsg_addmem (msg, "a", 1);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "request_id: expected 8 bytes, got 4");
    msg = new_head ("MDPW01", PF_MDPW_HEARTBEAT);
    add_str (msg, "x");
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "expected 3 frames, got 4");
    msg = new_head ("MDPW01", 0x06);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "MDPW01: unknown command 0x06");
    pf_msg_reset (&out);

    //  REQUEST to a worker: address, empty frame, command, arguments.
    out.proto = PF_PROTO_MDPW;
    out.command = PF_MDPW_REQUEST;
    out.request_id = 9;
    strcpy (out.command_name, "upper");
    out.body = zframe_new ("\x90", 1);
    zmsg_t *encoded = pf_msg_encode (&out);
    assert_int_equal (zmsg_size (encoded), 7);
    assert_frame_bytes (zmsg_first (encoded), NULL, 0);
    assert_frame_bytes (zmsg_next (encoded), "MDPW01", 6);
    assert_frame_bytes (zmsg_next (encoded), "\x02", 1);
    assert_frame_bytes (zmsg_next (encoded), "\0\0\0\0\0\0\0\x09", 8);
    assert_frame_bytes (zmsg_next (encoded), NULL, 0);
    assert_frame_bytes (zmsg_next (encoded), "upper", 5);
    assert_frame_bytes (zmsg_next (encoded), "\x90", 1);
    zmsg_destroy (&encoded);
    pf_msg_reset (&out);
    out.proto = PF_PROTO_MDPW;
    out.command = PF_MDPW_HEARTBEAT;
    encoded = pf_msg_encode (&out);
    assert_int_equal (zmsg_size (encoded), 3);
    zmsg_destroy (&encoded);
}

//  --------------------------------------------------------------------------
//  Malformed messages

static void decode_rejects_a_null_or_empty_message (void **state)
{
    (void)state;
    pf_msg_t out;
    pf_msg_init (&out);
    char err[ERRLEN];
    zmsg_t *msg = NULL;
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_int_equal (pf_msg_decode (&out, NULL, 0, err, sizeof (err)), PF_BAD_REQUEST);
    msg = zmsg_new ();
    assert_int_equal (pf_msg_decode (NULL, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_null (msg);

    assert_decode_fails (zmsg_new (), 0, PF_BAD_REQUEST, "empty message");
    msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "missing protocol header");
    msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    add_str (msg, "PFC1");
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "PFC1: missing command frame");
}

static void decode_rejects_a_missing_delimiter (void **state)
{
    (void)state;
    zmsg_t *msg = without_frame (raw_client_request (), 0);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "missing empty delimiter (frame 0 has 4 bytes)");
}

static void decode_rejects_an_unsupported_protocol_header (void **state)
{
    (void)state;
    const char *headers[] = {"MDPX01", "MDPC02", "PFC2", "PFW", "pfc1", "PFC1 ", ""};
    for (size_t index = 0; index < sizeof (headers) / sizeof (headers[0]); index++) {
        zmsg_t *msg =
            with_frame (raw_client_request (), 1, headers[index], strlen (headers[index]));
        assert_decode_fails (msg, 0, PF_BAD_REQUEST, "unsupported protocol header");
    }
    //  A header with a trailing NUL is not "PFC1", and the reason quotes it safely.
    zmsg_t *msg = with_frame (raw_client_request (), 1, "PFC1\0", 5);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "unsupported protocol header \"PFC1\\x00\"");
}

static void decode_rejects_an_unknown_command_byte (void **state)
{
    (void)state;
    assert_decode_fails (with_frame (raw_client_request (), 2, "\x07", 1), 0, PF_BAD_REQUEST,
                         "PFC1: unknown command 0x07");
    assert_decode_fails (with_frame (raw_client_request (), 2, "\x00", 1), 0, PF_BAD_REQUEST,
                         "PFC1: unknown command 0x00");
    assert_decode_fails (with_frame (raw_client_request (), 2, "\xFF", 1), 0, PF_BAD_REQUEST,
                         "PFC1: unknown command 0xFF");
    zmsg_t *msg = new_head ("PFW2", 0x0C);
    add_str (msg, "x");
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "PFW2: unknown command 0x0C");
}

static void decode_rejects_a_command_frame_of_two_bytes (void **state)
{
    (void)state;
    assert_decode_fails (with_frame (raw_client_request (), 2, "\x01\x00", 2), 0, PF_BAD_REQUEST,
                         "PFC1: command frame: expected 1 byte, got 2");
    assert_decode_fails (with_frame (raw_client_request (), 2, "", 0), 0, PF_BAD_REQUEST,
                         "command frame: expected 1 byte, got 0");
}

static void decode_rejects_too_few_frames (void **state)
{
    (void)state;
    zmsg_t *msg = raw_client_request ();
    msg = without_frame (msg, 9);
    msg = without_frame (msg, 8);
    msg = without_frame (msg, 7);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "REQUEST: expected 10 frames, got 7");

    msg = new_head ("PFW2", PF_W_HEARTBEAT);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "HEARTBEAT: expected 4 frames, got 3");
}

static void decode_rejects_too_many_frames (void **state)
{
    (void)state;
    zmsg_t *msg = raw_client_request ();
    add_str (msg, "extra");
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "REQUEST: expected 10 frames, got 11");

    msg = new_head ("PFC1", PF_C_CANCEL);
    for (int index = 0; index < 97; index++)
        add_u64 (msg, (uint64_t)index);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "CANCEL: expected 4 frames, got 100");
}

static void decode_rejects_an_integer_frame_of_the_wrong_size (void **state)
{
    (void)state;
    assert_decode_fails (with_frame (raw_client_request (), 7, "\x00\x13\x88", 3), 0,
                         PF_BAD_REQUEST, "timeout_ms: expected 4 bytes, got 3");
    assert_decode_fails (with_frame (raw_client_request (), 3, "\x00\x00\x00\x01", 4), 0,
                         PF_BAD_REQUEST, "request_id: expected 8 bytes, got 4");
    zmsg_t *msg = new_head ("PFC1", PF_C_ERROR);
    add_u64 (msg, 1);
    add_u32 (msg, PF_TIMEOUT);
    add_str (msg, "late");
    zmsg_addmem (msg, NULL, 0);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "code: expected 2 bytes, got 4");
}

static void decode_rejects_an_empty_service (void **state)
{
    (void)state;
    assert_decode_fails (with_frame (raw_client_request (), 4, "", 0), 0, PF_BAD_REQUEST,
                         "service: empty");
    assert_decode_fails (with_frame (raw_client_request (), 6, "", 0), 0, PF_BAD_REQUEST,
                         "command: empty");
}

static void decode_rejects_a_256_byte_service (void **state)
{
    (void)state;
    char *name = repeat ('s', PF_MAX_NAME + 1);
    assert_decode_fails (with_frame (raw_client_request (), 4, name, PF_MAX_NAME + 1), 0,
                         PF_BAD_REQUEST, "service: 256 bytes exceeds limit of 255");
    assert_decode_fails (with_frame (raw_client_request (), 5, name, PF_MAX_NAME + 1), 0,
                         PF_BAD_REQUEST, "session: 256 bytes exceeds limit of 255");
    free (name);
}

static void decode_rejects_a_nul_byte_inside_a_string (void **state)
{
    (void)state;
    assert_decode_fails (with_frame (raw_client_request (), 4, "ec\0ho", 5), 0, PF_BAD_REQUEST,
                         "service: contains a NUL byte");
    assert_decode_fails (with_frame (raw_client_request (), 5, "\0", 1), 0, PF_BAD_REQUEST,
                         "session: contains a NUL byte");
    zmsg_t *msg = new_head ("PFW2", PF_W_DISCONNECT);
    zmsg_addmem (msg, "bye\0", 4);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "message: contains a NUL byte");
}

static void decode_rejects_a_message_over_65535_bytes (void **state)
{
    (void)state;
    char *text = repeat ('m', PF_MAX_MESSAGE + 1);
    zmsg_t *msg = new_head ("PFW2", PF_W_DISCONNECT);
    add_str (msg, text);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "message: 65536 bytes exceeds limit of 65535");
    free (text);
}

static void decode_rejects_an_empty_session_on_session_end (void **state)
{
    (void)state;
    zmsg_t *msg = new_head ("PFW2", PF_W_SESSION_LOST);
    head_t head = {.size = 0};
    head_name (&head, "");
    head_int (&head, 1, 4);
    head_int (&head, 1, 4);
    add_head (msg, &head);
    assert_decode_fails (msg, 0, PF_BAD_REQUEST, "session: empty");
}

static void decode_answers_too_large_for_an_oversized_opaque_frame (void **state)
{
    (void)state;
    //  body: exactly max_body passes, one byte more is TOO_LARGE.
    zmsg_t *msg = with_frame (raw_client_request (), 9, "12345678", 8);
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_decode (&out, &msg, 8, NULL, 0), PF_OK);
    pf_msg_reset (&out);
    assert_decode_fails (with_frame (raw_client_request (), 9, "123456789", 9), 8, PF_TOO_LARGE,
                         "body: 9 bytes exceeds limit of 8");

    //  detail: the message decoded before it is freed, not leaked.
    msg = new_head ("PFC1", PF_C_ERROR);
    add_u64 (msg, 3);
    add_u16 (msg, PF_PYTHON_ERROR);
    add_str (msg, "boom");
    zmsg_addmem (msg, "123456789", 9);
    assert_decode_fails (msg, 8, PF_TOO_LARGE, "detail: 9 bytes exceeds limit of 8");

    msg = new_head ("PFW2", PF_W_HEARTBEAT);
    zmsg_addmem (msg, "123456789", 9);
    assert_decode_fails (msg, 8, PF_TOO_LARGE, "bridges: 9 bytes exceeds limit of 8");

    msg = new_head ("PFW2", PF_W_READY);
    head_t head = {.size = 0};
    head_name (&head, "agent");
    head_name (&head, "host");
    head_int (&head, 1, 4);
    head_name (&head, "svc");
    head_int (&head, 1, 4);
    add_head (msg, &head);
    zmsg_addmem (msg, "123456789", 9);
    assert_decode_fails (msg, 8, PF_TOO_LARGE, "sessions: 9 bytes exceeds limit of 8");
}

static void decode_max_body_zero_means_the_default_limit (void **state)
{
    (void)state;
    size_t size = 1024 * 1024;
    byte *big = calloc (1, size);
    zmsg_t *msg = with_frame (raw_client_request (), 9, big, size);
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, NULL, 0), PF_OK);
    assert_int_equal (zframe_size (out.body), size);
    pf_msg_reset (&out);
    free (big);
}

static void decode_keeps_the_request_id_of_a_malformed_request (void **state)
{
    (void)state;
    char err[ERRLEN];
    pf_msg_t out;
    pf_msg_init (&out);

    //  Too few frames: the id is read before the frame count is checked.
    zmsg_t *msg = without_frame (raw_client_request (), 9);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_string_equal (err, "REQUEST: expected 10 frames, got 9");
    assert_int_equal (out.proto, PF_PROTO_C);
    assert_int_equal (out.command, PF_C_REQUEST);
    assert_true (out.has_request_id);
    assert_true (out.request_id == 0x0102030405060708ull);

    //  A bad field after the id, and a too-large body.
    msg = with_frame (raw_client_request (), 4, "", 0);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_true (out.has_request_id);
    assert_true (out.request_id == 0x0102030405060708ull);
    assert_string_equal (out.service, "");
    msg = raw_client_request ();
    assert_int_equal (pf_msg_decode (&out, &msg, 2, err, sizeof (err)), PF_TOO_LARGE);
    assert_true (out.has_request_id);
    assert_true (out.request_id == 0x0102030405060708ull);
    assert_null (out.body);

    //  An id frame of the wrong size cannot be read, and says so.
    msg = with_frame (raw_client_request (), 3, "\x01\x02", 2);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_false (out.has_request_id);
    assert_true (out.request_id == 0);

    //  Nor can it before the command is known.
    msg = with_frame (raw_client_request (), 1, "MDPX01", 6);
    assert_int_equal (pf_msg_decode (&out, &msg, 0, err, sizeof (err)), PF_BAD_REQUEST);
    assert_false (out.has_request_id);
    assert_int_equal (out.proto, 0);
    pf_msg_reset (&out);
}

//  A tiny LCG: the same sequence on every run and platform.
static uint32_t next_random (uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7FFF;
}

//  A random message, half of the time a valid head then random frames, else a
//  valid REQUEST with one frame resized or one byte flipped. Deterministic for
//  a seed, so a failure reproduces.
static zmsg_t *random_message (uint32_t *seed)
{
    byte data[300] = {0}; //  a frame grown past its bytes carries zeros
    zmsg_t *msg;
    if (next_random (seed) % 2 == 0) {
        const char *header = next_random (seed) % 2 ? "PFC1" : "PFW2";
        msg = new_head (header, (byte)(next_random (seed) % 11));
        int frames = (int)(next_random (seed) % 12);
        for (int index = 0; index < frames; index++) {
            size_t size = next_random (seed) % 3 == 0
                              ? next_random (seed) % 300
                              : (size_t[]){0, 1, 2, 4, 8}[next_random (seed) % 5];
            for (size_t at = 0; at < size; at++)
                data[at] = (byte)next_random (seed);
            zmsg_addmem (msg, data, size);
        }
    } else {
        msg = raw_client_request ();
        size_t index = next_random (seed) % 10;
        zframe_t *frame = frame_at (msg, index);
        size_t size = zframe_size (frame);
        memcpy (data, zframe_data (frame), size);
        if (next_random (seed) % 2 && size > 0) {
            size_t at = next_random (seed) % size;
            data[at] ^= (byte)(1 + next_random (seed) % 255);
        } else
            size = next_random (seed) % 10;
        msg = with_frame (msg, index, data, size);
    }
    return msg;
}

static void decode_survives_random_and_mutated_input (void **state)
{
    (void)state;
    //  Under ASan/valgrind this is the check that no input makes the codec
    //  read out of bounds or leak.
    uint32_t seed = 12345;
    int outcomes[PF_ERROR_COUNT] = {0};
    for (int round = 0; round < 20000; round++) {
        zmsg_t *msg = random_message (&seed);
        pf_msg_t out;
        pf_msg_init (&out);
        char err[ERRLEN];
        int rc = pf_msg_decode (&out, &msg, 64, err, sizeof (err));
        assert_null (msg);
        assert_true (rc == PF_OK || rc == PF_BAD_REQUEST || rc == PF_TOO_LARGE);
        assert_true (strlen (err) > 0);
        outcomes[rc]++;
        pf_msg_reset (&out);
    }
    //  The generator really exercised both paths.
    assert_true (outcomes[PF_OK] > 0);
    assert_true (outcomes[PF_BAD_REQUEST] > 0);
    assert_true (outcomes[PF_TOO_LARGE] > 0);
}

//  --------------------------------------------------------------------------
//  Encoding refusals

static void encode_refuses_a_string_over_its_limit (void **state)
{
    (void)state;
    pf_msg_t in;
    pf_msg_init (&in);
    in.proto = PF_PROTO_C;
    in.command = PF_C_REQUEST;
    strcpy (in.command_name, "ping");
    in.body = zframe_new ("x", 1);
    zframe_t *body = in.body;

    //  256 bytes with no terminator in the 256-byte array.
    memset (in.service, 's', sizeof (in.service));
    assert_null (pf_msg_encode (&in));
    //  A refused encode leaves self as it was: the caller still owns the body.
    assert_ptr_equal (in.body, body);

    strcpy (in.service, "");
    assert_null (pf_msg_encode (&in));
    strcpy (in.service, "echo");
    memset (in.session, 'e', sizeof (in.session));
    assert_null (pf_msg_encode (&in));
    strcpy (in.session, "");
    strcpy (in.command_name, "");
    assert_null (pf_msg_encode (&in));
    strcpy (in.command_name, "ping");
    zmsg_t *msg = pf_msg_encode (&in);
    assert_non_null (msg);
    zmsg_destroy (&msg);
    pf_msg_reset (&in);

    in.proto = PF_PROTO_W;
    in.command = PF_W_DISCONNECT;
    in.message = repeat ('m', PF_MAX_MESSAGE + 1);
    assert_null (pf_msg_encode (&in));
    pf_msg_reset (&in);

    in.proto = PF_PROTO_W;
    in.command = PF_W_SESSION_END;
    assert_null (pf_msg_encode (&in)); //  empty session
    pf_msg_reset (&in);
}

static void encode_refuses_an_unknown_protocol_or_command (void **state)
{
    (void)state;
    pf_msg_t in;
    pf_msg_init (&in);
    assert_null (pf_msg_encode (&in));
    in.proto = PF_PROTO_C;
    in.command = 0x05;
    assert_null (pf_msg_encode (&in));
    in.proto = PF_PROTO_W;
    in.command = 0x0C;
    assert_null (pf_msg_encode (&in));
    in.proto = 7;
    in.command = PF_C_REQUEST;
    assert_null (pf_msg_encode (&in));
    assert_null (pf_msg_encode (NULL));
}

//  --------------------------------------------------------------------------
//  On and off a socket: pf_msg_send / pf_msg_recv
//
//  The socket paths must be the zmsg paths by other means: the same frames on
//  the wire, the same decoded message, the same typed error and reason for
//  the same bad frames. A malformed message is read whole, so the message
//  after it decodes fine.

typedef struct {
    zsock_t *pair_a, *pair_b; //  inproc PAIR, connected
    zsock_t *router, *dealer; //  inproc ROUTER/DEALER; the dealer's id is DEALER_ID
    void *a, *b;              //  their libzmq handles
    void *router_handle, *dealer_handle;
} sockets_t;

#define DEALER_ID       "dealer-1"
#define RECV_TIMEOUT_MS 5000 //  a broken codec fails a test, never hangs it

static int sockets_setup (void **state)
{
    static int instance = 0;
    instance++;
    sockets_t *self = calloc (1, sizeof (sockets_t));
    self->pair_a = zsock_new (ZMQ_PAIR);
    self->pair_b = zsock_new (ZMQ_PAIR);
    self->router = zsock_new (ZMQ_ROUTER);
    self->dealer = zsock_new (ZMQ_DEALER);
    zsock_set_rcvtimeo (self->pair_a, RECV_TIMEOUT_MS);
    zsock_set_rcvtimeo (self->pair_b, RECV_TIMEOUT_MS);
    zsock_set_rcvtimeo (self->router, RECV_TIMEOUT_MS);
    zsock_set_rcvtimeo (self->dealer, RECV_TIMEOUT_MS);
    zsock_set_identity (self->dealer, DEALER_ID);
    if (zsock_bind (self->pair_b, "inproc://test-proto-pair-%d", instance) ||
        zsock_connect (self->pair_a, "inproc://test-proto-pair-%d", instance) ||
        zsock_bind (self->router, "inproc://test-proto-router-%d", instance) ||
        zsock_connect (self->dealer, "inproc://test-proto-router-%d", instance))
        return -1;
    self->a = zsock_resolve (self->pair_a);
    self->b = zsock_resolve (self->pair_b);
    self->router_handle = zsock_resolve (self->router);
    self->dealer_handle = zsock_resolve (self->dealer);
    *state = self;
    return 0;
}

static int sockets_teardown (void **state)
{
    sockets_t *self = *state;
    zsock_destroy (&self->pair_a);
    zsock_destroy (&self->pair_b);
    zsock_destroy (&self->router);
    zsock_destroy (&self->dealer);
    free (self);
    return 0;
}

//  Sends the frames of *msg_p one by one with zmq_send, as a peer would;
//  destroys the message.
static void send_raw (void *handle, zmsg_t **msg_p)
{
    size_t count = zmsg_size (*msg_p), index = 0;
    for (zframe_t *frame = zmsg_first (*msg_p); frame; frame = zmsg_next (*msg_p), index++) {
        int flags = index + 1 < count ? ZMQ_SNDMORE : 0;
        assert_int_equal (zmq_send (handle, zframe_data (frame), zframe_size (frame), flags),
                          (int)zframe_size (frame));
    }
    zmsg_destroy (msg_p);
}

static void assert_frames_equal (zframe_t *expected, zframe_t *actual)
{
    if (!expected) {
        assert_null (actual);
        return;
    }
    assert_frame_bytes (actual, zframe_data (expected), zframe_size (expected));
}

//  Every field of two decoded messages is the same.
static void assert_msg_equal (const pf_msg_t *expected, const pf_msg_t *actual)
{
    assert_int_equal (actual->proto, expected->proto);
    assert_int_equal (actual->command, expected->command);
    assert_true (actual->request_id == expected->request_id);
    assert_int_equal (actual->has_request_id, expected->has_request_id);
    assert_int_equal (actual->flags, expected->flags);
    assert_int_equal (actual->timeout_ms, expected->timeout_ms);
    assert_int_equal (actual->bridge, expected->bridge);
    assert_int_equal (actual->generation, expected->generation);
    assert_int_equal (actual->pid, expected->pid);
    assert_int_equal (actual->capacity, expected->capacity);
    assert_int_equal (actual->code, expected->code);
    assert_string_equal (actual->service, expected->service);
    assert_string_equal (actual->session, expected->session);
    assert_string_equal (actual->command_name, expected->command_name);
    assert_string_equal (actual->agent_id, expected->agent_id);
    assert_string_equal (actual->host, expected->host);
    if (expected->message)
        assert_string_equal (actual->message, expected->message);
    else
        assert_null (actual->message);
    assert_frames_equal (expected->body, actual->body);
    assert_frames_equal (expected->detail, actual->detail);
    assert_frames_equal (expected->sessions, actual->sessions);
    assert_frames_equal (expected->bridges, actual->bridges);
}

//  A message of the given command with every field of pf_msg_t set (the
//  codec sends only the command's), distinct values, names at full length
//  and all four opaque frames; or (full false) the smallest legal one: empty
//  optional strings, NULL message and frames.
static void sample_message (pf_msg_t *self, int proto, int command, bool full)
{
    pf_msg_init (self);
    self->proto = proto;
    self->command = command;
    strcpy (self->service, "svc");
    strcpy (self->command_name, "cmd");
    strcpy (self->agent_id, "agent");
    if (proto == PF_PROTO_W && (command == PF_W_SESSION_END || command == PF_W_SESSION_LOST))
        strcpy (self->session, "s");
    if (!full) return;
    self->request_id = 0x0102030405060708ull + (uint64_t)command;
    self->flags = 0x11223344u;
    self->timeout_ms = 0x55667788u;
    self->bridge = PF_BRIDGE_ANY;
    self->generation = 0x99AABBCCu;
    self->pid = 4242;
    self->capacity = 64;
    self->code = PF_PYTHON_ERROR;
    memset (self->service, 'v', PF_MAX_NAME);
    memset (self->session, 'e', PF_MAX_NAME);
    memset (self->command_name, 'c', PF_MAX_NAME);
    memset (self->agent_id, 'a', PF_MAX_NAME);
    memset (self->host, 'h', PF_MAX_NAME);
    self->message = strdup ("something went wrong");
    self->body = zframe_new (binary, sizeof (binary));
    self->detail = zframe_new ("\x81\xa4type\xa9TypeError", 16);
    self->sessions = zframe_new ("\x90", 1);
    byte big[1000];
    for (size_t index = 0; index < sizeof (big); index++)
        big[index] = (byte)index;
    self->bridges = zframe_new (big, sizeof (big)); //  over 33 bytes: not inline
}

typedef struct {
    int proto;
    int command;
} command_id_t;

static const command_id_t every_command[] = {
    {PF_PROTO_C, PF_C_REQUEST},     {PF_PROTO_C, PF_C_REPLY},        {PF_PROTO_C, PF_C_ERROR},
    {PF_PROTO_C, PF_C_CANCEL},      {PF_PROTO_W, PF_W_READY},        {PF_PROTO_W, PF_W_HEARTBEAT},
    {PF_PROTO_W, PF_W_REQUEST},     {PF_PROTO_W, PF_W_REPLY},        {PF_PROTO_W, PF_W_ERROR},
    {PF_PROTO_W, PF_W_SESSION_END}, {PF_PROTO_W, PF_W_SESSION_LOST}, {PF_PROTO_W, PF_W_CANCEL},
    {PF_PROTO_W, PF_W_DISCONNECT},  {PF_PROTO_W, PF_W_RECYCLE},      {PF_PROTO_C, PF_C_REQUEST_PACKED},
    {PF_PROTO_C, PF_C_BATCH},       {PF_PROTO_W, PF_W_BATCH},
};

//  What pf_msg_encode + pf_msg_decode make of a message: the reference.
static void encode_then_decode (pf_msg_t *in, pf_msg_t *out)
{
    zmsg_t *msg = pf_msg_encode (in);
    assert_non_null (msg);
    char err[ERRLEN];
    pf_msg_init (out);
    if (pf_msg_decode (out, &msg, 0, err, sizeof (err)) != PF_OK)
        fail_msg ("decode failed: %s", err);
}

//  --------------------------------------------------------------------------
//  Packed messages (the entries of a BATCH)

//  Packs msg into a malloc'd buffer; *size_p its size.
static byte *pack (pf_msg_t *msg, size_t *size_p)
{
    *size_p = pf_msg_packed_size (msg);
    assert_true (*size_p > 0);
    byte *data = malloc (*size_p);
    pf_msg_pack (msg, data);
    return data;
}

static void every_command_packs_and_unpacks_as_encode_and_decode (void **state)
{
    (void)state;
    for (size_t index = 0; index < COUNT (every_command); index++) {
        int proto = every_command[index].proto, command = every_command[index].command;
        if (pf_msg_is_batch (proto, command)) continue;
        for (int full = 0; full < 2; full++) {
            pf_msg_t in, out, reference;
            sample_message (&in, proto, command, full);
            encode_then_decode (&in, &reference);
            pf_msg_reset (&in);
            sample_message (&in, proto, command, full);
            size_t size;
            byte *data = pack (&in, &size);
            assert_int_equal (data[0], command);
            char err[ERRLEN];
            pf_msg_init (&out);
            int rc = pf_msg_unpack (&out, proto, data, size, 0, err, sizeof err);
            if (rc != PF_OK) fail_msg ("%s: %s", pf_msg_command_name (proto, command), err);
            assert_msg_equal (&reference, &out);
            free (data);
            pf_msg_reset (&in);
            pf_msg_reset (&out);
            pf_msg_reset (&reference);
        }
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

static void unpack_rejects_every_malformed_message_with_a_reason (void **state)
{
    (void)state;
    pf_msg_t in, out;
    sample_message (&in, PF_PROTO_W, PF_W_ERROR, true);
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
    byte *longer = calloc (1, size + 1);
    memcpy (longer, data, size);
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, longer, size + 1, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    assert_string_equal (err, "ERROR: 1 bytes after the last field");
    free (longer);
    //  The detail over max_body.
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, data, size, 8, err, sizeof err),
                      PF_TOO_LARGE);
    assert_string_equal (err, "detail: 16 bytes exceeds limit of 8");
    assert_true (out.has_request_id);
    //  Read as the other protocol, the command byte is another command.
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_C, data, size, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    //  A command that is not one, and a batch inside a batch.
    byte bad[] = {0x0C, 0, 0};
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, bad, sizeof bad, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    assert_string_equal (err, "batched message: unknown command 0x0C");
    bad[0] = PF_W_BATCH;
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, bad, sizeof bad, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    //  A message with a NUL byte: ERROR's message is after id, bridge,
    //  generation, code and its two-byte length.
    data[1 + 8 + 4 + 4 + 2 + 2] = 0;
    assert_int_equal (pf_msg_unpack (&out, PF_PROTO_W, data, size, 0, err, sizeof err),
                      PF_BAD_REQUEST);
    assert_string_equal (err, "message: contains a NUL byte");
    pf_msg_reset (&out);
    free (data);
    pf_msg_reset (&in);
}

//  pf_msg_send moved out of self the frames pf_msg_encode moved out of
//  encoded (the command's), and left the others.
static void assert_same_frames_moved (const pf_msg_t *encoded, const pf_msg_t *sent)
{
    assert_int_equal (encoded->body == NULL, sent->body == NULL);
    assert_int_equal (encoded->detail == NULL, sent->detail == NULL);
    assert_int_equal (encoded->sessions == NULL, sent->sessions == NULL);
    assert_int_equal (encoded->bridges == NULL, sent->bridges == NULL);
}

static void send_and_recv_give_what_encode_and_decode_give_for_every_command (void **state)
{
    sockets_t *sockets = *state;
    for (size_t index = 0; index < COUNT (every_command); index++) {
        for (int full = 0; full < 2; full++) {
            int proto = every_command[index].proto, command = every_command[index].command;
            pf_msg_t reference_in, reference, in, out;
            sample_message (&reference_in, proto, command, full);
            encode_then_decode (&reference_in, &reference);

            sample_message (&in, proto, command, full);
            assert_int_equal (pf_msg_send (&in, sockets->a, NULL, 0), 0);
            assert_same_frames_moved (&reference_in, &in);
            char err[ERRLEN];
            pf_msg_init (&out);
            int rc = pf_msg_recv (&out, sockets->b, 0, NULL, 0, err, sizeof (err));
            if (rc != PF_OK)
                fail_msg ("%s %s: recv gave %d \"%s\"", proto == PF_PROTO_C ? "PFC1" : "PFW2",
                          pf_msg_command_name (proto, command), rc, err);
            assert_string_equal (err, "ok");
            assert_msg_equal (&reference, &out);
            pf_msg_reset (&reference_in);
            pf_msg_reset (&reference);
            pf_msg_reset (&in);
            pf_msg_reset (&out);
        }
    }
}

static void send_writes_exactly_the_frames_encode_builds (void **state)
{
    sockets_t *sockets = *state;
    for (size_t index = 0; index < COUNT (every_command); index++) {
        for (int full = 0; full < 2; full++) {
            int proto = every_command[index].proto, command = every_command[index].command;
            pf_msg_t encoded_in, sent_in;
            sample_message (&encoded_in, proto, command, full);
            sample_message (&sent_in, proto, command, full);
            zmsg_t *expected = pf_msg_encode (&encoded_in);
            assert_non_null (expected);
            assert_int_equal (pf_msg_send (&sent_in, sockets->a, NULL, 0), 0);
            zmsg_t *received = zmsg_recv (sockets->pair_b);
            assert_non_null (received);
            assert_int_equal (zmsg_size (received), zmsg_size (expected));
            for (size_t at = 0; at < zmsg_size (expected); at++) {
                zframe_t *frame = frame_at (expected, at);
                assert_frame_equal (received, at, zframe_data (frame), zframe_size (frame));
            }
            zmsg_destroy (&expected);
            zmsg_destroy (&received);
            pf_msg_reset (&encoded_in);
            pf_msg_reset (&sent_in);
        }
    }
}

static void recv_decodes_what_encode_built_and_a_peer_sent_as_a_zmsg (void **state)
{
    sockets_t *sockets = *state;
    for (size_t index = 0; index < COUNT (every_command); index++) {
        int proto = every_command[index].proto, command = every_command[index].command;
        pf_msg_t reference_in, reference, in, out;
        sample_message (&reference_in, proto, command, true);
        encode_then_decode (&reference_in, &reference);
        sample_message (&in, proto, command, true);
        zmsg_t *msg = pf_msg_encode (&in);
        assert_int_equal (zmsg_send (&msg, sockets->pair_a), 0);
        pf_msg_init (&out);
        assert_int_equal (pf_msg_recv (&out, sockets->b, 0, NULL, 0, NULL, 0), PF_OK);
        assert_msg_equal (&reference, &out);
        pf_msg_reset (&reference_in);
        pf_msg_reset (&reference);
        pf_msg_reset (&in);
        pf_msg_reset (&out);
    }
}

static void router_recv_returns_the_peer_routing_id_and_send_routes_to_it (void **state)
{
    sockets_t *sockets = *state;
    pf_msg_t in, out;
    char err[ERRLEN];

    //  Client to broker: the ROUTER sees the dealer's routing id first.
    sample_message (&in, PF_PROTO_C, PF_C_REQUEST, true);
    assert_int_equal (pf_msg_send (&in, sockets->dealer_handle, NULL, 0), 0);
    pf_msg_reset (&in);
    zframe_t *routing_id = NULL;
    pf_msg_init (&out);
    assert_int_equal (
        pf_msg_recv (&out, sockets->router_handle, 0, &routing_id, 0, err, sizeof (err)), PF_OK);
    assert_frame_bytes (routing_id, DEALER_ID, strlen (DEALER_ID));
    assert_int_equal (out.command, PF_C_REQUEST);
    assert_frame_bytes (out.body, binary, sizeof (binary));
    pf_msg_reset (&out);

    //  Broker to client, twice with the same routing id: it is not consumed.
    for (int round = 0; round < 2; round++) {
        sample_message (&in, PF_PROTO_W, PF_W_REPLY, true);
        in.request_id = (uint64_t)round;
        assert_int_equal (pf_msg_send (&in, sockets->router_handle, routing_id, 0), 0);
        assert_null (in.body);
        pf_msg_reset (&in);
        assert_frame_bytes (routing_id, DEALER_ID, strlen (DEALER_ID));
        assert_int_equal (pf_msg_recv (&out, sockets->dealer_handle, 0, NULL, 0, err, sizeof (err)),
                          PF_OK);
        assert_int_equal (out.command, PF_W_REPLY);
        assert_true (out.request_id == (uint64_t)round);
        assert_frame_bytes (out.body, binary, sizeof (binary));
        pf_msg_reset (&out);
    }
    zframe_destroy (&routing_id);
}

static void recv_with_dontwait_on_an_empty_socket_returns_minus_one_and_eagain (void **state)
{
    sockets_t *sockets = *state;
    pf_msg_t out;
    pf_msg_init (&out);
    //  Whatever self held is freed: it is reset first.
    out.body = zframe_new ("stale", 5);
    char err[ERRLEN];
    errno = 0;
    assert_int_equal (pf_msg_recv (&out, sockets->b, ZMQ_DONTWAIT, NULL, 0, err, sizeof (err)), -1);
    assert_int_equal (errno, EAGAIN);
    assert_null (out.body);
    assert_int_equal (out.proto, 0);

    zframe_t *routing_id = zframe_new ("stale", 5);
    zframe_t *stale = routing_id;
    errno = 0;
    assert_int_equal (
        pf_msg_recv (&out, sockets->router_handle, ZMQ_DONTWAIT, &routing_id, 0, NULL, 0), -1);
    assert_int_equal (errno, EAGAIN);
    //  *routing_id_p is an output: set to NULL, never freed.
    assert_null (routing_id);
    zframe_destroy (&stale);
}

static void recv_of_null_self_or_socket_is_einval (void **state)
{
    sockets_t *sockets = *state;
    pf_msg_t out;
    pf_msg_init (&out);
    errno = 0;
    assert_int_equal (pf_msg_recv (NULL, sockets->b, ZMQ_DONTWAIT, NULL, 0, NULL, 0), -1);
    assert_int_equal (errno, EINVAL);
    errno = 0;
    assert_int_equal (pf_msg_recv (&out, NULL, ZMQ_DONTWAIT, NULL, 0, NULL, 0), -1);
    assert_int_equal (errno, EINVAL);
}

//  The outcome of decoding one message: code, reason and what self kept.
typedef struct {
    int rc;
    char err[ERRLEN];
    pf_msg_t msg;
} outcome_t;

//  Decodes a copy of msg with pf_msg_decode into *decoded, then sends msg raw
//  from `from` and receives it with pf_msg_recv on `to` into *received.
static void decode_and_recv (zmsg_t *msg, void *from, void *to, zframe_t **routing_id_p,
                             size_t max_body, outcome_t *decoded, outcome_t *received)
{
    zmsg_t *copy = zmsg_dup (msg);
    pf_msg_init (&decoded->msg);
    decoded->rc = pf_msg_decode (&decoded->msg, &copy, max_body, decoded->err, ERRLEN);
    send_raw (from, &msg);
    pf_msg_init (&received->msg);
    received->rc =
        pf_msg_recv (&received->msg, to, 0, routing_id_p, max_body, received->err, ERRLEN);
}

static void assert_same_outcome (outcome_t *decoded, outcome_t *received)
{
    if (received->rc != decoded->rc || strcmp (received->err, decoded->err))
        fail_msg ("decode gave %d \"%s\", recv gave %d \"%s\"", decoded->rc, decoded->err,
                  received->rc, received->err);
    assert_msg_equal (&decoded->msg, &received->msg);
}

//  The message after a bad one decodes fine: the bad one was drained whole.
static void assert_next_request_decodes (void *from, void *to, zframe_t **routing_id_p)
{
    zmsg_t *msg = raw_client_request ();
    send_raw (from, &msg);
    pf_msg_t out;
    pf_msg_init (&out);
    char err[ERRLEN];
    int rc = pf_msg_recv (&out, to, 0, routing_id_p, 0, err, sizeof (err));
    if (rc != PF_OK) fail_msg ("the next message gave %d \"%s\"", rc, err);
    assert_true (out.request_id == 0x0102030405060708ull);
    assert_string_equal (out.service, "echo");
    assert_frame_bytes (out.body, "\x81\xa1x\x01", 4);
    pf_msg_reset (&out);
}

//  pf_msg_recv of msg's frames fails with `code` and a reason containing
//  `reason`, exactly as pf_msg_decode does, keeps the same request id, and
//  leaves the socket at the next message.
static void assert_recv_fails (sockets_t *sockets, zmsg_t *msg, size_t max_body, int code,
                               const char *reason)
{
    outcome_t decoded, received;
    decode_and_recv (msg, sockets->a, sockets->b, NULL, max_body, &decoded, &received);
    if (received.rc != code || !strstr (received.err, reason))
        fail_msg ("expected %s \"%s\", got %d \"%s\"", pf_error_name (code), reason, received.rc,
                  received.err);
    assert_same_outcome (&decoded, &received);
    assert_null (received.msg.body);
    assert_null (received.msg.message);
    pf_msg_reset (&decoded.msg);
    pf_msg_reset (&received.msg);
    assert_next_request_decodes (sockets->a, sockets->b, NULL);
}

static void recv_rejects_a_flood_of_40_frames_and_reads_it_all (void **state)
{
    sockets_t *sockets = *state;
    zmsg_t *msg = new_head ("PFC1", PF_C_CANCEL);
    for (int index = 0; index < 37; index++)
        add_u64 (msg, (uint64_t)index);
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "CANCEL: expected 4 frames, got 40");

    msg = raw_client_request ();
    for (int index = 0; index < 30; index++)
        add_str (msg, "extra");
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "REQUEST: expected 10 frames, got 40");

    //  The count outranks a bad field, as in pf_msg_decode.
    msg = with_frame (raw_client_request (), 4, "", 0);
    add_str (msg, "extra");
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "REQUEST: expected 10 frames, got 11");
}

static void recv_rejects_too_few_frames (void **state)
{
    sockets_t *sockets = *state;
    zmsg_t *msg = without_frame (without_frame (raw_client_request (), 9), 8);
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "REQUEST: expected 10 frames, got 8");
    assert_recv_fails (sockets, new_head ("PFW2", PF_W_HEARTBEAT), 0, PF_BAD_REQUEST,
                       "HEARTBEAT: expected 4 frames, got 3");
    msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "missing protocol header");
    msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    add_str (msg, "PFW2");
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "PFW2: missing command frame");
}

static void recv_rejects_a_bad_head (void **state)
{
    sockets_t *sockets = *state;
    assert_recv_fails (sockets, without_frame (raw_client_request (), 0), 0, PF_BAD_REQUEST,
                       "missing empty delimiter (frame 0 has 4 bytes)");
    assert_recv_fails (sockets, with_frame (raw_client_request (), 1, "MDPX01", 6), 0,
                       PF_BAD_REQUEST, "unsupported protocol header \"MDPX01\"");
    assert_recv_fails (sockets, with_frame (raw_client_request (), 2, "\x09", 1), 0, PF_BAD_REQUEST,
                       "PFC1: unknown command 0x09");
    assert_recv_fails (sockets, with_frame (raw_client_request (), 2, "\x01\x01", 2), 0,
                       PF_BAD_REQUEST, "command frame: expected 1 byte, got 2");
}

static void recv_rejects_integers_of_the_wrong_size (void **state)
{
    sockets_t *sockets = *state;
    assert_recv_fails (sockets, with_frame (raw_client_request (), 7, "\x00\x13\x88", 3), 0,
                       PF_BAD_REQUEST, "timeout_ms: expected 4 bytes, got 3");
    assert_recv_fails (sockets, with_frame (raw_client_request (), 3, "\x00\x00\x00\x01", 4), 0,
                       PF_BAD_REQUEST, "request_id: expected 8 bytes, got 4");
    zmsg_t *msg = new_head ("PFC1", PF_C_ERROR);
    add_u64 (msg, 1);
    add_u32 (msg, PF_TIMEOUT);
    add_str (msg, "late");
    zmsg_addmem (msg, NULL, 0);
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "code: expected 2 bytes, got 4");
}

static void recv_rejects_bad_names (void **state)
{
    sockets_t *sockets = *state;
    char *name = repeat ('s', PF_MAX_NAME + 1);
    assert_recv_fails (sockets, with_frame (raw_client_request (), 4, name, PF_MAX_NAME + 1), 0,
                       PF_BAD_REQUEST, "service: 256 bytes exceeds limit of 255");
    assert_recv_fails (sockets, with_frame (raw_client_request (), 5, name, PF_MAX_NAME + 1), 0,
                       PF_BAD_REQUEST, "session: 256 bytes exceeds limit of 255");
    free (name);
    assert_recv_fails (sockets, with_frame (raw_client_request (), 4, "ec\0ho", 5), 0,
                       PF_BAD_REQUEST, "service: contains a NUL byte");
    assert_recv_fails (sockets, with_frame (raw_client_request (), 6, "", 0), 0, PF_BAD_REQUEST,
                       "command: empty");
    zmsg_t *msg = new_head ("PFW2", PF_W_DISCONNECT);
    zmsg_addmem (msg, "bye\0", 4);
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST, "message: contains a NUL byte");
    char *text = repeat ('m', PF_MAX_MESSAGE + 1);
    msg = new_head ("PFW2", PF_W_DISCONNECT);
    add_str (msg, text);
    free (text);
    assert_recv_fails (sockets, msg, 0, PF_BAD_REQUEST,
                       "message: 65536 bytes exceeds limit of 65535");
}

static void recv_answers_too_large_for_an_opaque_frame_over_max_body (void **state)
{
    sockets_t *sockets = *state;
    assert_recv_fails (sockets, with_frame (raw_client_request (), 9, "123456789", 9), 8,
                       PF_TOO_LARGE, "body: 9 bytes exceeds limit of 8");
    //  The message read before the detail is freed, not leaked.
    zmsg_t *msg = new_head ("PFC1", PF_C_ERROR);
    add_u64 (msg, 3);
    add_u16 (msg, PF_PYTHON_ERROR);
    add_str (msg, "boom");
    zmsg_addmem (msg, "123456789", 9);
    assert_recv_fails (sockets, msg, 8, PF_TOO_LARGE, "detail: 9 bytes exceeds limit of 8");

    //  Exactly max_body passes.
    msg = with_frame (raw_client_request (), 9, "12345678", 8);
    send_raw (sockets->a, &msg);
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_recv (&out, sockets->b, 0, NULL, 8, NULL, 0), PF_OK);
    assert_frame_bytes (out.body, "12345678", 8);
    pf_msg_reset (&out);
}

static void recv_keeps_the_request_id_of_a_malformed_request (void **state)
{
    sockets_t *sockets = *state;
    outcome_t decoded, received;
    decode_and_recv (without_frame (raw_client_request (), 9), sockets->a, sockets->b, NULL, 0,
                     &decoded, &received);
    assert_same_outcome (&decoded, &received);
    assert_int_equal (received.rc, PF_BAD_REQUEST);
    assert_true (received.msg.has_request_id);
    assert_true (received.msg.request_id == 0x0102030405060708ull);
    assert_int_equal (received.msg.command, PF_C_REQUEST);
    pf_msg_reset (&decoded.msg);
    pf_msg_reset (&received.msg);
}

static void router_recv_returns_the_routing_id_with_a_decode_error_to_answer_it (void **state)
{
    sockets_t *sockets = *state;
    outcome_t decoded, received;
    zframe_t *routing_id = NULL;
    decode_and_recv (with_frame (raw_client_request (), 4, "", 0), sockets->dealer_handle,
                     sockets->router_handle, &routing_id, 0, &decoded, &received);
    assert_same_outcome (&decoded, &received);
    assert_int_equal (received.rc, PF_BAD_REQUEST);
    assert_string_equal (received.err, "service: empty");
    assert_frame_bytes (routing_id, DEALER_ID, strlen (DEALER_ID));
    assert_true (received.msg.has_request_id);

    //  Which is what the broker needs to answer the client.
    pf_msg_t answer;
    pf_msg_init (&answer);
    answer.proto = PF_PROTO_C;
    answer.command = PF_C_ERROR;
    answer.request_id = received.msg.request_id;
    answer.code = (uint16_t)received.rc;
    answer.message = strdup (received.err);
    assert_int_equal (pf_msg_send (&answer, sockets->router_handle, routing_id, 0), 0);
    pf_msg_reset (&answer);
    zframe_destroy (&routing_id);
    assert_int_equal (pf_msg_recv (&answer, sockets->dealer_handle, 0, NULL, 0, NULL, 0), PF_OK);
    assert_int_equal (answer.command, PF_C_ERROR);
    assert_int_equal (answer.code, PF_BAD_REQUEST);
    assert_true (answer.request_id == 0x0102030405060708ull);
    assert_string_equal (answer.message, "service: empty");
    pf_msg_reset (&answer);
    pf_msg_reset (&decoded.msg);
    pf_msg_reset (&received.msg);

    //  And the ROUTER is at the next message.
    assert_next_request_decodes (sockets->dealer_handle, sockets->router_handle, &routing_id);
    assert_frame_bytes (routing_id, DEALER_ID, strlen (DEALER_ID));
    zframe_destroy (&routing_id);
}

static void recv_matches_decode_on_random_and_mutated_input (void **state)
{
    sockets_t *sockets = *state;
    uint32_t seed = 4711;
    int outcomes[PF_ERROR_COUNT] = {0};
    for (int round = 0; round < 5000; round++) {
        outcome_t decoded, received;
        //  Alternately through the PAIR and the ROUTER (routing id first).
        bool routed = round % 2;
        zframe_t *routing_id = NULL;
        decode_and_recv (random_message (&seed), routed ? sockets->dealer_handle : sockets->a,
                         routed ? sockets->router_handle : sockets->b, routed ? &routing_id : NULL,
                         64, &decoded, &received);
        assert_same_outcome (&decoded, &received);
        if (routed) assert_frame_bytes (routing_id, DEALER_ID, strlen (DEALER_ID));
        zframe_destroy (&routing_id);
        outcomes[received.rc]++;
        pf_msg_reset (&decoded.msg);
        pf_msg_reset (&received.msg);
    }
    assert_true (outcomes[PF_OK] > 0);
    assert_true (outcomes[PF_BAD_REQUEST] > 0);
    assert_true (outcomes[PF_TOO_LARGE] > 0);
    assert_next_request_decodes (sockets->a, sockets->b, NULL);
}

static void send_refuses_what_encode_refuses_and_leaves_self_untouched (void **state)
{
    sockets_t *sockets = *state;
    pf_msg_t in;
    sample_message (&in, PF_PROTO_C, PF_C_REQUEST, true);
    zframe_t *body = in.body;
    in.service[0] = '\0';
    errno = 0;
    assert_int_equal (pf_msg_send (&in, sockets->a, NULL, 0), -1);
    assert_int_equal (errno, EINVAL);
    assert_ptr_equal (in.body, body);
    in.command = 0x05;
    assert_int_equal (pf_msg_send (&in, sockets->a, NULL, 0), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (pf_msg_send (NULL, sockets->a, NULL, 0), -1);
    in.command = PF_C_REQUEST;
    strcpy (in.service, "echo");
    assert_int_equal (pf_msg_send (&in, NULL, NULL, 0), -1);
    assert_ptr_equal (in.body, body);
    pf_msg_reset (&in);
    //  Nothing reached the peer.
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_recv (&out, sockets->b, ZMQ_DONTWAIT, NULL, 0, NULL, 0), -1);
    assert_int_equal (errno, EAGAIN);
}

static void send_with_keep_leaves_the_body_in_self_for_a_second_send (void **state)
{
    sockets_t *sockets = *state;
    pf_msg_t in;
    sample_message (&in, PF_PROTO_W, PF_W_REQUEST, true);
    zframe_t *body = in.body;
    zframe_t *copy = zframe_dup (body);
    for (int round = 0; round < 2; round++) {
        assert_int_equal (pf_msg_send (&in, sockets->a, NULL, PF_MSG_KEEP), 0);
        assert_ptr_equal (in.body, body);
        assert_true (zframe_eq (in.body, copy));
        pf_msg_t out;
        pf_msg_init (&out);
        assert_int_equal (pf_msg_recv (&out, sockets->b, 0, NULL, 0, NULL, 0), PF_OK);
        assert_true (zframe_eq (out.body, copy));
        pf_msg_reset (&out);
    }
    zframe_destroy (&copy);
    pf_msg_reset (&in);
}

static void send_that_cannot_start_sends_nothing_and_the_body_stays_in_self (void **state)
{
    sockets_t *sockets = *state;
    //  A PAIR with no peer yet: with ZMQ_DONTWAIT the first part fails.
    zsock_t *lonely = zsock_new (ZMQ_PAIR);
    zsock_set_rcvtimeo (lonely, RECV_TIMEOUT_MS);
    pf_msg_t in;
    sample_message (&in, PF_PROTO_C, PF_C_REQUEST, true);
    zframe_t *body = in.body, *detail = in.detail;
    errno = 0;
    assert_int_equal (pf_msg_send (&in, zsock_resolve (lonely), NULL, ZMQ_DONTWAIT), -1);
    assert_int_equal (errno, EAGAIN);
    assert_ptr_equal (in.body, body);
    assert_ptr_equal (in.detail, detail);

    //  Once a peer is there, the same message goes out whole, and only it:
    //  no stray first frames were left queued by the failed attempt.
    assert_int_equal (zsock_bind (lonely, "inproc://test-proto-lonely"), 0);
    zsock_t *peer = zsock_new_pair (">inproc://test-proto-lonely");
    zsock_set_rcvtimeo (peer, RECV_TIMEOUT_MS);
    assert_int_equal (pf_msg_send (&in, zsock_resolve (lonely), NULL, 0), 0);
    assert_null (in.body);
    pf_msg_t out;
    pf_msg_init (&out);
    assert_int_equal (pf_msg_recv (&out, zsock_resolve (peer), 0, NULL, 0, NULL, 0), PF_OK);
    assert_frame_bytes (out.body, binary, sizeof (binary));
    assert_int_equal (pf_msg_recv (&out, zsock_resolve (peer), ZMQ_DONTWAIT, NULL, 0, NULL, 0), -1);
    assert_int_equal (errno, EAGAIN);
    pf_msg_reset (&in);
    zsock_destroy (&peer);
    zsock_destroy (&lonely);

    //  A ROUTER that must not drop: an unknown peer fails at the routing id.
    zsock_set_router_mandatory (sockets->router, 1);
    zframe_t *nobody = zframe_new ("nobody", 6);
    sample_message (&in, PF_PROTO_W, PF_W_REPLY, true);
    body = in.body;
    errno = 0;
    assert_int_equal (pf_msg_send (&in, sockets->router_handle, nobody, 0), -1);
    assert_int_equal (errno, EHOSTUNREACH);
    assert_ptr_equal (in.body, body);
    pf_msg_reset (&in);
    zframe_destroy (&nobody);
}

static void send_and_recv_carry_a_megabyte_body (void **state)
{
    sockets_t *sockets = *state;
    size_t size = 1024 * 1024;
    byte *big = malloc (size);
    for (size_t index = 0; index < size; index++)
        big[index] = (byte)(index * 7);
    pf_msg_t in, out;
    sample_message (&in, PF_PROTO_W, PF_W_REQUEST, true);
    zframe_destroy (&in.body);
    in.body = zframe_new (big, size);
    assert_int_equal (pf_msg_send (&in, sockets->a, NULL, 0), 0);
    assert_null (in.body);
    pf_msg_init (&out);
    assert_int_equal (pf_msg_recv (&out, sockets->b, 0, NULL, 0, NULL, 0), PF_OK);
    assert_frame_bytes (out.body, big, size);
    //  One byte under the limit's size is too large; the next message is fine.
    pf_msg_reset (&in);
    sample_message (&in, PF_PROTO_W, PF_W_REQUEST, true);
    zframe_destroy (&in.body);
    in.body = zframe_new (big, size);
    assert_int_equal (pf_msg_send (&in, sockets->a, NULL, 0), 0);
    assert_int_equal (pf_msg_recv (&out, sockets->b, 0, NULL, size - 1, NULL, 0), PF_TOO_LARGE);
    assert_null (out.body);
    assert_next_request_decodes (sockets->a, sockets->b, NULL);
    pf_msg_reset (&in);
    pf_msg_reset (&out);
    free (big);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (client_request_round_trips_every_field_at_max_length),
        cmocka_unit_test (client_request_with_empty_session_and_null_body_round_trips),
        cmocka_unit_test (client_reply_round_trips),
        cmocka_unit_test (client_error_round_trips_code_message_and_detail),
        cmocka_unit_test (client_error_with_empty_message_and_detail_decodes_null_message),
        cmocka_unit_test (client_cancel_round_trips),
        cmocka_unit_test (worker_ready_round_trips),
        cmocka_unit_test (worker_ready_with_empty_host_and_sessions_round_trips),
        cmocka_unit_test (worker_heartbeat_round_trips),
        cmocka_unit_test (worker_request_round_trips),
        cmocka_unit_test (worker_request_with_empty_session_and_body_round_trips),
        cmocka_unit_test (worker_reply_round_trips),
        cmocka_unit_test (worker_error_round_trips),
        cmocka_unit_test (worker_session_end_and_session_lost_round_trip),
        cmocka_unit_test (worker_cancel_round_trips),
        cmocka_unit_test (worker_disconnect_round_trips_with_and_without_message),
        cmocka_unit_test (worker_recycle_round_trips_one_bridge_or_all),
        cmocka_unit_test (encode_writes_the_frames_of_the_table_big_endian),
        cmocka_unit_test (encode_packs_the_worker_error_head_big_endian),
        cmocka_unit_test (decode_reads_a_hand_built_worker_request),
        cmocka_unit_test (client_packed_request_round_trips_and_matches_hand_built_bytes),
        cmocka_unit_test (decode_rejects_a_malformed_packed_head),
        cmocka_unit_test (decode_reads_a_hand_built_request),
        cmocka_unit_test (decode_moves_the_body_frame_without_copying),
        cmocka_unit_test (encode_moves_owned_frames_into_the_message),
        cmocka_unit_test (decode_into_a_used_message_frees_what_it_held),
        cmocka_unit_test (reset_is_safe_twice_and_on_null),
        cmocka_unit_test (command_names_are_per_protocol),
        cmocka_unit_test (decode_rejects_a_null_or_empty_message),
        cmocka_unit_test (decode_rejects_a_missing_delimiter),
        cmocka_unit_test (decode_rejects_an_unsupported_protocol_header),
        cmocka_unit_test (mdp_request_decodes_with_or_without_arguments),
        cmocka_unit_test (mdp_request_of_the_wrong_shape_is_refused_keeping_its_service),
        cmocka_unit_test (mdp_answers_encode_to_the_frames_of_rfc_7),
        cmocka_unit_test (mdp_worker_messages_decode_and_encode_with_their_command_frame),
        cmocka_unit_test (decode_rejects_an_unknown_command_byte),
        cmocka_unit_test (decode_rejects_a_command_frame_of_two_bytes),
        cmocka_unit_test (decode_rejects_too_few_frames),
        cmocka_unit_test (decode_rejects_too_many_frames),
        cmocka_unit_test (decode_rejects_an_integer_frame_of_the_wrong_size),
        cmocka_unit_test (decode_rejects_an_empty_service),
        cmocka_unit_test (decode_rejects_a_256_byte_service),
        cmocka_unit_test (decode_rejects_a_nul_byte_inside_a_string),
        cmocka_unit_test (decode_rejects_a_message_over_65535_bytes),
        cmocka_unit_test (decode_rejects_an_empty_session_on_session_end),
        cmocka_unit_test (decode_answers_too_large_for_an_oversized_opaque_frame),
        cmocka_unit_test (decode_max_body_zero_means_the_default_limit),
        cmocka_unit_test (decode_keeps_the_request_id_of_a_malformed_request),
        cmocka_unit_test (decode_survives_random_and_mutated_input),
        cmocka_unit_test (encode_refuses_a_string_over_its_limit),
        cmocka_unit_test (encode_refuses_an_unknown_protocol_or_command),
        cmocka_unit_test_setup_teardown (
            send_and_recv_give_what_encode_and_decode_give_for_every_command, sockets_setup,
            sockets_teardown),
        cmocka_unit_test_setup_teardown (send_writes_exactly_the_frames_encode_builds,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_decodes_what_encode_built_and_a_peer_sent_as_a_zmsg,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (
            router_recv_returns_the_peer_routing_id_and_send_routes_to_it, sockets_setup,
            sockets_teardown),
        cmocka_unit_test_setup_teardown (
            recv_with_dontwait_on_an_empty_socket_returns_minus_one_and_eagain, sockets_setup,
            sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_of_null_self_or_socket_is_einval, sockets_setup,
                                         sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_rejects_a_flood_of_40_frames_and_reads_it_all,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_rejects_too_few_frames, sockets_setup,
                                         sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_rejects_a_bad_head, sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_rejects_integers_of_the_wrong_size, sockets_setup,
                                         sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_rejects_bad_names, sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_answers_too_large_for_an_opaque_frame_over_max_body,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_keeps_the_request_id_of_a_malformed_request,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (
            router_recv_returns_the_routing_id_with_a_decode_error_to_answer_it, sockets_setup,
            sockets_teardown),
        cmocka_unit_test_setup_teardown (recv_matches_decode_on_random_and_mutated_input,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (send_with_keep_leaves_the_body_in_self_for_a_second_send,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (send_refuses_what_encode_refuses_and_leaves_self_untouched,
                                         sockets_setup, sockets_teardown),
        cmocka_unit_test_setup_teardown (
            send_that_cannot_start_sends_nothing_and_the_body_stays_in_self, sockets_setup,
            sockets_teardown),
        cmocka_unit_test (every_command_packs_and_unpacks_as_encode_and_decode),
        cmocka_unit_test (a_reply_packs_to_the_bytes_of_the_table),
        cmocka_unit_test (every_message_but_a_batch_packs),
        cmocka_unit_test (unpack_rejects_every_malformed_message_with_a_reason),
        cmocka_unit_test_setup_teardown (send_and_recv_carry_a_megabyte_body, sockets_setup,
                                         sockets_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
