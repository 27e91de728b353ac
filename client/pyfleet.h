/*  pyfleet.h — libpyfleet, the client library of pyfleet.

    A client talks the native client protocol (PFC1, docs/PROTOCOL.md) to one
    broker over a ZeroMQ DEALER socket, or over the broker's Unix stream
    socket on the same host (unix://PATH, pyfleet-broker --unix: the same
    guarantees, fewer thread hand-offs per request). It sends requests — service, command,
    msgpack arguments, optional session — and gets exactly one reply per
    request: a result (msgpack bytes) or a typed error (pf_error.h codes).

        pf_client_t *client = pf_client_new ("tcp://127.0.0.1:5555");
        pf_reply_t *reply = pf_call (client, "demo", "echo", args, args_size, NULL);
        if (pf_reply_ok (reply)) { char *json = pf_reply_body_json (reply); ... free (json); }
        else printf ("%s: %s\n", pf_reply_code_name (reply), pf_reply_message (reply));
        pf_reply_destroy (&reply);
        pf_client_destroy (&client);

    Guarantees:
    - Every request that pf_send accepts gets exactly one reply from pf_recv,
      and pf_call always returns a reply: if nothing arrives by the request's
      deadline plus PF_CLIENT_TIMEOUT_MARGIN_MS (the broker answers TIMEOUT
      itself at the deadline; the margin covers its latency) the library makes
      a TIMEOUT reply itself (pf_reply_local says so). Neither ever hangs on a
      dead or absent broker.
    - A reply that arrives for a request already answered (late, after a local
      timeout) is dropped.
    - Requests are never queued towards a dead connection: the socket has
      ZMQ_IMMEDIATE set, and requests that cannot go out at once (no broker
      connected yet, or the send queue is full) wait in the client's own
      backlog, in order, and are sent when the broker is reachable with the
      deadline that remains. A request still in the backlog at its deadline
      times out without ever being sent, so a broker that comes back never
      runs work the caller has given up on.

    - Retries (off by default, see pf_retry_t) happen only when they cannot
      run work twice by surprise: after BUSY (the broker refused the request
      at the door), or for requests flagged PF_CALL_IDEMPOTENT after
      WORKER_LOST, BRIDGE_CRASHED, SHUTTING_DOWN or a dropped broker
      connection. They use capped exponential backoff with jitter and stay
      within the request's one deadline.

    Threads: a pf_client_t is like a ZeroMQ socket: use it from one thread at a
    time (create one client per thread). Replies are independent objects and
    can be handed to any thread. */
#ifndef PYFLEET_H_INCLUDED
#define PYFLEET_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The error codes (PF_OK, PF_TIMEOUT, PF_PYTHON_ERROR...) and pf_error_name:
//  a small dependency-free header shared with every pyfleet layer.
#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _pf_client_t pf_client_t;
typedef struct _pf_reply_t pf_reply_t;

//  Request flags (pf_call_options_t.flags); same values as the wire flags.
#define PF_CALL_IDEMPOTENT    0x01u //  safe to run twice: re-queued if its worker dies
#define PF_CALL_SOFT_AFFINITY 0x02u //  session may move to another bridge (reply says rebound)
#define PF_CALL_BROADCAST     0x04u //  run on every bridge of the service

//  Default request timeout, and the extra time the client waits for the
//  broker's own TIMEOUT before it makes one locally.
#define PF_CLIENT_DEFAULT_TIMEOUT_MS 30000
#define PF_CLIENT_TIMEOUT_MARGIN_MS  500

//  Retry policy. attempts counts every send, the first included: 0 or 1
//  means never retry. Before attempt n (n >= 2) the client waits a random
//  time in [b/2, b] with b = min (cap_ms, base_ms * 2^(n-2)). A retry that
//  could not start before the request's deadline is not made: the caller gets
//  the error (BUSY...) instead. Zero base_ms/cap_ms take the defaults below.
typedef struct {
    uint32_t attempts;
    uint32_t base_ms;
    uint32_t cap_ms;
} pf_retry_t;

#define PF_RETRY_DEFAULT_BASE_MS 50
#define PF_RETRY_DEFAULT_CAP_MS  2000

//  Client options for pf_client_new_with. A NULL pointer or a zeroed struct
//  means: PF_CLIENT_DEFAULT_TIMEOUT_MS, no retries.
typedef struct {
    uint32_t timeout_ms; //  default request timeout; 0 = PF_CLIENT_DEFAULT_TIMEOUT_MS
    pf_retry_t retry;    //  retry policy; zeroed = never retry
} pf_client_options_t;

//  CurveZMQ keys for pf_client_new_keys, towards a broker started with
//  --curve-cert (docs/SECURITY.md). cert is this client's certificate, FILE
//  and FILE_secret as `pyfleet keygen FILE` writes them; broker_key the
//  broker's public key, 40 Z85 characters or its certificate file. A broker
//  that refuses the key, or a handshake that fails (no CurveZMQ on one
//  side), answers every request waiting for that connection UNAUTHORIZED.
//  (A struct of its own, so pf_client_options_t keeps its size.)
typedef struct {
    const char *cert;
    const char *broker_key;
} pf_client_keys_t;

