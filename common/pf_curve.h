/*  pf_curve — CurveZMQ keys for the broker's ZeroMQ endpoint (DESIGN §8).

    A certificate is the pair of files CZMQ's zcert_save writes (and
    `pyfleet keygen PATH` makes): PATH holds the public key, PATH_secret
    (mode 0600) both keys. A peer's public key is given either as its 40
    Z85 characters or as the path of its (public) certificate. The broker
    is the CURVE server; agents and clients are CURVE clients that must know
    its public key, and the broker admits only the public keys it is told
    to (broker/pf_zap.h). Every function that reads a file or a key
    says what is wrong in why instead of failing later at the handshake. */
#ifndef PF_CURVE_H_INCLUDED
#define PF_CURVE_H_INCLUDED

#include <czmq.h>

#define PF_CURVE_KEY_LEN 40 //  Z85 characters of a 32-byte key

//  Loads the certificate at PATH with its secret key (PATH_secret, or PATH
//  itself if it holds the secret). NULL with why if it is missing, is not a
//  certificate or has no secret key.
zcert_t *pf_curve_cert_load (const char *path, char *why, size_t whylen);

//  Copies the Z85 public key TEXT names (40 Z85 characters, or a
//  certificate file) into key; 0, or -1 with why.
int pf_curve_public_key (const char *text, char key[PF_CURVE_KEY_LEN + 1], char *why,
                         size_t whylen);

//  Makes socket a CURVE client of the server whose public key is given, as
//  cert. Call before connecting.
void pf_curve_client_apply (zsock_t *socket, zcert_t *cert, const char *server_key);

//  Writes a new certificate to PATH and PATH_secret (0600), with the
//  metadata name = NAME if NAME is not NULL. 0, or -1 with why (an existing
//  file is never replaced).
int pf_curve_keygen (const char *path, const char *name, char *why, size_t whylen);

#endif
