/*  pf_table: the broker's open-addressing session table. */
#include "pf_table.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static bool match (const void *item, const void *key)
{
    return strcmp (item, key) == 0;
}

static uint64_t hash_of (const char *key)
{
    return pf_table_hash (key, strlen (key));
}

static void finds_what_was_inserted_and_nothing_else (void **state)
{
    (void) state;
    pf_table_t *table = pf_table_new (match);
    char *keys[5000];
    for (int i = 0; i < 5000; i++) {
        keys[i] = malloc (16);
        snprintf (keys[i], 16, "key-%d", i);
        assert_int_equal (pf_table_insert (table, hash_of (keys[i]), keys[i]), 0);
    }
    assert_int_equal (pf_table_size (table), 5000);
    for (int i = 0; i < 5000; i++)
        assert_ptr_equal (pf_table_find (table, hash_of (keys[i]), keys[i]), keys[i]);
    assert_null (pf_table_find (table, hash_of ("key-5000"), "key-5000"));
    for (int i = 0; i < 5000; i++)
        free (keys[i]);
    pf_table_destroy (&table);
    assert_null (table);
    pf_table_destroy (&table);
}

//  Every key hashes to one of four values: long probe chains wrapping
//  around the end of the table, then removals from their middle.
static uint64_t colliding (int i)
{
    return 1021 + (uint64_t) (i % 4);
}

static void removal_keeps_every_other_entry_reachable (void **state)
{
    (void) state;
    pf_table_t *table = pf_table_new (match);
    char keys[300][16];
    for (int i = 0; i < 300; i++) {
        snprintf (keys[i], 16, "k%d", i);
        assert_int_equal (pf_table_insert (table, colliding (i), keys[i]), 0);
    }
    for (int i = 0; i < 300; i += 3)
        assert_ptr_equal (pf_table_remove (table, colliding (i), keys[i]), keys[i]);
    assert_null (pf_table_remove (table, colliding (0), keys[0]));
    for (int i = 0; i < 300; i++) {
        void *found = pf_table_find (table, colliding (i), keys[i]);
        if (i % 3 == 0)
            assert_null (found);
        else
            assert_ptr_equal (found, keys[i]);
    }
    assert_int_equal (pf_table_size (table), 200);
    pf_table_destroy (&table);
}

static void random_operations_agree_with_a_plain_array (void **state)
{
    (void) state;
    pf_table_t *table = pf_table_new (match);
    enum { KEYS = 3000 };
    static char keys[KEYS][16];
    static bool present[KEYS];
    size_t expected = 0;
    srand (7);
    for (int i = 0; i < KEYS; i++)
        snprintf (keys[i], 16, "s%d", i);
    for (int step = 0; step < 200000; step++) {
        int i = rand () % KEYS;
        uint64_t hash = hash_of (keys[i]);
        if (present[i]) {
            assert_ptr_equal (pf_table_remove (table, hash, keys[i]), keys[i]);
            present[i] = false;
            expected--;
        }
        else {
            assert_null (pf_table_find (table, hash, keys[i]));
            assert_int_equal (pf_table_insert (table, hash, keys[i]), 0);
            present[i] = true;
            expected++;
        }
    }
    for (int i = 0; i < KEYS; i++)
        assert_true ((pf_table_find (table, hash_of (keys[i]), keys[i]) != NULL) == present[i]);
    assert_int_equal (pf_table_size (table), expected);
    pf_table_destroy (&table);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (finds_what_was_inserted_and_nothing_else),
        cmocka_unit_test (removal_keeps_every_other_entry_reachable),
        cmocka_unit_test (random_operations_agree_with_a_plain_array),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
