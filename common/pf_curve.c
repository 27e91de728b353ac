/*  pf_curve — see pf_curve.h. */
#include "pf_curve.h"
#include <errno.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#define Z85_ZERO_KEY "0000000000000000000000000000000000000000"

//  zcert_load reads PATH_secret if there is one, else PATH; either is ZPL.
static zcert_t *cert_load (const char *path, char *why, size_t whylen)
{
    char secret[PATH_MAX];
    if (snprintf (secret, sizeof secret, "%s_secret", path) >= (int) sizeof secret) {
        snprintf (why, whylen, "path too long");
        return NULL;
    }
    if (!zsys_file_exists (path) && !zsys_file_exists (secret)) {
        snprintf (why, whylen, "no certificate at %s (make one with `pyfleet keygen %s`)", path,
                  path);
        return NULL;
    }
    zcert_t *cert = zcert_load (path);
    if (!cert || streq (zcert_public_txt (cert), Z85_ZERO_KEY)) {
        snprintf (why, whylen, "%s is not a CurveZMQ certificate (no curve/public-key)", path);
        zcert_destroy (&cert);
    }
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
    if (strlen (text) == PF_CURVE_KEY_LEN && !zsys_file_exists (text)) {
        if (!zmq_z85_decode (binary, text)) {
            snprintf (why, whylen, "'%s' is neither a Z85 key nor a certificate file", text);
            return -1;
        }
        memcpy (key, text, PF_CURVE_KEY_LEN + 1);
        return 0;
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
    if (snprintf (secret, sizeof secret, "%s_secret", path) >= (int) sizeof secret) {
        snprintf (why, whylen, "path too long");
        return -1;
    }
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
