/*  pf_zap — the broker's ZAP handler (ZeroMQ RFC 27) for CurveZMQ.

    A thread that answers the authentication requests libzmq makes for
    every CURVE handshake on a socket of this process: the client's public
    key is admitted if a certificate with that key is in the allow-list
    directory (read again whenever the directory changes, so a key is added
    or removed without a restart), or any key with no directory. Refusals
    are logged with the key and the peer's address (once a minute per key,
    with a count of those not logged: a refused client retries every 100 ms). An admitted peer's messages
    carry its Z85 public key as their User-Id, which the broker uses as
    the owner of the sessions it makes. */
#ifndef PF_ZAP_H_INCLUDED
#define PF_ZAP_H_INCLUDED

#include <czmq.h>

//  Starts the handler; allow_dir NULL admits any key. NULL if it cannot
//  start (the ZAP endpoint is taken, out of memory), with errno set.
zactor_t *pf_zap_start (const char *allow_dir);

//  Also logs the handshakes on socket that fail before the handler is
//  asked: a peer without CurveZMQ keys, or with another broker's key (once
//  a minute per kind; a connection dropped mid-handshake is not logged).
//  Call once, from socket's thread. 0, or -1.
int pf_zap_watch (zactor_t *zap, zsock_t *socket);

#endif
