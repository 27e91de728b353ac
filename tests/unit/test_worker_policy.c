/*  Specification of the recycling policy and the setup replay list (pure logic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include "pf_policy.h"
#include "pf_setup.h"

static void jitter_stays_within_the_percentage (void **state)
{
    (void) state;
    assert_int_equal (pf_policy_jitter (50, 10, 0.0), 45);
    assert_int_equal (pf_policy_jitter (50, 10, 0.5), 50);
    assert_int_equal (pf_policy_jitter (50, 10, 1.0), 55);
    assert_int_equal (pf_policy_jitter (0, 10, 0.9), 0);   //  no limit stays none
    assert_int_equal (pf_policy_jitter (1, 50, 0.0), 1);   //  never below 1
    assert_int_equal (pf_policy_jitter (100, 90, 0.0), 50); //  jitter capped at 50 %
}

static void due_names_the_limit_that_was_reached (void **state)
{
    (void) state;
    pf_policy_t policy = {.max_requests = 50, .max_age_ms = 1000, .max_rss_kb = 1024, .jitter_pct = 0};
    pf_policy_limits_t limits;
    pf_policy_limits (&policy, 0.3, 0.7, &limits);
    char reason[128];
    assert_int_equal (pf_policy_due (&limits, 49, 999, 1024, reason, sizeof reason), 0);
    assert_int_equal (pf_policy_due (&limits, 50, 0, -1, reason, sizeof reason), 1);
    assert_string_equal (reason, "max requests 50 reached");
    assert_int_equal (pf_policy_due (&limits, 0, 1000, -1, reason, sizeof reason), 1);
    assert_string_equal (reason, "max age 1000 ms reached");
    assert_int_equal (pf_policy_due (&limits, 0, 0, 2048, reason, sizeof reason), 1);
    assert_string_equal (reason, "RSS 2048 KiB above max 1024 KiB");
    assert_int_equal (pf_policy_due (&limits, 0, 0, -1, reason, sizeof reason), 0);
}

static void replacement_starts_at_the_prespawn_percentage_of_the_request_limit (void **state)
{
    (void) state;
    pf_policy_limits_t limits = {.max_requests = 50};
    //  No timing known yet: only the percentage (80 % of 50 = 40).
    assert_int_equal (pf_policy_prepare (&limits, 39, 0, 0, 0, 80), 0);
    assert_int_equal (pf_policy_prepare (&limits, 40, 0, 0, 0, 80), 1);
    assert_int_equal (pf_policy_prepare (&limits, 0, 0, 0, 0, 0), 1);   //  0 %: at once
    assert_int_equal (pf_policy_prepare (&limits, 49, 0, 0, 0, 100), 0); //  100 %: at the limit
    pf_policy_limits_t none = {0};
    assert_int_equal (pf_policy_prepare (&none, 1000000, 0, 5000, 200, 80), 0);
}

static void replacement_starts_when_the_limit_is_a_startup_time_away (void **state)
{
    (void) state;
    pf_policy_limits_t limits = {.max_requests = 50};
    //  2 ms a request, 140 ms lead: 70 requests away is near enough.
    assert_int_equal (pf_policy_prepare (&limits, 1, 0, 2000, 140, 80), 1);
    //  1000 requests at 2 ms are 2 s away: not yet.
    pf_policy_limits_t many = {.max_requests = 1000};
    assert_int_equal (pf_policy_prepare (&many, 10, 0, 2000, 140, 80), 0);
    assert_int_equal (pf_policy_prepare (&many, 930, 0, 2000, 140, 80), 1);
    //  Age is exact: start within the lead of the age limit, not before.
    pf_policy_limits_t age = {.max_age_ms = 3600000};
    assert_int_equal (pf_policy_prepare (&age, 0, 3600000 - 141, 0, 140, 80), 0);
    assert_int_equal (pf_policy_prepare (&age, 0, 3600000 - 140, 0, 140, 80), 1);
    //  The RSS limit cannot be foreseen.
    pf_policy_limits_t rss = {.max_rss_kb = 1024};
    assert_int_equal (pf_policy_prepare (&rss, 1000, 1000000, 2000, 140, 0), 0);
}

static void json_args_become_msgpack (void **state)
{
    (void) state;
    char err[200];
    size_t size;
    uint8_t *data = pf_setup_json_to_msgpack (
        "{\"a\": [1, -2, 2.5, true, false, null], \"s\": \"x\\u00e9\\n\"}", &size, err, sizeof err);
    assert_non_null (data);
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    assert_int_equal (msgpack_unpack_next (&result, (const char *) data, size, &offset),
                      MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (offset, size);
    msgpack_object map = result.data;
    assert_int_equal (map.type, MSGPACK_OBJECT_MAP);
    assert_int_equal (map.via.map.size, 2);
    msgpack_object array = map.via.map.ptr[0].val;
    assert_int_equal (array.via.array.size, 6);
    assert_int_equal (array.via.array.ptr[1].via.i64, -2);
    msgpack_object text = map.via.map.ptr[1].val;
    assert_int_equal (text.via.str.size, 4);
    assert_memory_equal (text.via.str.ptr, "x\xc3\xa9\n", 4);
    msgpack_unpacked_destroy (&result);
    free (data);
}

static void bad_json_is_refused_with_a_reason (void **state)
{
    (void) state;
    const char *bad[] = {"{", "[1,]", "{\"a\" 1}", "01", "\"\\ud800\"", "tru", "1 2", "", NULL};
    char err[200];
    size_t size;
    for (int i = 0; bad[i]; i++) {
        err[0] = 0;
        assert_null (pf_setup_json_to_msgpack (bad[i], &size, err, sizeof err));
        assert_true (strlen (err) > 0);
    }
    char deep[200];
    memset (deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    assert_null (pf_setup_json_to_msgpack (deep, &size, err, sizeof err));
}

static void setup_list_keeps_one_copy_of_a_repeated_call_in_order (void **state)
{
    (void) state;
    pf_setup_t *setup = pf_setup_new ();
    char err[200];
    assert_int_equal (pf_setup_add_text (setup, "configure {\"lm\": 1}", err, sizeof err), 0);
    assert_int_equal (pf_setup_add_text (setup, "warm", err, sizeof err), 0);
    assert_int_equal (pf_setup_add_text (setup, "configure {\"lm\": 1}", err, sizeof err), 0);
    assert_int_equal (pf_setup_count (setup), 2);
    const uint8_t *args;
    size_t args_size;
    assert_string_equal (pf_setup_get (setup, 0, &args, &args_size), "warm");
    assert_int_equal (args_size, 0);
    assert_string_equal (pf_setup_get (setup, 1, &args, &args_size), "configure");
    assert_null (pf_setup_get (setup, 2, &args, &args_size));
    assert_int_equal (pf_setup_add_text (setup, "   ", err, sizeof err), -1);
    assert_int_equal (pf_setup_add_text (setup, "x {bad", err, sizeof err), -1);
    assert_non_null (strstr (err, "not JSON"));
    pf_setup_destroy (&setup);
    pf_setup_destroy (&setup);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (jitter_stays_within_the_percentage),
        cmocka_unit_test (due_names_the_limit_that_was_reached),
        cmocka_unit_test (replacement_starts_at_the_prespawn_percentage_of_the_request_limit),
        cmocka_unit_test (replacement_starts_when_the_limit_is_a_startup_time_away),
        cmocka_unit_test (json_args_become_msgpack),
        cmocka_unit_test (bad_json_is_refused_with_a_reason),
        cmocka_unit_test (setup_list_keeps_one_copy_of_a_repeated_call_in_order),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
