/*  test_curve — CurveZMQ keys (common/pf_curve): a certificate made by keygen
    loads with its secret key from either file; a peer's key is read from 40
    Z85 characters or a certificate file; everything else (a missing file,
    one that is not a certificate, a public certificate where a secret is
    needed, a bad Z85 text, an existing file to keygen) is refused with a
    reason, never crashes and never replaces a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "pf_curve.h"

#define WHYLEN 512

typedef struct {
    char dir[64];
    char cert[128], secret[128];
} files_t;

static int files_setup (void **state)
{
    files_t *files = calloc (1, sizeof *files);
    strcpy (files->dir, "/tmp/pf-test-curve-XXXXXX");
    assert_non_null (mkdtemp (files->dir));
    snprintf (files->cert, sizeof files->cert, "%s/one", files->dir);
    snprintf (files->secret, sizeof files->secret, "%s/one_secret", files->dir);
    *state = files;
    return 0;
}

static int files_teardown (void **state)
{
    files_t *files = *state;
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", files->dir);
    assert_int_equal (system (command), 0);
    free (files);
    return 0;
}

static void write_file (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    assert_non_null (file);
    fputs (text, file);
    fclose (file);
}

static void test_keygen_then_load_from_either_file (void **state)
{
    files_t *files = *state;
    char why[WHYLEN] = "";
    assert_int_equal (pf_curve_keygen (files->cert, "unit", why, sizeof why), 0);
    struct stat info;
    assert_int_equal (stat (files->secret, &info), 0);
    assert_int_equal (info.st_mode & 0777, 0600);

    zcert_t *cert = pf_curve_cert_load (files->cert, why, sizeof why);
    assert_non_null (cert);
    assert_string_equal (zcert_meta (cert, "name"), "unit");
    zcert_t *same = pf_curve_cert_load (files->secret, why, sizeof why);
    assert_non_null (same);
    assert_true (zcert_eq (cert, same));

    char key[PF_CURVE_KEY_LEN + 1];
    assert_int_equal (pf_curve_public_key (files->cert, key, why, sizeof why), 0);
    assert_string_equal (key, zcert_public_txt (cert));
    char copy[PF_CURVE_KEY_LEN + 1];
    assert_int_equal (pf_curve_public_key (key, copy, why, sizeof why), 0);
    assert_string_equal (copy, key);
    zcert_destroy (&cert);
    zcert_destroy (&same);
}

static void test_keygen_never_replaces_a_file (void **state)
{
    files_t *files = *state;
    char why[WHYLEN] = "";
    write_file (files->secret, "precious\n");
    assert_int_equal (pf_curve_keygen (files->cert, NULL, why, sizeof why), -1);
    assert_non_null (strstr (why, "exists already"));
    FILE *file = fopen (files->secret, "r");
    char text[32] = "";
    assert_non_null (fgets (text, sizeof text, file));
    fclose (file);
    assert_string_equal (text, "precious\n");
    assert_int_equal (access (files->cert, F_OK), -1);
}

static void test_a_public_certificate_has_no_secret (void **state)
{
    files_t *files = *state;
    char why[WHYLEN] = "";
    assert_int_equal (pf_curve_keygen (files->cert, NULL, why, sizeof why), 0);
    assert_int_equal (unlink (files->secret), 0);
    assert_null (pf_curve_cert_load (files->cert, why, sizeof why));
    assert_non_null (strstr (why, "has no secret key"));
    //  As a peer's key it is all that is needed.
    char key[PF_CURVE_KEY_LEN + 1];
    assert_int_equal (pf_curve_public_key (files->cert, key, why, sizeof why), 0);
    assert_int_equal (strlen (key), PF_CURVE_KEY_LEN);
}

static void test_what_is_not_a_certificate_or_key_is_refused (void **state)
{
    files_t *files = *state;
    char why[WHYLEN] = "";
    char key[PF_CURVE_KEY_LEN + 1];
    //  Missing.
    assert_null (pf_curve_cert_load (files->cert, why, sizeof why));
    assert_non_null (strstr (why, "no certificate at"));
    //  Not ZPL, ZPL without a key, a key of the wrong length.
    const char *texts[] = {"\x01\x02 not text at all\n", "metadata\n    name = \"x\"\n",
                           "curve\n    public-key = \"short\"\n    secret-key = \"short\"\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        write_file (files->cert, texts[i]);
        why[0] = 0;
        assert_null (pf_curve_cert_load (files->cert, why, sizeof why));
        assert_true (why[0]);
        assert_int_equal (pf_curve_public_key (files->cert, key, why, sizeof why), -1);
    }
    //  A directory, and texts that are no Z85 key.
    assert_int_equal (pf_curve_public_key (files->dir, key, why, sizeof why), -1);
    const char *keys[] = {"", "short", "0123456789012345678901234567890123456789~",
                          "012345678901234567890123456789012345678~"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_int_equal (pf_curve_public_key (keys[i], key, why, sizeof why), -1);
        assert_non_null (strstr (why, "neither a Z85 key"));
    }
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_keygen_then_load_from_either_file, files_setup,
                                         files_teardown),
        cmocka_unit_test_setup_teardown (test_keygen_never_replaces_a_file, files_setup,
                                         files_teardown),
        cmocka_unit_test_setup_teardown (test_a_public_certificate_has_no_secret, files_setup,
                                         files_teardown),
        cmocka_unit_test_setup_teardown (test_what_is_not_a_certificate_or_key_is_refused,
                                         files_setup, files_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
