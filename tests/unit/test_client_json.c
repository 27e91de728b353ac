/*  test_client_json — the JSON <-> msgpack mapping of pf_json (client/pf_json.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pf_json.h"

#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

//  JSON -> msgpack -> JSON; asserts both steps work and returns the text.
static char *round_trip (const char *json)
{
    void *data;
    size_t size;
    char err[256];
    int rc = pf_json_to_msgpack (json, strlen (json), &data, &size, err, sizeof err);
    if (rc != 0) fail_msg ("'%s' did not convert: %s", json, err);
    char *back = pf_msgpack_to_json (data, size, err, sizeof err);
    if (!back) fail_msg ("'%s' did not convert back: %s", json, err);
    free (data);
    return back;
}

static void assert_round_trip (const char *json)
{
    char *back = round_trip (json);
    assert_string_equal (back, json);
    free (back);
}

//  Packs with msgpack-c through a callback, returns JSON of the result.
typedef void (packer_fn) (msgpack_packer *packer);
static char *json_of (packer_fn *pack, char *err, size_t errlen)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    pack (&packer);
    char *json = pf_msgpack_to_json (buffer.data, buffer.size, err, errlen);
    msgpack_sbuffer_destroy (&buffer);
    return json;
}

static void assert_packs_to (packer_fn *pack, const char *expected)
{
    char err[256] = "";
    char *json = json_of (pack, err, sizeof err);
    if (!json) fail_msg ("conversion failed: %s", err);
    assert_string_equal (json, expected);
    free (json);
}

static void assert_bytes_to_json_fails (const void *bytes, size_t size)
{
    char err[256] = "";
    char *json = pf_msgpack_to_json (bytes, size, err, sizeof err);
    if (json) fail_msg ("garbage converted to '%s'", json);
    assert_true (strlen (err) > 0);
}

static void assert_json_refused (const char *json)
{
    void *data = (void *)1;
    size_t size = 99;
    char err[256] = "";
    assert_int_equal (pf_json_to_msgpack (json, strlen (json), &data, &size, err, sizeof err), -1);
    assert_null (data);
    assert_true (strlen (err) > 0);
}

//  ---------------------------------------------------------------------------

static void scalars_round_trip (void **state)
{
    (void)state;
    const char *scalars[] = {"null",
                             "true",
                             "false",
                             "0",
                             "1",
                             "-1",
                             "127",
                             "128",
                             "-32",
                             "-33",
                             "255",
                             "65536",
                             "-2147483649",
                             "4294967296",
                             "9223372036854775807",
                             "-9223372036854775808",
                             "1.5",
                             "-0.25",
                             "0.1",
                             "1e+300",
                             "\"\"",
                             "\"hello\""};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        assert_round_trip (scalars[i]);
}

static void integers_pack_in_their_smallest_encoding (void **state)
{
    (void)state;
    void *data;
    size_t size;
    assert_int_equal (pf_json_to_msgpack ("300", 3, &data, &size, NULL, 0), 0);
    assert_int_equal (size, 3);
    assert_memory_equal (data, "\xcd\x01\x2c", 3);
    free (data);
    assert_int_equal (pf_json_to_msgpack ("-1", 2, &data, &size, NULL, 0), 0);
    assert_int_equal (size, 1);
    assert_memory_equal (data, "\xff", 1);
    free (data);
}

static void reals_stay_reals (void **state)
{
    (void)state;
    //  A real with an integral value must not come back as an integer.
    char *back = round_trip ("2.0");
    assert_string_equal (back, "2.0");
    free (back);
}

static void containers_nest_and_keep_key_order (void **state)
{
    (void)state;
    assert_round_trip ("[]");
    assert_round_trip ("{}");
    assert_round_trip (
        "{\"b\":1,\"a\":[1,{\"c\":[]},\"x\",null],\"d\":{\"e\":{\"f\":[true,false]}}}");
    assert_round_trip ("[[[[[[[[[[1]]]]]]]]]]");
}

static void pack_uint64_max (msgpack_packer *packer)
{
    msgpack_pack_uint64 (packer, UINT64_MAX);
}

static void uint64_above_int64_prints_exactly (void **state)
{
    (void)state;
    assert_packs_to (pack_uint64_max, "18446744073709551615");
}

static void json_integer_beyond_int64_is_refused (void **state)
{
    (void)state;
    assert_json_refused ("18446744073709551615");
}

static void unicode_and_escapes_round_trip (void **state)
{
    (void)state;
    assert_round_trip ("\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"");
    assert_round_trip ("\"quote \\\" backslash \\\\ newline \\n tab \\t ctl \\u0001\"");
    //  Escaped non-ASCII comes back as plain UTF-8.
    char *back = round_trip ("\"\\u00e9\\ud83d\\ude00\"");
    assert_string_equal (back, "\"\xc3\xa9\xf0\x9f\x98\x80\"");
    free (back);
}

static void nul_inside_a_string_survives (void **state)
{
    (void)state;
    void *data;
    size_t size;
    assert_int_equal (pf_json_to_msgpack ("\"a\\u0000b\"", 10, &data, &size, NULL, 0), 0);
    assert_int_equal (size, 4);
    assert_memory_equal (data,
                         "\xa3"
                         "a\0b",
                         4);
    free (data);
    assert_round_trip ("\"a\\u0000b\"");
}

static void invalid_utf8_becomes_replacement_character (void **state)
{
    (void)state;
    const char bytes[] = "\xa4"
                         "a\xff\xc3"
                         "b"; //  str of 4: 'a', bad, truncated, 'b'
    char *json = pf_msgpack_to_json (bytes, 5, NULL, 0);
    assert_non_null (json);
    assert_string_equal (json, "\"a\xef\xbf\xbd\xef\xbf\xbd"
                               "b\"");
    free (json);
    //  Overlong encodings and surrogates are invalid too.
    const char overlong[] = "\xa2\xc0\xaf";
    json = pf_msgpack_to_json (overlong, 3, NULL, 0);
    assert_string_equal (json, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    free (json);
    const char surrogate[] = "\xa3\xed\xa0\x80";
    json = pf_msgpack_to_json (surrogate, 4, NULL, 0);
    assert_string_equal (json, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    free (json);
}

static void pack_bin (msgpack_packer *packer)
{
    msgpack_pack_bin_with_body (packer, "\x00\x01\x02\xff", 4);
}

static void bin_prints_as_tagged_base64_and_converts_back (void **state)
{
    (void)state;
    assert_packs_to (pack_bin, "{\"$bin\":\"AAEC/w==\"}");
    void *data;
    size_t size;
    const char *json = "{\"$bin\":\"AAEC/w==\"}";
    assert_int_equal (pf_json_to_msgpack (json, strlen (json), &data, &size, NULL, 0), 0);
    assert_int_equal (size, 6);
    assert_memory_equal (data, "\xc4\x04\x00\x01\x02\xff", 6);
    free (data);
    assert_round_trip ("{\"$bin\":\"\"}");
    assert_round_trip ("{\"$bin\":\"YQ==\"}");
    assert_round_trip ("{\"$bin\":\"YWI=\"}");
    assert_round_trip ("{\"$bin\":\"YWJj\"}");
}

static void pack_ext (msgpack_packer *packer)
{
    msgpack_pack_ext_with_body (packer, "abc", 3, 5);
}

static void pack_fixext (msgpack_packer *packer)
{
    msgpack_pack_ext_with_body (packer, "abcd", 4, -1);
}

static void ext_prints_as_tagged_object_and_converts_back (void **state)
{
    (void)state;
    assert_packs_to (pack_ext, "{\"$ext\":5,\"$data\":\"YWJj\"}");
    assert_packs_to (pack_fixext, "{\"$ext\":-1,\"$data\":\"YWJjZA==\"}");
    assert_round_trip ("{\"$ext\":5,\"$data\":\"YWJj\"}");
}

static void lookalike_tags_stay_plain_maps (void **state)
{
    (void)state;
    //  Not base64, an extra key, an ext type out of range: ordinary objects.
    assert_round_trip ("{\"$bin\":\"not base64!\"}");
    assert_round_trip ("{\"$bin\":\"YQ==\",\"other\":1}");
    assert_round_trip ("{\"$ext\":300,\"$data\":\"YQ==\"}");
    assert_round_trip ("{\"$bin\":1}");
}

static void pack_odd_keys (msgpack_packer *packer)
{
    msgpack_pack_map (packer, 4);
    msgpack_pack_int (packer, 1);
    msgpack_pack_str_with_body (packer, "a", 1);
    msgpack_pack_nil (packer);
    msgpack_pack_int (packer, 2);
    msgpack_pack_array (packer, 2);
    msgpack_pack_int (packer, 1);
    msgpack_pack_str_with_body (packer, "x", 1);
    msgpack_pack_int (packer, 3);
    msgpack_pack_true (packer);
    msgpack_pack_map (packer, 0);
}

static void non_string_map_keys_are_stringified (void **state)
{
    (void)state;
    assert_packs_to (pack_odd_keys, "{\"1\":\"a\",\"null\":2,\"[1,\\\"x\\\"]\":3,\"true\":{}}");
}

static void pack_floats (msgpack_packer *packer)
{
    msgpack_pack_array (packer, 5);
    msgpack_pack_float (packer, 0.1f);
    msgpack_pack_float (packer, 3.0f);
    msgpack_pack_double (packer, NAN);
    msgpack_pack_double (packer, INFINITY);
    msgpack_pack_double (packer, 1e-7);
}

static void floats_print_shortest_and_non_finite_as_null (void **state)
{
    (void)state;
    assert_packs_to (pack_floats, "[0.1,3.0,null,null,1e-07]");
}

static void invalid_json_is_refused_with_a_reason (void **state)
{
    (void)state;
    assert_json_refused ("");
    assert_json_refused ("{");
    assert_json_refused ("[1,]");
    assert_json_refused ("1 2");
    assert_json_refused ("{'a': 1}");
    assert_json_refused ("{\"a\":1,\"a\":2}");
    assert_json_refused ("\"\xff\"");
    assert_json_refused ("nul");
    char err[256];
    void *data;
    size_t size;
    pf_json_to_msgpack ("{\"a\":", 5, &data, &size, err, sizeof err);
    assert_non_null (strstr (err, "line 1"));
}

static void garbage_msgpack_is_refused_with_a_reason (void **state)
{
    (void)state;
    assert_bytes_to_json_fails ("", 0);
    assert_bytes_to_json_fails ("\xc1", 1); //  never-used byte
    assert_bytes_to_json_fails ("\xa5"
                                "ab",
                                3);                         //  str shorter than announced
    assert_bytes_to_json_fails ("\xdd\xff\xff\xff\xff", 5); //  array of 4 G elements
    assert_bytes_to_json_fails ("\xdf\xff\xff\xff\xff\x01", 6);
    assert_bytes_to_json_fails ("\xdb\xff\xff\xff\xff", 5); //  str of 4 GiB
    assert_bytes_to_json_fails ("\x01\x01", 2);             //  trailing byte
    assert_bytes_to_json_fails ("\x92\x01", 2);             //  array missing an element
    assert_bytes_to_json_fails ("\x81\x01", 2);             //  map missing a value
    assert_bytes_to_json_fails ("\xcf\x01\x02", 3);         //  truncated uint64
    assert_bytes_to_json_fails ("\xc7\x05", 2);             //  ext without type
    assert_bytes_to_json_fails ("\x81\xc1\x01", 3);         //  bad key
}

static void random_bytes_never_crash (void **state)
{
    (void)state;
    unsigned int seed = 12345;
    unsigned char bytes[64];
    int converted = 0;
    for (int round = 0; round < 20000; round++) {
        size_t size = 1 + (size_t)(rand_r (&seed) % (int)sizeof bytes);
        for (size_t i = 0; i < size; i++)
            bytes[i] = (unsigned char)rand_r (&seed);
        char err[128];
        char *json = pf_msgpack_to_json (bytes, size, err, sizeof err);
        if (json) {
            //  Whatever converts must be valid JSON that converts back.
            void *data;
            size_t data_size;
            if (pf_json_to_msgpack (json, strlen (json), &data, &data_size, err, sizeof err) == 0)
                free (data);
            else if (!strstr (err, "too big")) //  uint64 above int64
                fail_msg ("output '%s' is not JSON: %s", json, err);
            converted++;
            free (json);
        }
    }
    assert_true (converted > 0);
}

static void nesting_is_bounded_both_ways (void **state)
{
    (void)state;
    size_t depth = PF_JSON_MAX_DEPTH + 10;
    char *bytes = malloc (depth + 1);
    memset (bytes, 0x91, depth); //  fixarray of 1, nested
    bytes[depth] = 0x01;
    assert_bytes_to_json_fails (bytes, depth + 1);
    //  Within the bound it works, far deeper than msgpack-c's 32 levels.
    char *json = pf_msgpack_to_json (bytes + depth - 100, 101, NULL, 0);
    assert_non_null (json);
    assert_int_equal (strlen (json), 201);
    free (json);
    free (bytes);

    char *text = malloc (2 * depth + 2);
    memset (text, '[', depth);
    memset (text + depth, ']', depth);
    text[2 * depth] = 0;
    assert_json_refused (text);
    free (text);
}

static void a_one_mebibyte_string_round_trips (void **state)
{
    (void)state;
    size_t size = 1024 * 1024;
    char *json = malloc (size + 3);
    json[0] = '"';
    for (size_t i = 0; i < size; i++)
        json[1 + i] = (char)('a' + i % 26);
    json[size + 1] = '"';
    json[size + 2] = 0;
    void *data;
    size_t data_size;
    assert_int_equal (pf_json_to_msgpack (json, size + 2, &data, &data_size, NULL, 0), 0);
    assert_int_equal (data_size, size + 5); //  str32 header
    char *back = pf_msgpack_to_json (data, data_size, NULL, 0);
    assert_non_null (back);
    assert_string_equal (back, json);
    free (back);
    free (data);
    free (json);
}

static void quote_escapes_and_repairs (void **state)
{
    (void)state;
    char *quoted = pf_json_quote ("a\"b\n\x7f\xff", 6);
    assert_string_equal (quoted, "\"a\\\"b\\n\x7f\xef\xbf\xbd\"");
    free (quoted);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (scalars_round_trip),
        cmocka_unit_test (integers_pack_in_their_smallest_encoding),
        cmocka_unit_test (reals_stay_reals),
        cmocka_unit_test (containers_nest_and_keep_key_order),
        cmocka_unit_test (uint64_above_int64_prints_exactly),
        cmocka_unit_test (json_integer_beyond_int64_is_refused),
        cmocka_unit_test (unicode_and_escapes_round_trip),
        cmocka_unit_test (nul_inside_a_string_survives),
        cmocka_unit_test (invalid_utf8_becomes_replacement_character),
        cmocka_unit_test (bin_prints_as_tagged_base64_and_converts_back),
        cmocka_unit_test (ext_prints_as_tagged_object_and_converts_back),
        cmocka_unit_test (lookalike_tags_stay_plain_maps),
        cmocka_unit_test (non_string_map_keys_are_stringified),
        cmocka_unit_test (floats_print_shortest_and_non_finite_as_null),
        cmocka_unit_test (invalid_json_is_refused_with_a_reason),
        cmocka_unit_test (garbage_msgpack_is_refused_with_a_reason),
        cmocka_unit_test (random_bytes_never_crash),
        cmocka_unit_test (nesting_is_bounded_both_ways),
        cmocka_unit_test (a_one_mebibyte_string_round_trips),
        cmocka_unit_test (quote_escapes_and_repairs),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