//  Per-request options. A NULL options pointer, or a zeroed struct, means: no
//  session, the client's timeout, no flags.
typedef struct {
    const char *session; //  session id, 1..255 bytes; NULL or "" for none
    uint32_t timeout_ms; //  deadline from now; 0 = the client's timeout
    uint32_t flags;      //  PF_CALL_* bits
} pf_call_options_t;

//  ---------------------------------------------------------------------------
//  Client

//  Creates a client connected to a broker endpoint ("tcp://host:port",
//  "ipc:///path", or "unix:///path" for a broker's --unix socket). Connecting
//  is asynchronous: this succeeds even if no broker is up yet (over unix://
//  the client connects when it first sends, and tries again every 100 ms
//  while requests wait). Returns NULL if the endpoint is invalid or the socket cannot be
//  made.
pf_client_t *pf_client_new (const char *endpoint);

//  Same, with options (default timeout, retry policy); NULL options = defaults.
pf_client_t *pf_client_new_with (const char *endpoint, const pf_client_options_t *options);

//  Same, over CurveZMQ with keys (NULL keys: as pf_client_new_with). Keys are
//  not used over unix:// (the socket file's permissions decide who connects).
//  NULL also if a key or certificate cannot be read (pf_client_check_keys
//  says why).
pf_client_t *pf_client_new_keys (const char *endpoint, const pf_client_options_t *options,
                                 const pf_client_keys_t *keys);

//  Checks keys as pf_client_new_keys will read them: 0, or -1 with why (a
//  certificate that is missing or has no secret key, a bad broker key, one
//  of the two missing).
int pf_client_check_keys (const pf_client_keys_t *keys, char *why, size_t whylen);

//  Destroys the client; outstanding requests are forgotten (pending sends are
//  discarded: the socket does not linger). Nulls *self_p; safe on NULL.
void pf_client_destroy (pf_client_t **self_p);

//  Sets the default request timeout in ms (default 30 000, must be > 0). It is
//  sent to the broker as the request's deadline and bounds the local wait.
void pf_client_set_timeout (pf_client_t *self, uint32_t timeout_ms);

//  Returns the default request timeout in ms.
uint32_t pf_client_timeout (pf_client_t *self);

//  Batching (off by default): pf_send queues the request and returns at
//  once, and the queued requests go to the broker together, as one message,
//  when the client next waits (pf_recv, pf_call, pf_broadcast). For senders
//  that send several requests between two waits, as a pipelined load does:
//  one message instead of one per request. Turning it off sends the queue.
void pf_client_set_batching (pf_client_t *self, bool batching);

//  Sets the retry policy (NULL = never retry); applies to requests sent from
//  now on. pf_client_retry returns the policy in force (defaults filled in).
void pf_client_set_retry (pf_client_t *self, const pf_retry_t *retry);
pf_retry_t pf_client_retry (pf_client_t *self);

//  Number of requests sent with pf_send that have not yet been returned by
//  pf_recv (including those whose reply is waiting to be picked up).
size_t pf_client_outstanding (pf_client_t *self);

//  Why the last pf_send or pf_cancel failed ("" if none).
const char *pf_client_error (pf_client_t *self);

//  ---------------------------------------------------------------------------
//  Requests

//  Synchronous call: sends one request and waits for its reply. args are
//  msgpack bytes (NULL/0 sends an empty body). Always returns a reply, never
//  NULL: invalid arguments (empty or too long service/command/session, body
//  too large) give a local BAD_REQUEST/TOO_LARGE, no answer by the deadline
//  a local TIMEOUT, an interrupt (SIGINT) a local CANCELLED. While it waits,
//  replies to requests sent with pf_send are kept for pf_recv.
pf_reply_t *pf_call (pf_client_t *self, const char *service, const char *command, const void *args,
                     size_t args_size, const pf_call_options_t *options);

//  pf_call and pf_send with arguments given as JSON text (NULL means {}),
//  converted to msgpack as docs/CLIENT.md says. Invalid JSON gives a local
//  BAD_REQUEST reply (pf_call_json) or -1 (pf_send_json; see pf_client_error)
//  and sends nothing.
pf_reply_t *pf_call_json (pf_client_t *self, const char *service, const char *command,
                          const char *json_args, const pf_call_options_t *options);
int pf_send_json (pf_client_t *self, const char *service, const char *command,
                  const char *json_args, const pf_call_options_t *options,
                  uint64_t *request_id_p);

//  Broadcast: pf_call with PF_CALL_BROADCAST, so the command runs on every
//  bridge of the service (setup such as loading a model). The reply is the
//  broker's answer for the whole broadcast.
pf_reply_t *pf_broadcast (pf_client_t *self, const char *service, const char *command,
                          const void *args, size_t args_size, const pf_call_options_t *options);

