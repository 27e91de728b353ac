/*  test_bridge_msg — the msgpack maps exchanged with a bridge: requests
    decode back with msgpack-c (args copied verbatim), every bridge message
    kind decodes into the struct, and every malformed frame is a -1 with a
    reason, never a crash. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <msgpack.h>

#include "pf_bridge_msg.h"
#include "pf_error.h"

//  --------------------------------------------------------------------------
//  Helpers: build frames with msgpack-c's packer

typedef struct {
    msgpack_sbuffer buffer;
    msgpack_packer packer;
} builder_t;

static void s_begin (builder_t *b)
{
    msgpack_sbuffer_init (&b->buffer);
    msgpack_packer_init (&b->packer, &b->buffer, msgpack_sbuffer_write);
}

static void s_str (builder_t *b, const char *text)
{
    msgpack_pack_str (&b->packer, strlen (text));
    msgpack_pack_str_body (&b->packer, text, strlen (text));
}

static void s_bin (builder_t *b, const char *text)
{
    msgpack_pack_bin (&b->packer, strlen (text));
    msgpack_pack_bin_body (&b->packer, text, strlen (text));
}

//  One object holding every msgpack type in every width msgpack-c writes:
//  ints from fixint to 64 bits, floats, str and bin up to 16-bit lengths,
//  ext and fixext, arrays and maps from fix to 16-bit counts, nested.
static void s_pack_every_type (builder_t *b)
{
    msgpack_pack_array (&b->packer, 24);
    msgpack_pack_nil (&b->packer);
    msgpack_pack_true (&b->packer);
    msgpack_pack_false (&b->packer);
    msgpack_pack_int (&b->packer, 5);
    msgpack_pack_int (&b->packer, -5);
    msgpack_pack_uint64 (&b->packer, 200);
    msgpack_pack_uint64 (&b->packer, 60000);
    msgpack_pack_uint64 (&b->packer, 4000000000u);
    msgpack_pack_uint64 (&b->packer, UINT64_MAX);
    msgpack_pack_int64 (&b->packer, -100);
    msgpack_pack_int64 (&b->packer, -30000);
    msgpack_pack_int64 (&b->packer, -2000000000);
    msgpack_pack_int64 (&b->packer, INT64_MIN);
    msgpack_pack_float (&b->packer, 1.5f);
    msgpack_pack_double (&b->packer, 2.5);
    char text[70000];
    memset (text, 'x', sizeof text);
    msgpack_pack_str (&b->packer, 40);
    msgpack_pack_str_body (&b->packer, text, 40);
    msgpack_pack_str (&b->packer, 300);
    msgpack_pack_str_body (&b->packer, text, 300);
    msgpack_pack_str (&b->packer, sizeof text); //  str32
    msgpack_pack_str_body (&b->packer, text, sizeof text);
    msgpack_pack_bin (&b->packer, 3);
    msgpack_pack_bin_body (&b->packer, "abc", 3);
    msgpack_pack_ext (&b->packer, 1, 7);
    msgpack_pack_ext_body (&b->packer, "x", 1);
    msgpack_pack_ext (&b->packer, 3, 7);
    msgpack_pack_ext_body (&b->packer, "xyz", 3);
    msgpack_pack_array (&b->packer, 20);
    for (int index = 0; index < 20; index++)
        msgpack_pack_int (&b->packer, index);
    msgpack_pack_map (&b->packer, 17);
    for (int index = 0; index < 17; index++) {
        msgpack_pack_int (&b->packer, index);
        msgpack_pack_map (&b->packer, 1);
        s_str (b, "k");
        msgpack_pack_array (&b->packer, 0);
    }
    msgpack_pack_map (&b->packer, 0);
}

//  Decodes b's bytes; returns the decode result and frees the builder.
static int s_decode (builder_t *b, pf_bridge_msg_t *msg, char *err, size_t errlen)
{
    int rc =
        pf_bridge_msg_decode (msg, (const uint8_t *)b->buffer.data, b->buffer.size, err, errlen);
    msgpack_sbuffer_destroy (&b->buffer);
    return rc;
}

//  Expects decode to fail with a reason containing `reason`, leaving msg empty.
static void s_expect_fault (builder_t *b, const char *reason)
{
    pf_bridge_msg_t msg;
    char err[256] = "unset";
    assert_int_equal (s_decode (b, &msg, err, sizeof err), -1);
    if (!strstr (err, reason)) fail_msg ("reason '%s' does not mention '%s'", err, reason);
    assert_int_equal (msg.kind, 0);
    assert_null (msg.result);
    assert_null (msg.error_message);
    assert_null (msg.detail);
}

static const msgpack_object *s_get (const msgpack_object *map, const char *key)
{
    assert_int_equal (map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key) &&
            memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    fail_msg ("key '%s' missing", key);
    return NULL;
}

static void s_unpack_whole (msgpack_unpacked *unpacked, const uint8_t *data, size_t size)
{
    msgpack_unpacked_init (unpacked);
    size_t offset = 0;
    assert_int_equal (msgpack_unpack_next (unpacked, (const char *)data, size, &offset),
                      MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (offset, size);
}

//  --------------------------------------------------------------------------
//  Requests

static void request_decodes_back_to_id_cmd_args_session (void **state)
{
    (void)state;
    builder_t args;
    s_begin (&args);
    msgpack_pack_map (&args.packer, 1);
    s_str (&args, "x");
    msgpack_pack_int (&args.packer, -5);

    size_t size = 0;
    uint8_t *frame = pf_bridge_msg_request (UINT64_MAX, "echo", args.buffer.data, args.buffer.size,
                                            "sess-1", 0, false, &size);
    assert_non_null (frame);
    msgpack_unpacked unpacked;
    s_unpack_whole (&unpacked, frame, size);
    const msgpack_object *map = &unpacked.data;
    assert_int_equal (map->via.map.size, 4);
    assert_true (s_get (map, "id")->via.u64 == UINT64_MAX);
    const msgpack_object *cmd = s_get (map, "cmd");
    assert_int_equal (cmd->type, MSGPACK_OBJECT_STR);
    assert_memory_equal (cmd->via.str.ptr, "echo", 4);
    const msgpack_object *decoded_args = s_get (map, "args");
    assert_int_equal (s_get (decoded_args, "x")->via.i64, -5);
    const msgpack_object *session = s_get (map, "session");
    assert_int_equal (session->type, MSGPACK_OBJECT_STR);
    assert_int_equal (session->via.str.size, 6);
    assert_memory_equal (session->via.str.ptr, "sess-1", 6);
    //  Verbatim: the args bytes appear unchanged in the frame.
    assert_non_null (memmem (frame, size, args.buffer.data, args.buffer.size));
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&args.buffer);
    free (frame);
}

static void request_copies_one_mebibyte_bin_args_verbatim (void **state)
{
    (void)state;
    const size_t body = 1024 * 1024;
    char *payload = malloc (body);
    for (size_t i = 0; i < body; i++)
        payload[i] = (char)(i * 7 + 3);
    builder_t args;
    s_begin (&args);
    msgpack_pack_bin (&args.packer, body);
    msgpack_pack_bin_body (&args.packer, payload, body);

    size_t size = 0;
    uint8_t *frame =
        pf_bridge_msg_request (1, "load", args.buffer.data, args.buffer.size, NULL, 0, false, &size);
    assert_non_null (frame);
    msgpack_unpacked unpacked;
    s_unpack_whole (&unpacked, frame, size);
    const msgpack_object *decoded = s_get (&unpacked.data, "args");
    assert_int_equal (decoded->type, MSGPACK_OBJECT_BIN);
    assert_int_equal (decoded->via.bin.size, body);
    assert_memory_equal (decoded->via.bin.ptr, payload, body);
    //  bin32 header (5 bytes) + body copied as one run.
    assert_non_null (memmem (frame, size, args.buffer.data, args.buffer.size));
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&args.buffer);
    free (payload);
    free (frame);
}

static void request_without_args_or_session_encodes_nil (void **state)
{
    (void)state;
    const char *sessions[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        size_t size = 0;
        uint8_t *frame = pf_bridge_msg_request (0, "ping", NULL, 0, sessions[i], 0, false, &size);
        assert_non_null (frame);
        msgpack_unpacked unpacked;
        s_unpack_whole (&unpacked, frame, size);
        assert_int_equal (s_get (&unpacked.data, "args")->type, MSGPACK_OBJECT_NIL);
        assert_int_equal (s_get (&unpacked.data, "session")->type, MSGPACK_OBJECT_NIL);
        msgpack_unpacked_destroy (&unpacked);
        free (frame);
    }
}

static void request_with_deadline_and_releasable_carries_both_keys (void **state)
{
    (void)state;
    size_t size = 0;
    uint8_t *frame =
        pf_bridge_msg_request (7, "ping", NULL, 0, NULL, INT64_C (123456789012), true, &size);
    assert_non_null (frame);
    msgpack_unpacked unpacked;
    s_unpack_whole (&unpacked, frame, size);
    assert_int_equal (unpacked.data.via.map.size, 6);
    assert_int_equal (s_get (&unpacked.data, "releasable")->type, MSGPACK_OBJECT_BOOLEAN);
    const msgpack_object *deadline = s_get (&unpacked.data, "deadline");
    assert_int_equal (deadline->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true (deadline->via.u64 == UINT64_C (123456789012));
    msgpack_unpacked_destroy (&unpacked);
    free (frame);
}

static void args_are_valid_only_as_exactly_one_msgpack_object (void **state)
{
    (void)state;
    const uint8_t one_map[] = {0x81, 0xa1, 'k', 0x01};
    const uint8_t two_ints[] = {0x01, 0x02};
    const uint8_t truncated[] = {0x82, 0xa1, 'k', 0x01};
    const uint8_t never_used[] = {0xc1};
    assert_true (pf_bridge_msg_args_valid (one_map, sizeof one_map));
    assert_true (pf_bridge_msg_args_valid (NULL, 0));
    assert_false (pf_bridge_msg_args_valid (two_ints, sizeof two_ints));
    assert_false (pf_bridge_msg_args_valid (truncated, sizeof truncated));
    assert_false (pf_bridge_msg_args_valid (never_used, sizeof never_used));

    //  Every type is one object; cut anywhere, it is not; a count that
    //  promises more items than bytes is refused without walking them.
    builder_t b;
    s_begin (&b);
    s_pack_every_type (&b);
    const uint8_t *data = (const uint8_t *)b.buffer.data;
    assert_true (pf_bridge_msg_args_valid (data, b.buffer.size));
    for (size_t cut = 1; cut < b.buffer.size; cut += 1 + cut / 16)
        assert_false (pf_bridge_msg_args_valid (data, cut));
    msgpack_sbuffer_destroy (&b.buffer);
    const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t huge_bin[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_false (pf_bridge_msg_args_valid (huge_array, sizeof huge_array));
    assert_false (pf_bridge_msg_args_valid (huge_bin, sizeof huge_bin));
}

//  --------------------------------------------------------------------------
//  Bridge -> agent messages

static void ok_reply_carries_id_and_the_result_bytes (void **state)
{
    (void)state;
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 4);
    s_str (&b, "id");
    msgpack_pack_uint64 (&b.packer, 77);
    s_str (&b, "ok");
    msgpack_pack_true (&b.packer);
    s_str (&b, "result");
    msgpack_pack_array (&b.packer, 2);
    msgpack_pack_int (&b.packer, 1);
    s_str (&b, "two");
    s_str (&b, "unknown_key_is_ignored");
    msgpack_pack_nil (&b.packer);

    pf_bridge_msg_t msg;
    char err[128];
    const uint8_t *frame = (const uint8_t *)b.buffer.data;
    assert_int_equal (pf_bridge_msg_decode (&msg, frame, b.buffer.size, err, sizeof err), 0);
    assert_int_equal (msg.kind, PF_BRIDGE_MSG_REPLY);
    assert_int_equal (msg.id, 77);
    assert_true (msg.ok);
    const uint8_t expected[] = {0x92, 0x01, 0xa3, 't', 'w', 'o'};
    assert_int_equal (msg.result_size, sizeof expected);
    assert_memory_equal (msg.result, expected, sizeof expected);
    //  Not a copy: the bytes inside the frame.
    assert_true (msg.result > frame && msg.result < frame + b.buffer.size);
    pf_bridge_msg_reset (&msg);
    assert_null (msg.result);
    assert_int_equal (msg.kind, 0);
    msgpack_sbuffer_destroy (&b.buffer);
}

//  The result is found whatever the key order and key encoding (str8, bin),
//  past keys that merely end in "result", and its bytes are exactly those
//  msgpack-c writes for it, for a result of every type.
static void ok_reply_result_is_found_in_any_position_and_encoding (void **state)
{
    (void)state;
    builder_t value;
    s_begin (&value);
    s_pack_every_type (&value);
    for (int form = 0; form < 4; form++) {
        builder_t b;
        s_begin (&b);
        msgpack_pack_map (&b.packer, 5);
        s_str (&b, "xresult"); //  ends like the key: not it
        msgpack_pack_int (&b.packer, 1);
        if (form == 0) s_str (&b, "result");
        if (form == 1) s_bin (&b, "result");
        if (form == 2) {
            msgpack_sbuffer_write (&b.buffer, "\xd9\x06result", 8); //  str8, not canonical
        }
        if (form == 3) {
            msgpack_sbuffer_write (&b.buffer, "\xda\x00\x06result", 9); //  str16
        }
        msgpack_sbuffer_write (&b.buffer, value.buffer.data, value.buffer.size);
        s_str (&b, "ok");
        msgpack_pack_true (&b.packer);
        s_str (&b, "result_");
        msgpack_pack_int (&b.packer, 2);
        s_str (&b, "id");
        msgpack_pack_uint64 (&b.packer, 5);

        pf_bridge_msg_t msg;
        char err[128];
        int rc = pf_bridge_msg_decode (&msg, (const uint8_t *)b.buffer.data, b.buffer.size, err,
                                       sizeof err);
        if (rc != 0) fail_msg ("form %d: %s", form, err);
        assert_int_equal (msg.result_size, value.buffer.size);
        assert_memory_equal (msg.result, value.buffer.data, value.buffer.size);
        pf_bridge_msg_reset (&msg);
        msgpack_sbuffer_destroy (&b.buffer);
    }
    msgpack_sbuffer_destroy (&value.buffer);
}

//  Ids of every width, and a key given twice (the first counts), read the
//  same whichever way the frame is decoded.
static void ok_reply_ids_of_every_width_and_repeated_keys (void **state)
{
    (void)state;
    const uint64_t ids[] = {1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX,
                            (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    for (size_t index = 0; index < sizeof ids / sizeof ids[0]; index++) {
        builder_t b;
        s_begin (&b);
        msgpack_pack_map (&b.packer, 5);
        s_str (&b, "result");
        msgpack_pack_int (&b.packer, 1);
        s_str (&b, "id");
        msgpack_pack_uint64 (&b.packer, ids[index]);
        s_str (&b, "ok");
        msgpack_pack_true (&b.packer);
        s_str (&b, "id");
        msgpack_pack_uint64 (&b.packer, 5);
        s_str (&b, "result");
        msgpack_pack_int (&b.packer, 2);
        pf_bridge_msg_t msg;
        char err[128];
        assert_int_equal (pf_bridge_msg_decode (&msg, (const uint8_t *)b.buffer.data,
                                                b.buffer.size, err, sizeof err),
                          0);
        assert_true (msg.id == ids[index]);
        assert_true (msg.ok);
        assert_int_equal (msg.result_size, 1);
        assert_int_equal (msg.result[0], 0x01);
        pf_bridge_msg_reset (&msg);
        msgpack_sbuffer_destroy (&b.buffer);
    }
    //  ok: false first, then true: an error reply (without its error: a fault).
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 3);
    s_str (&b, "id");
    msgpack_pack_uint64 (&b.packer, 3);
    s_str (&b, "ok");
    msgpack_pack_false (&b.packer);
    s_str (&b, "ok");
    msgpack_pack_true (&b.packer);
    s_expect_fault (&b, "error reply without 'error'");
}

static void ok_reply_without_result_has_a_nil_result (void **state)
{
    (void)state;
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 2);
    s_str (&b, "id");
    msgpack_pack_uint64 (&b.packer, 3);
    s_str (&b, "ok");
    msgpack_pack_true (&b.packer);
    pf_bridge_msg_t msg;
    assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
    assert_int_equal (msg.result_size, 1);
    assert_int_equal (msg.result[0], 0xc0);
    pf_bridge_msg_reset (&msg);
}

static void s_pack_error_reply (builder_t *b, const char *code)
{
    s_begin (b);
    msgpack_pack_map (&b->packer, 3);
    s_str (b, "id");
    msgpack_pack_uint64 (&b->packer, 9);
    s_str (b, "ok");
    msgpack_pack_false (&b->packer);
    s_str (b, "error");
    msgpack_pack_map (&b->packer, code ? 4 : 3);
    if (code) {
        s_str (b, "code");
        s_str (b, code);
    }
    s_str (b, "type");
    s_str (b, "KeyError");
    s_str (b, "message");
    s_str (b, "no such program");
    s_str (b, "traceback");
    s_str (b, "Traceback (most recent call last): ...");
}

static void error_reply_carries_code_type_message_and_detail (void **state)
{
    (void)state;
    builder_t b;
    s_pack_error_reply (&b, "UNKNOWN_COMMAND");
    pf_bridge_msg_t msg;
    assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
    assert_int_equal (msg.kind, PF_BRIDGE_MSG_REPLY);
    assert_int_equal (msg.id, 9);
    assert_false (msg.ok);
    assert_int_equal (msg.code, PF_UNKNOWN_COMMAND);
    assert_string_equal (msg.error_type, "KeyError");
    assert_string_equal (msg.error_message, "no such program");
    assert_null (msg.result);
    msgpack_unpacked detail;
    s_unpack_whole (&detail, msg.detail, msg.detail_size);
    const msgpack_object *traceback = s_get (&detail.data, "traceback");
    assert_int_equal (traceback->type, MSGPACK_OBJECT_STR);
    assert_memory_equal (traceback->via.str.ptr, "Traceback", 9);
    msgpack_unpacked_destroy (&detail);
    pf_bridge_msg_reset (&msg);
}

static void error_code_missing_unknown_or_ok_reads_as_python_error (void **state)
{
    (void)state;
    const char *codes[] = {NULL, "NO_SUCH_CODE", "OK", "timeout"};
    for (int i = 0; i < 4; i++) {
        builder_t b;
        s_pack_error_reply (&b, codes[i]);
        pf_bridge_msg_t msg;
        assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
        assert_int_equal (msg.code, PF_PYTHON_ERROR);
        pf_bridge_msg_reset (&msg);
    }
}

static void error_without_message_still_has_a_message (void **state)
{
    (void)state;
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 3);
    s_str (&b, "id");
    msgpack_pack_uint64 (&b.packer, 1);
    s_str (&b, "ok");
    msgpack_pack_false (&b.packer);
    s_str (&b, "error");
    msgpack_pack_map (&b.packer, 0);
    pf_bridge_msg_t msg;
    assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
    assert_non_null (msg.error_message);
    assert_null (msg.error_type);
    assert_int_equal (msg.code, PF_PYTHON_ERROR);
    pf_bridge_msg_reset (&msg);
}

static void ready_event_carries_pid_and_version (void **state)
{
    (void)state;
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 5);
    s_str (&b, "id");
    msgpack_pack_uint64 (&b.packer, 0);
    s_str (&b, "event");
    s_str (&b, "ready");
    s_str (&b, "pid");
    msgpack_pack_uint32 (&b.packer, 4242);
    s_str (&b, "commands");
    msgpack_pack_array (&b.packer, 1);
    s_str (&b, "ping");
    s_str (&b, "version");
    s_str (&b, "0.1.0");
    pf_bridge_msg_t msg;
    assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
    assert_int_equal (msg.kind, PF_BRIDGE_MSG_READY);
    assert_int_equal (msg.pid, 4242);
    assert_string_equal (msg.version, "0.1.0");
    pf_bridge_msg_reset (&msg);
}

static void beat_while_idle_has_busy_false (void **state)
{
    (void)state;
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 4);
    s_str (&b, "event");
    s_str (&b, "beat");
    s_str (&b, "busy");
    msgpack_pack_nil (&b.packer);
    s_str (&b, "elapsed_ms");
    msgpack_pack_uint64 (&b.packer, 0);
    s_str (&b, "rss_kb");
    msgpack_pack_uint64 (&b.packer, 20480);
    pf_bridge_msg_t msg;
    assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
    assert_int_equal (msg.kind, PF_BRIDGE_MSG_BEAT);
    assert_false (msg.busy);
    assert_int_equal (msg.rss_kb, 20480);
    pf_bridge_msg_reset (&msg);
}

static void beat_while_busy_names_the_request_with_bin_keys_too (void **state)
{
    (void)state;
    builder_t b;
    s_begin (&b);
    msgpack_pack_map (&b.packer, 4);
    s_bin (&b, "event");
    s_bin (&b, "beat");
    s_bin (&b, "busy");
    msgpack_pack_uint64 (&b.packer, 42);
    s_bin (&b, "elapsed_ms");
    msgpack_pack_double (&b.packer, 1500.7);
    s_bin (&b, "rss_kb");
    msgpack_pack_uint64 (&b.packer, 1);
    pf_bridge_msg_t msg;
    assert_int_equal (s_decode (&b, &msg, NULL, 0), 0);
    assert_int_equal (msg.kind, PF_BRIDGE_MSG_BEAT);
    assert_true (msg.busy);
    assert_int_equal (msg.busy_id, 42);
    assert_int_equal (msg.elapsed_ms, 1500);
    pf_bridge_msg_reset (&msg);
}

//  --------------------------------------------------------------------------
//  Malformed frames: each one is a -1 with a reason

//  A string literal as (bytes, size), without its terminating NUL.
#define RAW(literal) literal, sizeof (literal) - 1

static void s_expect_raw_fault (const void *data, size_t size, const char *reason)
{
    builder_t b;
    s_begin (&b);
    msgpack_sbuffer_write (&b.buffer, data, size);
    s_expect_fault (&b, reason);
}

static void empty_frame_is_a_fault (void **state)
{
    (void)state;
    pf_bridge_msg_t msg;
    char err[64];
    assert_int_equal (pf_bridge_msg_decode (&msg, (const uint8_t *)"", 0, err, sizeof err), -1);
    assert_string_equal (err, "empty frame");
}

static void garbage_bytes_are_not_msgpack (void **state)
{
    (void)state;
    s_expect_raw_fault (RAW ("\xc1\xc1\xc1"), "not msgpack");
}

static void truncated_msgpack_is_a_fault (void **state)
{
    (void)state;
    //  A map of 3 entries holding only one.
    s_expect_raw_fault (RAW ("\x83\xa2id\x01"), "truncated");
    //  A str32 announcing 4 GiB.
    s_expect_raw_fault (RAW ("\x81\xa2id\xdb\xff\xff\xff\xff"), "truncated");
}

static void a_value_that_is_not_a_map_is_a_fault (void **state)
{
    (void)state;
    s_expect_raw_fault (RAW ("\x92\x01\x02"), "not a map");
    s_expect_raw_fault (RAW ("\xa5hello"), "not a map");
}

static void trailing_bytes_after_the_map_are_a_fault (void **state)
{
    (void)state;
    s_expect_raw_fault (RAW ("\x82\xa2id\x01\xa2ok\xc3\x00"), "trailing");
}

static void map_without_id_and_ok_or_event_is_a_fault (void **state)
{
    (void)state;
    s_expect_raw_fault (RAW ("\x81\xa2id\x01"), "neither");
    s_expect_raw_fault (RAW ("\x81\xa2ok\xc3"), "neither");
    s_expect_raw_fault (RAW ("\x80"), "neither");
}

static void reply_with_wrong_types_is_a_fault (void **state)
{
    (void)state;
    //  ok: 1 instead of a boolean
    s_expect_raw_fault (RAW ("\x82\xa2id\x01\xa2ok\x01"), "'ok'");
    //  id: -1
    s_expect_raw_fault (RAW ("\x82\xa2id\xff\xa2ok\xc3"), "'id'");
    //  id: "x"
    s_expect_raw_fault (RAW ("\x82\xa2id\xa1x\xa2ok\xc3"), "'id'");
    //  ok: false without error
    s_expect_raw_fault (RAW ("\x82\xa2id\x01\xa2ok\xc2"), "without 'error'");
    //  error: "boom" instead of a map
    s_expect_raw_fault (RAW ("\x83\xa2id\x01\xa2ok\xc2\xa5"
                             "error\xa4"
                             "boom"),
                        "not a map");
    //  error.code: 5 instead of a name
    s_expect_raw_fault (RAW ("\x83\xa2id\x01\xa2ok\xc2\xa5"
                             "error\x81\xa4"
                             "code\x05"),
                        "'code'");
    //  error.message: [] instead of a string
    s_expect_raw_fault (RAW ("\x83\xa2id\x01\xa2ok\xc2\xa5"
                             "error\x81\xa7"
                             "message\x90"),
                        "'message'");
}

static void events_with_wrong_types_are_faults (void **state)
{
    (void)state;
    s_expect_raw_fault (RAW ("\x81\xa5"
                             "event\x05"),
                        "'event'");
    s_expect_raw_fault (RAW ("\x81\xa5"
                             "event\xa4"
                             "boom"),
                        "unknown event 'boom'");
    s_expect_raw_fault (RAW ("\x82\xa5"
                             "event\xa4"
                             "beat\xa4"
                             "busy\xa1x"),
                        "'busy'");
    s_expect_raw_fault (RAW ("\x82\xa5"
                             "event\xa4"
                             "beat\xa6rss_kb\xff"),
                        "'rss_kb'");
    s_expect_raw_fault (RAW ("\x82\xa5"
                             "event\xa5"
                             "ready\xa3pid\xa1x"),
                        "'pid'");
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (request_decodes_back_to_id_cmd_args_session),
        cmocka_unit_test (request_copies_one_mebibyte_bin_args_verbatim),
        cmocka_unit_test (request_without_args_or_session_encodes_nil),
        cmocka_unit_test (request_with_deadline_and_releasable_carries_both_keys),
        cmocka_unit_test (args_are_valid_only_as_exactly_one_msgpack_object),
        cmocka_unit_test (ok_reply_carries_id_and_the_result_bytes),
        cmocka_unit_test (ok_reply_result_is_found_in_any_position_and_encoding),
        cmocka_unit_test (ok_reply_ids_of_every_width_and_repeated_keys),
        cmocka_unit_test (ok_reply_without_result_has_a_nil_result),
        cmocka_unit_test (error_reply_carries_code_type_message_and_detail),
        cmocka_unit_test (error_code_missing_unknown_or_ok_reads_as_python_error),
        cmocka_unit_test (error_without_message_still_has_a_message),
        cmocka_unit_test (ready_event_carries_pid_and_version),
        cmocka_unit_test (beat_while_idle_has_busy_false),
        cmocka_unit_test (beat_while_busy_names_the_request_with_bin_keys_too),
        cmocka_unit_test (empty_frame_is_a_fault),
        cmocka_unit_test (garbage_bytes_are_not_msgpack),
        cmocka_unit_test (truncated_msgpack_is_a_fault),
        cmocka_unit_test (a_value_that_is_not_a_map_is_a_fault),
        cmocka_unit_test (trailing_bytes_after_the_map_are_a_fault),
        cmocka_unit_test (map_without_id_and_ok_or_event_is_a_fault),
        cmocka_unit_test (reply_with_wrong_types_is_a_fault),
        cmocka_unit_test (events_with_wrong_types_are_faults),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
