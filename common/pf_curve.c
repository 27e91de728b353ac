/*  pf_curve — see pf_curve.h. */
#include "pf_curve.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#define Z85_ZERO_KEY "0000000000000000000000000000000000000000"

//  PATH_secret, where zcert_save puts a certificate's secret key.
static int secret_path (const char *path, char secret[PATH_MAX], char *why, size_t whylen)
{
    if (snprintf (secret, PATH_MAX, "%s_secret", path) < PATH_MAX) return 0;
    snprintf (why, whylen, "path too long");
    return -1;
}

//  The ZPL text of a certificate file. Our own read: zconfig_load leaks on
//  a file that is not ZPL (CZMQ 4.2), and bad input must cost nothing.
static zconfig_t *read_zpl (const char *path, char *why, size_t whylen)
{
    FILE *file = fopen (path, "r");
    char text[16384];
    size_t size = file ? fread (text, 1, sizeof text - 1, file) : 0;
    bool whole = file && !ferror (file) && feof (file);
    if (file) fclose (file);
    text[size] = 0;
    zconfig_t *root = whole && strlen (text) == size ? zconfig_str_load (text) : NULL;
    if (!root)
        snprintf (why, whylen, "%s is not a CurveZMQ certificate (%s)", path,
                  !file ? strerror (errno) : whole ? "not ZPL text" : "larger than 16 KiB");
    return root;
}

//  A Z85 key at path in root into binary; false if absent or malformed.
static bool get_key (zconfig_t *root, const char *path, uint8_t binary[32])
{
    const char *text = zconfig_get (root, path, NULL);
    return text && strlen (text) == PF_CURVE_KEY_LEN && zmq_z85_decode (binary, text);
}

//  Reads PATH_secret if there is one, else PATH (as zcert_load does): the
//  public key, the secret one if the file holds it (checked against the
//  public one), the metadata.
static zcert_t *cert_load (const char *path, char *why, size_t whylen)
{
    char secret[PATH_MAX];
    if (secret_path (path, secret, why, whylen) != 0) return NULL;
    const char *file = zsys_file_exists (secret) ? secret : path;
    if (!zsys_file_exists (file)) {
        snprintf (why, whylen, "no certificate at %s (make one with `pyfleet keygen %s`)", path,
                  path);
        return NULL;
    }
    zconfig_t *root = read_zpl (file, why, whylen);
    if (!root) return NULL;
    uint8_t public_key[32], secret_key[32] = {0};
    zcert_t *cert = NULL;
    if (!get_key (root, "curve/public-key", public_key))
        snprintf (why, whylen, "%s is not a CurveZMQ certificate (no valid curve/public-key)",
                  file);
    else if (zconfig_get (root, "curve/secret-key", NULL) &&
             !get_key (root, "curve/secret-key", secret_key))
        snprintf (why, whylen, "%s: curve/secret-key is not a Z85 key", file);
    else if (!(cert = zcert_new_from (public_key, secret_key)))
        snprintf (why, whylen, "out of memory");
    else if (!streq (zcert_secret_txt (cert), Z85_ZERO_KEY)) {
        char derived[PF_CURVE_KEY_LEN + 1];
        if (zmq_curve_public (derived, zcert_secret_txt (cert)) != 0 ||
            !streq (derived, zcert_public_txt (cert))) {
            snprintf (why, whylen, "%s: the secret key is not the public key's", file);
            zcert_destroy (&cert);
        }
    }
    zconfig_t *metadata = zconfig_locate (root, "metadata");
    for (zconfig_t *item = metadata ? zconfig_child (metadata) : NULL; cert && item;
         item = zconfig_next (item)) {
        const char *value = zconfig_value (item);
        zcert_set_meta (cert, zconfig_name (item), "%s", value ? value : "");
    }
    zconfig_destroy (&root);
    return cert;
}

zcert_t *pf_curve_cert_load (const char *path, char *why, size_t whylen)
{
    zcert_t *cert = cert_load (path, why, whylen);
    if (cert && streq (zcert_secret_txt (cert), Z85_ZERO_KEY)) {
        snprintf (why, whylen, "%s has no secret key (it is read from %s_secret)", path, path);
        zcert_destroy (&cert);
    }
    return cert;
}

int pf_curve_public_key (const char *text, char key[PF_CURVE_KEY_LEN + 1], char *why,
                         size_t whylen)
{
    uint8_t binary[32];
    if (!zsys_file_exists (text)) {
        if (strlen (text) == PF_CURVE_KEY_LEN && zmq_z85_decode (binary, text)) {
            memcpy (key, text, PF_CURVE_KEY_LEN + 1);
            return 0;
        }
        snprintf (why, whylen, "'%s' is neither a Z85 key (40 characters) nor a certificate file",
                  text);
        return -1;
    }
    zcert_t *cert = cert_load (text, why, whylen);
    if (!cert) return -1;
    memcpy (key, zcert_public_txt (cert), PF_CURVE_KEY_LEN + 1);
    zcert_destroy (&cert);
    return 0;
}

void pf_curve_client_apply (zsock_t *socket, zcert_t *cert, const char *server_key)
{
    zcert_apply (cert, socket);
    zsock_set_curve_serverkey (socket, server_key);
}

int pf_curve_keygen (const char *path, const char *name, char *why, size_t whylen)
{
    char secret[PATH_MAX];
    if (secret_path (path, secret, why, whylen) != 0) return -1;
    if (zsys_file_exists (path) || zsys_file_exists (secret)) {
        snprintf (why, whylen, "%s or %s exists already; not replaced", path, secret);
        return -1;
    }
    zcert_t *cert = zcert_new ();
    if (!cert) {
        snprintf (why, whylen, "cannot make keys (is libzmq built with CURVE?)");
        return -1;
    }
    if (name) zcert_set_meta (cert, "name", "%s", name);
    //  The secret file first, private (zcert_save_secret creates it 0600).
    const char *failed = NULL;
    if (zcert_save_secret (cert, secret) != 0 || chmod (secret, 0600) != 0)
        failed = secret;
    else if (zcert_save_public (cert, path) != 0)
        failed = path;
    if (failed) {
        snprintf (why, whylen, "cannot write %s: %s", failed, strerror (errno));
        unlink (secret);
    }
    zcert_destroy (&cert);
    return failed ? -1 : 0;
}