//  Asynchronous send: queues one request and returns at once, setting
//  *request_id_p (may be NULL) to its id. Ids are 64-bit, consecutive in send
//  order from a random start per client. Returns 0, or -1 if the arguments
//  are invalid (see pf_client_error); then no reply will come.
int pf_send (pf_client_t *self, const char *service, const char *command, const void *args,
             size_t args_size, const pf_call_options_t *options, uint64_t *request_id_p);

//  Returns the next reply to any request sent with pf_send, in arrival order,
//  waiting at most timeout_ms (0 = do not wait, -1 = until one comes). Returns
//  NULL on timeout, on an interrupt, or at once if no request is outstanding
//  (nothing could ever arrive).
pf_reply_t *pf_recv (pf_client_t *self, int timeout_ms);

//  Asks the broker to cancel an outstanding request (best effort). The request
//  still gets exactly one reply: CANCELLED if the cancel won, else its result.
//  A request that has not left the client yet is cancelled at once. Returns 0,
//  or -1 if the id is not outstanding.
int pf_cancel (pf_client_t *self, uint64_t request_id);

//  ---------------------------------------------------------------------------
//  Replies

//  Destroys a reply; nulls *self_p; safe on NULL.
void pf_reply_destroy (pf_reply_t **self_p);

//  The id of the request this reply answers.
uint64_t pf_reply_request_id (pf_reply_t *self);

//  True for a result, false for an error.
bool pf_reply_ok (pf_reply_t *self);

//  The error code (a pf_error_t value); PF_OK (0) for a result.
int pf_reply_code (pf_reply_t *self);

//  The error code's name ("TIMEOUT"); "OK" for a result.
const char *pf_reply_code_name (pf_reply_t *self);

//  The error message; "" for a result. Never NULL.
const char *pf_reply_message (pf_reply_t *self);

//  The error detail: msgpack bytes, for PYTHON_ERROR the map {type, message,
//  traceback}. Sets *size_p; NULL (size 0) when there is none.
const void *pf_reply_detail (pf_reply_t *self, size_t *size_p);

//  The Python exception type ("ValueError") and formatted traceback from the
//  detail map; NULL when absent.
const char *pf_reply_error_type (pf_reply_t *self);
const char *pf_reply_traceback (pf_reply_t *self);

//  The result: msgpack bytes. Sets *size_p (may be NULL); NULL (size 0) for an
//  error or an empty body.
const void *pf_reply_body (pf_reply_t *self, size_t *size_p);

//  The result as compact JSON text (see pf_json.h for the mapping); "null"
//  for an empty body. Returns a string the caller frees, or NULL for an error
//  reply or a body that is not valid msgpack.
char *pf_reply_body_json (pf_reply_t *self);

//  True if the request's session was rebound to another bridge (soft
//  affinity): any state the session held there is gone.
bool pf_reply_rebound (pf_reply_t *self);

//  How many times the request was sent (more than 1 after retries; 0 if it
//  never left the client).
uint32_t pf_reply_attempts (pf_reply_t *self);

//  True if the client library made this reply itself (a local TIMEOUT,
//  CANCELLED or BAD_REQUEST) rather than receiving it from the broker.
bool pf_reply_local (pf_reply_t *self);

//  ---------------------------------------------------------------------------
//  Sessions: a handle naming one session of one service. Every call made
//  through it carries the session id, so the broker runs them one at a time,
//  in order, on the bridge that holds the session's state. The handle is a
//  small local object: it borrows the client (destroy it first) and creating
//  it sends nothing; the session exists on a bridge from its first request.

typedef struct _pf_session_t pf_session_t;

//  Opens a session handle for service. session_id NULL or "" makes a new
//  unique id ("s-" and 32 hex digits); else 1..255 bytes. Returns NULL on
//  invalid arguments or out of memory.
pf_session_t *pf_session_new (pf_client_t *client, const char *service, const char *session_id);

//  Destroys the handle only: the session's state stays on its bridge until
//  pf_session_end or the broker's idle expiry. Nulls *self_p; safe on NULL.
void pf_session_destroy (pf_session_t **self_p);

//  The session id.
const char *pf_session_id (pf_session_t *self);

//  pf_call / pf_send in the session (options->session is ignored).
pf_reply_t *pf_session_call (pf_session_t *self, const char *command, const void *args,
                             size_t args_size, const pf_call_options_t *options);
int pf_session_send (pf_session_t *self, const char *command, const void *args,
                     size_t args_size, const pf_call_options_t *options, uint64_t *request_id_p);

//  Ends the session: calls the built-in `session_end` command in it, so the
//  bridge runs its session_end hooks and frees the state. Returns that reply
//  (a result {"ended": true|false}, or an error); never NULL except out of
//  memory. The handle stays valid; a later call starts the session afresh.
pf_reply_t *pf_session_end (pf_session_t *self, uint32_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
