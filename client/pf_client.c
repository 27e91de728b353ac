/*  pf_client — libpyfleet: the client side of PFC1 (see pyfleet.h).

    One DEALER socket to the broker. Every request the client has not yet
    answered lives in three places:
      - a hash by request id, to match replies (and drop stale ones);
      - a min-heap by expiry (deadline + margin), so the next local TIMEOUT is
        found in O(1) and removed in O(log n) whatever the mix of timeouts;
      - while it has not left the process, the backlog (FIFO) of encoded
        messages waiting for the socket to accept them.
    Replies to pf_send requests that pf_call reads while it waits for its own
    go to a ready list that pf_recv drains first.

    Why ZMQ_IMMEDIATE + our own backlog instead of letting libzmq queue: with
    IMMEDIATE off, libzmq queues messages to a peer that is not (or no longer)
    connected and delivers them whenever it comes back, long after the caller
    has had its local TIMEOUT; the broker would then run work nobody waits
    for. Our backlog sends each request only to a live connection and with the
    deadline that remains, and drops it unsent when that deadline passes.
    Sends never block: a full send queue (SNDHWM) also just leaves requests in
    the backlog. */
#include "pyfleet.h"
#include "pf_json.h"
#include "pf_batch.h"
#include "pf_curve.h"
#include "pf_proto.h"
#include "pf_stream.h"

#include <czmq.h>
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

_Static_assert(PF_CALL_IDEMPOTENT == PF_FLAG_IDEMPOTENT, "public flag matches wire flag");
_Static_assert(PF_CALL_SOFT_AFFINITY == PF_FLAG_SOFT, "public flag matches wire flag");
_Static_assert(PF_CALL_BROADCAST == PF_FLAG_BROADCAST, "public flag matches wire flag");

#define PF_CALL_ALL_FLAGS (PF_CALL_IDEMPOTENT | PF_CALL_SOFT_AFFINITY | PF_CALL_BROADCAST)

//  High-water marks: large enough for 10 000+ requests in flight per client
//  with room to spare, still bounded so a stuck peer cannot eat all memory.
#define CLIENT_HWM 100000

//  Over unix://, how often a client without a connection tries to connect
//  while it has requests to send.
#define STREAM_RETRY_MS 100

typedef struct {
    uint64_t id;
    uint32_t flags;       //  PF_CALL_* bits of the request
    uint32_t attempts;    //  times it has been handed to the socket
    int64_t deadline;     //  zclock_mono () ms when the broker gives up
    int64_t retry_at;     //  zclock_mono () ms of the next attempt, while waiting
    size_t heap_index;    //  position in the expiry heap
    size_t retry_index;   //  position in the retry heap, while waiting
    bool waiting;         //  in the retry heap
    pf_msg_t *msg;        //  the REQUEST while it may be sent (again), else NULL
    bool unsent;          //  in the backlog (msg is then set)
    void *backlog_handle; //  its zlistx handle while unsent
} request_t;

//  A min-heap of requests, by deadline (expiry) or by retry time.
typedef struct {
    request_t **items;
    size_t size;
    size_t capacity;
    bool by_retry;
} heap_t;

struct _pf_client_t {
    zsock_t *dealer;
    zsock_t *monitor;   //  PAIR receiving the dealer's disconnect events
    char *stream_path;  //  a unix:// endpoint's path (then no dealer), else NULL
    pf_stream_t stream; //  its connection; fd -1 while there is none
    int64_t connect_at; //  zclock_mono () ms of the next attempt to connect
    int connect_errno;  //  why the last attempt failed, 0 once connected
    bool curve;         //  CurveZMQ keys given
    bool handshaken;    //  ... and a handshake with the broker has succeeded
    uint32_t timeout_ms;
    pf_retry_t retry;
    uint64_t next_id;
    uint64_t random;    //  xorshift64 state for backoff jitter
    zhashx_t *requests; //  id -> request_t, owns them
    heap_t expiry;      //  every outstanding request, by deadline
    heap_t retries;     //  requests waiting to be sent again, by retry time
    zlistx_t *backlog;  //  request_t * waiting to be sent, in order
    zlistx_t *ready;    //  pf_reply_t * waiting for pf_recv, owns them
    bool batching;      //  pf_send queues; the backlog goes out when we wait
    pf_batch_t batch;   //  reused for the backlog's BATCH
    char error[256];
};

struct _pf_reply_t {
    uint64_t request_id;
    uint32_t attempts;
    int code;
    bool rebound;
    bool local;
    char *message;
    zframe_t *body;
    zframe_t *detail;
    char *error_type;
    char *traceback;
};

//  ---------------------------------------------------------------------------
//  Replies

static pf_reply_t *reply_new (uint64_t request_id, int code, const char *message)
{
    pf_reply_t *self = calloc (1, sizeof *self);
    if (!self) return NULL;
    self->request_id = request_id;
    self->code = code;
    self->message = strdup (message ? message : "");
    if (!self->message) {
        free (self);
        return NULL;
    }
    return self;
}

static pf_reply_t *reply_new_local (uint64_t request_id, int code, const char *message)
{
    pf_reply_t *self = reply_new (request_id, code, message);
    if (self) self->local = true;
    return self;
}

void pf_reply_destroy (pf_reply_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_reply_t *self = *self_p;
    free (self->message);
    zframe_destroy (&self->body);
    zframe_destroy (&self->detail);
    free (self->error_type);
    free (self->traceback);
    free (self);
    *self_p = NULL;
}

//  Copy of a msgpack str, or NULL if the object is not a str.
static char *msgpack_strdup (const msgpack_object *object)
{
    if (object->type != MSGPACK_OBJECT_STR) return NULL;
    return strndup (object->via.str.ptr, object->via.str.size);
}

//  Picks type, traceback (and message, if the frame had none) out of the
//  detail map. A detail that is not such a map is kept as bytes, unread.
static void reply_read_detail (pf_reply_t *self)
{
    if (!self->detail || zframe_size (self->detail) == 0) return;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (
        &unpacked, (const char *)zframe_data (self->detail), zframe_size (self->detail), &offset);
    if (rc == MSGPACK_UNPACK_SUCCESS && unpacked.data.type == MSGPACK_OBJECT_MAP) {
        msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            msgpack_object *key = &map->ptr[i].key;
            msgpack_object *value = &map->ptr[i].val;
            if (key->type != MSGPACK_OBJECT_STR) continue;
            const char *name = key->via.str.ptr;
            size_t size = key->via.str.size;
            if (size == 4 && memcmp (name, "type", 4) == 0 && !self->error_type)
                self->error_type = msgpack_strdup (value);
            else if (size == 9 && memcmp (name, "traceback", 9) == 0 && !self->traceback)
                self->traceback = msgpack_strdup (value);
            else if (size == 7 && memcmp (name, "message", 7) == 0 && !self->message[0]) {
                char *message = msgpack_strdup (value);
                if (message) {
                    free (self->message);
                    self->message = message;
                }
            }
        }
    }
    msgpack_unpacked_destroy (&unpacked);
}

//  Builds a reply from a decoded REPLY or ERROR, taking its frames.
static pf_reply_t *reply_from_msg (pf_msg_t *msg)
{
    bool is_error = msg->command == PF_C_ERROR;
    int code = is_error ? msg->code : PF_OK;
    //  An ERROR that says OK is a broken peer: keep it an error.
    if (is_error && code == PF_OK) code = PF_INTERNAL;
    pf_reply_t *self = reply_new (msg->request_id, code, is_error ? msg->message : "");
    if (!self) return NULL;
    if (is_error) {
        self->detail = msg->detail;
        msg->detail = NULL;
        reply_read_detail (self);
    } else {
        self->body = msg->body;
        msg->body = NULL;
        self->rebound = (msg->flags & PF_REPLY_REBOUND) != 0;
    }
    return self;
}

uint64_t pf_reply_request_id (pf_reply_t *self)
{
    return self->request_id;
}

bool pf_reply_ok (pf_reply_t *self)
{
    return self->code == PF_OK;
}

int pf_reply_code (pf_reply_t *self)
{
    return self->code;
}

const char *pf_reply_code_name (pf_reply_t *self)
{
    return pf_error_name (self->code);
}

const char *pf_reply_message (pf_reply_t *self)
{
    return self->message;
}

static const void *frame_bytes (zframe_t *frame, size_t *size_p)
{
    size_t size = frame ? zframe_size (frame) : 0;
    if (size_p) *size_p = size;
    return size ? zframe_data (frame) : NULL;
}

const void *pf_reply_detail (pf_reply_t *self, size_t *size_p)
{
    return frame_bytes (self->detail, size_p);
}

const char *pf_reply_error_type (pf_reply_t *self)
{
    return self->error_type;
}

const char *pf_reply_traceback (pf_reply_t *self)
{
    return self->traceback;
}

const void *pf_reply_body (pf_reply_t *self, size_t *size_p)
{
    return frame_bytes (self->body, size_p);
}

char *pf_reply_body_json (pf_reply_t *self)
{
    if (self->code != PF_OK) return NULL;
    size_t size;
    const void *body = pf_reply_body (self, &size);
    if (!body) return strdup ("null");
    char err[128];
    return pf_msgpack_to_json (body, size, err, sizeof err);
}

bool pf_reply_rebound (pf_reply_t *self)
{
    return self->rebound;
}

bool pf_reply_local (pf_reply_t *self)
{
    return self->local;
}

uint32_t pf_reply_attempts (pf_reply_t *self)
{
    return self->attempts;
}

//  ---------------------------------------------------------------------------
//  The heaps: expiry (every outstanding request) and retries (those waiting
//  for their backoff to end). Each request records its index in each heap so
//  removal is O(log n).

static int64_t heap_key (heap_t *heap, request_t *request)
{
    return heap->by_retry ? request->retry_at : request->deadline;
}

static bool heap_less (heap_t *heap, request_t *a, request_t *b)
{
    int64_t x = heap_key (heap, a), y = heap_key (heap, b);
    return x < y || (x == y && a->id < b->id);
}

static void heap_place (heap_t *heap, size_t index, request_t *request)
{
    heap->items[index] = request;
    if (heap->by_retry)
        request->retry_index = index;
    else
        request->heap_index = index;
}

static size_t heap_index_of (heap_t *heap, request_t *request)
{
    return heap->by_retry ? request->retry_index : request->heap_index;
}

static void heap_sift_up (heap_t *heap, size_t index)
{
    request_t *request = heap->items[index];
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (!heap_less (heap, request, heap->items[parent])) break;
        heap_place (heap, index, heap->items[parent]);
        index = parent;
    }
    heap_place (heap, index, request);
}

static void heap_sift_down (heap_t *heap, size_t index)
{
    request_t *request = heap->items[index];
    while (true) {
        size_t child = 2 * index + 1;
        if (child >= heap->size) break;
        if (child + 1 < heap->size && heap_less (heap, heap->items[child + 1], heap->items[child]))
            child++;
        if (!heap_less (heap, heap->items[child], request)) break;
        heap_place (heap, index, heap->items[child]);
        index = child;
    }
    heap_place (heap, index, request);
}

static int heap_push (heap_t *heap, request_t *request)
{
    if (heap->size == heap->capacity) {
        size_t capacity = heap->capacity ? heap->capacity * 2 : 1024;
        request_t **items = realloc (heap->items, capacity * sizeof *items);
        if (!items) return -1;
        heap->items = items;
        heap->capacity = capacity;
    }
    heap->items[heap->size] = request;
    heap_sift_up (heap, heap->size++);
    return 0;
}

static void heap_remove (heap_t *heap, request_t *request)
{
    size_t index = heap_index_of (heap, request);
    request_t *last = heap->items[--heap->size];
    if (index == heap->size) return;
    heap_place (heap, index, last);
    heap_sift_up (heap, index);
    heap_sift_down (heap, heap_index_of (heap, last));
}

static request_t *heap_top (heap_t *heap)
{
    return heap->size ? heap->items[0] : NULL;
}

//  ---------------------------------------------------------------------------
//  The request table

static size_t id_hash (const void *key)
{
    uint64_t id = *(const uint64_t *)key;
    //  Ids are consecutive: mix the bits (splitmix64 finalizer).
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return (size_t)id;
}

static int id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static request_t *request_find (pf_client_t *self, uint64_t id)
{
    return zhashx_lookup (self->requests, &id);
}

//  Frees the request's REQUEST message: it will not be sent again.
static void request_drop_msg (request_t *request)
{
    if (request->msg) pf_msg_reset (request->msg);
    free (request->msg);
    request->msg = NULL;
}

//  Removes a request from every structure and frees it.
static void request_forget (pf_client_t *self, request_t *request)
{
    heap_remove (&self->expiry, request);
    if (request->waiting) heap_remove (&self->retries, request);
    if (request->backlog_handle) zlistx_delete (self->backlog, request->backlog_handle);
    request_drop_msg (request);
    zhashx_delete (self->requests, &request->id);
    free (request);
}

//  ---------------------------------------------------------------------------
//  Socket I/O

static void connection_lost (pf_client_t *self);

//  Over unix://: true if there is a connection, making one if it is time to
//  try. Like a DEALER with ZMQ_IMMEDIATE, the client queues nothing towards
//  a broker it has not reached: requests wait in the backlog meanwhile.
static bool stream_ready (pf_client_t *self)
{
    if (self->stream.fd >= 0) return true;
    int64_t now = zclock_mono ();
    if (now < self->connect_at) return false;
    int fd = pf_stream_connect (self->stream_path);
    if (fd < 0) {
        self->connect_errno = errno;
        self->connect_at = now + STREAM_RETRY_MS;
        return false;
    }
    self->connect_errno = 0;
    pf_stream_init (&self->stream, fd, 0);
    return true;
}

//  The unix:// connection broke or the broker closed it.
static void stream_lost (pf_client_t *self)
{
    pf_stream_close (&self->stream);
    self->connect_at = 0;
    connection_lost (self);
}

//  Writes what the unix:// connection has queued, as far as it takes it.
static void stream_flush (pf_client_t *self)
{
    if (self->stream.fd >= 0 && pf_stream_flush (&self->stream) < 0) stream_lost (self);
}

//  Sends one message without blocking (PF_MSG_KEEP in flags keeps its body
//  in msg). Returns 0 if it went out whole, -1 if the socket cannot take it
//  now (no live connection, or queue full): libzmq takes a multipart message
//  whole once its first frame is in, so nothing went out then. Over unix://
//  the message is queued on the connection (msg unchanged) and goes out at
//  the next stream_flush.
static int send_now (pf_client_t *self, pf_msg_t *msg, int flags)
{
    if (self->stream_path)
        return stream_ready (self) ? pf_stream_put (&self->stream, msg) : -1;
    return pf_msg_send (msg, zsock_resolve (self->dealer), NULL, flags | ZMQ_DONTWAIT);
}

//  True if the client may send requests more than once.
static bool retry_enabled (pf_client_t *self)
{
    return self->retry.attempts > 1;
}

//  Sends what the socket takes from the backlog, in order. A request whose
//  deadline has passed is dropped unsent; it times out from the expiry heap.
//  With retries on, the encoded message is kept for a later attempt.
//  The backlog request is on its way (or past its deadline, dropped).
static void backlog_done (pf_client_t *self, request_t *request, bool sent)
{
    if (sent) request->attempts++;
    zlistx_delete (self->backlog, request->backlog_handle);
    request->backlog_handle = NULL;
    request->unsent = false;
    if (!sent || !retry_enabled (self)) request_drop_msg (request);
}

//  Writes the time left until the request's deadline into its message;
//  false if none is left (it is then dropped unsent).
static bool stamp_remaining (request_t *request, int64_t now)
{
    int64_t remaining = request->deadline - now;
    if (remaining <= 0) return false;
    request->msg->timeout_ms = (uint32_t)remaining;
    return true;
}

//  Sends the first requests of the backlog as one BATCH (PROTOCOL.md 4.6)
//  if two or more of them fit one. Returns how many went, 0 if none did (the
//  socket is full, or fewer than two fit: they go one by one).
static size_t send_batch (pf_client_t *self)
{
    pf_batch_clear (&self->batch);
    int64_t now = zclock_mono ();
    for (request_t *request = zlistx_first (self->backlog); request;
         request = zlistx_next (self->backlog)) {
        if (self->batch.count == PF_BATCH_MAX_MESSAGES || !stamp_remaining (request, now) ||
            pf_batch_add (&self->batch, request->msg) != 0)
            break;
    }
    size_t count = self->batch.count;
    if (count < 2) return 0;
    if (self->stream_path ? !stream_ready (self) || pf_stream_put_batch (&self->stream, &self->batch)
                          : pf_batch_send (&self->batch, self->dealer, NULL) != 0)
        return 0;
    for (size_t index = 0; index < count; index++)
        backlog_done (self, zlistx_first (self->backlog), true);
    return count;
}

static void flush_backlog (pf_client_t *self)
{
    request_t *request;
    while ((request = zlistx_first (self->backlog))) {
        if (self->batching && zlistx_size (self->backlog) > 1 && send_batch (self)) continue;
        bool sent = stamp_remaining (request, zclock_mono ());
        if (sent && send_now (self, request->msg, retry_enabled (self) ? PF_MSG_KEEP : 0) != 0)
            break;
        backlog_done (self, request, sent);
    }
    stream_flush (self);
}

//  Next pseudo-random number (xorshift64): jitter only, not security.
static uint64_t next_random (pf_client_t *self)
{
    uint64_t x = self->random;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->random = x;
    return x;
}

//  The wait before attempt number `attempt` (2 = the first retry): capped
//  exponential backoff with "equal jitter", uniform in [b/2, b], so clients
//  that failed together do not all come back in the same millisecond.
static int64_t backoff_ms (pf_client_t *self, uint32_t attempt)
{
    uint64_t backoff = self->retry.base_ms ? self->retry.base_ms : 1;
    for (uint32_t i = 2; i < attempt && backoff < self->retry.cap_ms; i++)
        backoff *= 2;
    if (self->retry.cap_ms && backoff > self->retry.cap_ms) backoff = self->retry.cap_ms;
    uint64_t half = backoff / 2;
    return (int64_t)(backoff - half + (half ? next_random (self) % (half + 1) : 0));
}

//  True if an error proves the request did not run, or the request may run
//  twice and the error says its run was lost.
static bool error_is_retryable (request_t *request, int code)
{
    if (code == PF_BUSY) return true; //  refused at the door: never queued
    if (!(request->flags & PF_CALL_IDEMPOTENT)) return false;
    return code == PF_WORKER_LOST || code == PF_BRIDGE_CRASHED || code == PF_SHUTTING_DOWN;
}

//  Schedules another attempt of a sent request if the policy allows one and
//  it can start before the deadline. Returns true if scheduled.
static bool schedule_retry (pf_client_t *self, request_t *request)
{
    if (!request->msg || request->unsent || request->waiting ||
        request->attempts >= self->retry.attempts)
        return false;
    int64_t retry_at = zclock_mono () + backoff_ms (self, request->attempts + 1);
    //  A retry that cannot start before the deadline only turns a clear error
    //  into a TIMEOUT: report the error instead.
    if (retry_at >= request->deadline) return false;
    request->retry_at = retry_at;
    if (heap_push (&self->retries, request) != 0) return false;
    request->waiting = true;
    return true;
}

//  Moves requests whose backoff has ended to the backlog and sends them.
static void resend_due (pf_client_t *self, int64_t now)
{
    request_t *request;
    while ((request = heap_top (&self->retries)) && request->retry_at <= now) {
        heap_remove (&self->retries, request);
        request->waiting = false;
        request->unsent = true;
        request->backlog_handle = zlistx_add_end (self->backlog, request);
    }
    flush_backlog (self);
}

//  The connection to the broker dropped: requests in flight on it will never
//  be answered. Idempotent ones are sent again (after a backoff, to the next
//  connection); the others may have run, so they wait for their deadline.
static void connection_lost (pf_client_t *self)
{
    for (request_t *request = zhashx_first (self->requests); request;
         request = zhashx_next (self->requests))
        if ((request->flags & PF_CALL_IDEMPOTENT) && request->msg && !request->unsent)
            schedule_retry (self, request);
}

//  The broker refused the handshake (CurveZMQ: our key, or one side has
//  none): nothing waiting for this connection can be answered by it, so
//  every outstanding request is answered UNAUTHORIZED now, not at its
//  deadline. Later requests meet the same answer at the next attempt
//  (libzmq reconnects), unless the broker has admitted the key by then.
static void handshake_refused (pf_client_t *self, uint16_t event, uint32_t value)
{
    const char *why = "the CurveZMQ handshake with the broker failed";
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        why = "the broker refused this client's CurveZMQ key (not in its --curve-allow directory)";
    else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        why = "the broker and this client disagree on CurveZMQ (one side has no keys)";
    else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        why = "the CurveZMQ handshake failed (is the broker key right?)";
    //  Every outstanding request is in the expiry heap (as in destroy).
    while (self->expiry.size) {
        request_t *request = self->expiry.items[0];
        pf_reply_t *reply = reply_new_local (request->id, PF_UNAUTHORIZED, why);
        if (!reply) break;
        reply->attempts = request->attempts;
        request_forget (self, request);
        zlistx_add_end (self->ready, reply);
    }
}

//  Reads the socket monitor's events; acts on disconnections and refused
//  handshakes. An event is a 6-byte frame (id u16, value u32, native byte
//  order by libzmq's contract) and the peer's address.
static void read_monitor (pf_client_t *self)
{
    zmsg_t *event;
    while ((event = zmsg_recv_nowait (self->monitor))) {
        zframe_t *head = zmsg_first (event);
        if (head && zframe_size (head) >= 6) {
            uint16_t id;
            uint32_t value;
            memcpy (&id, zframe_data (head), 2);
            memcpy (&value, zframe_data (head) + 2, 4);
            if (id == ZMQ_EVENT_DISCONNECTED)
                connection_lost (self);
            else if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
                self->handshaken = true;
            else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                     (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                      (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ||
                       value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)))
                handshake_refused (self, id, value);
        }
        zmsg_destroy (&event);
    }
}

//  The earliest time the client must act: a local timeout or a retry.
static int64_t next_event_at (pf_client_t *self)
{
    request_t *expiring = heap_top (&self->expiry);
    request_t *retrying = heap_top (&self->retries);
    int64_t at = expiring ? expiring->deadline + PF_CLIENT_TIMEOUT_MARGIN_MS : INT64_MAX;
    if (retrying && retrying->retry_at < at) at = retrying->retry_at;
    return at;
}

//  Waits up to timeout_ms for input, or for room to send when the backlog is
//  not empty. Returns ZMQ_POLLIN/ZMQ_POLLOUT bits, 0 on timeout, a stray
//  signal or a monitor event (callers loop), -1 on error or interrupt.
static int wait_socket (pf_client_t *self, int64_t timeout_ms)
{
    zmq_pollitem_t items[2] = {
        {self->dealer ? zsock_resolve (self->dealer) : NULL, self->stream.fd, ZMQ_POLLIN, 0},
        {self->monitor ? zsock_resolve (self->monitor) : NULL, 0, ZMQ_POLLIN, 0},
    };
    int count = self->dealer ? 2 : self->stream.fd >= 0;
    if (zlistx_size (self->backlog) || pf_stream_pending (&self->stream))
        items[0].events |= ZMQ_POLLOUT;
    //  Not connected over unix://: try again when it is time.
    if (self->stream_path && self->stream.fd < 0 && zlistx_size (self->backlog) &&
        self->connect_at - zclock_mono () < timeout_ms)
        timeout_ms = self->connect_at - zclock_mono ();
    if (timeout_ms < 0) timeout_ms = 0;
    int rc = zmq_poll (items, count, (long)timeout_ms);
    //  Any signal interrupts the poll (SIGCHLD in a program that embeds us);
    //  only SIGINT/SIGTERM, which CZMQ's handler records, stop the wait.
    if (rc < 0 && errno == EINTR && !zsys_interrupted) return 0;
    if (rc < 0) return -1;
    if (self->monitor && items[1].revents & ZMQ_POLLIN) read_monitor (self);
    //  A closed or broken connection shows as input: reading finds it out.
    if (count && self->stream_path && items[0].revents & ZMQ_POLLERR)
        items[0].revents |= ZMQ_POLLIN;
    return count ? items[0].revents & (ZMQ_POLLIN | ZMQ_POLLOUT) : 0;
}

//  The reply a decoded REPLY or ERROR carries if it answers an outstanding
//  request (which is then forgotten), else NULL: other commands and late
//  replies are dropped, and an error that the retry policy covers schedules
//  the request again.
static pf_reply_t *answer (pf_client_t *self, pf_msg_t *decoded)
{
    if (decoded->command != PF_C_REPLY && decoded->command != PF_C_ERROR) return NULL;
    request_t *request = request_find (self, decoded->request_id);
    //  A request waiting for its retry has had its answer: drop duplicates.
    if (!request || request->waiting || request->unsent) return NULL;
    if (decoded->command == PF_C_ERROR && error_is_retryable (request, decoded->code) &&
        schedule_retry (self, request))
        return NULL;
    pf_reply_t *reply = reply_from_msg (decoded);
    if (reply) {
        reply->attempts = request->attempts;
        request_forget (self, request);
    }
    return reply;
}

//  Answers one of several messages read at once (see answer): the first
//  reply goes to *first_p, the later ones wait in self->ready.
static void collect (pf_client_t *self, pf_msg_t *decoded, pf_reply_t **first_p)
{
    pf_reply_t *reply = answer (self, decoded);
    if (reply && !*first_p)
        *first_p = reply;
    else if (reply)
        zlistx_add_end (self->ready, reply);
}

//  Over unix://: decodes the messages read so far, reading once more if none
//  is whole. Returns the first reply (see answer); the others wait in
//  self->ready. Malformed messages are dropped.
static pf_reply_t *receive_stream (pf_client_t *self)
{
    if (self->stream.fd < 0) return NULL;
    pf_msg_t decoded;
    pf_msg_init (&decoded);
    char err[128];
    pf_reply_t *reply = NULL;
    for (bool filled = false;;) {
        int rc = pf_stream_next (&self->stream, &decoded, err, sizeof err);
        if (rc == -1 && errno == EAGAIN && !filled && !reply) {
            filled = true;
            ssize_t got = pf_stream_fill (&self->stream);
            if (got > 0) continue;
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) stream_lost (self);
        }
        else if (rc == -1 && errno == EPROTO)
            stream_lost (self);
        if (rc == -1) break;
        if (rc == PF_OK) collect (self, &decoded, &reply);
    }
    pf_msg_reset (&decoded);
    return reply;
}

//  Reads one message. Returns the first reply it carries (see answer); the
//  others of a BATCH wait in self->ready. Malformed messages are dropped.
static pf_reply_t *receive_reply (pf_client_t *self)
{
    if (self->stream_path) return receive_stream (self);
    pf_msg_t decoded;
    pf_msg_init (&decoded);
    char err[128];
    int rc = pf_msg_recv (&decoded, zsock_resolve (self->dealer), ZMQ_DONTWAIT, NULL, 0, err,
                          sizeof err);
    if (rc == -1) return NULL;
    pf_reply_t *reply = NULL;
    if (rc == PF_OK && decoded.proto == PF_PROTO_C && decoded.command == PF_C_BATCH) {
        pf_msg_t one;
        pf_msg_init (&one);
        size_t offset = 0;
        while ((rc = pf_batch_next (PF_PROTO_C, decoded.body, &offset, &one, 0, err,
                                    sizeof err)) != -1) {
            if (rc == PF_OK) collect (self, &one, &reply);
            pf_msg_reset (&one);
        }
    }
    else if (rc == PF_OK && decoded.proto == PF_PROTO_C)
        reply = answer (self, &decoded);
    pf_msg_reset (&decoded);
    return reply;
}

//  Takes the reply for id from self->ready (where a BATCH may have put it).
static pf_reply_t *take_ready (pf_client_t *self, uint64_t id)
{
    for (pf_reply_t *reply = zlistx_first (self->ready); reply; reply = zlistx_next (self->ready))
        if (pf_reply_request_id (reply) == id) {
            zlistx_detach_cur (self->ready);
            return reply;
        }
    return NULL;
}

//  Forgets a request and returns its local TIMEOUT reply (NULL if out of
//  memory, and then the request stays).
static pf_reply_t *timeout_reply (pf_client_t *self, request_t *request)
{
    char message[PF_MAX_NAME + 128] = "deadline passed with no reply from the broker";
    if (request->attempts == 0) {
        //  Over unix:// the client knows why: say it (no such file, no permission).
        int length = snprintf (message, sizeof message,
                               "deadline passed before the broker could be reached");
        if (self->connect_errno)
            snprintf (message + length, sizeof message - (size_t)length, " (%s: %s)",
                      self->stream_path, strerror (self->connect_errno));
        //  A broker key that is not the broker's fails the handshake
        //  without a word from the broker: say what to check.
        else if (self->curve && !self->handshaken)
            snprintf (message + length, sizeof message - (size_t)length,
                      " (no CurveZMQ handshake completed: is the broker key right?)");
    }
    pf_reply_t *reply = reply_new_local (request->id, PF_TIMEOUT, message);
    if (reply) {
        reply->attempts = request->attempts;
        request_forget (self, request);
    }
    return reply;
}

//  If the earliest request has expired, forgets it and returns its local
//  TIMEOUT reply; else NULL.
static pf_reply_t *expire_one (pf_client_t *self, int64_t now)
{
    request_t *request = heap_top (&self->expiry);
    if (!request || now < request->deadline + PF_CLIENT_TIMEOUT_MARGIN_MS) return NULL;
    return timeout_reply (self, request);
}

//  Tells the broker to cancel a request it has; best effort, never blocks.
static void send_cancel (pf_client_t *self, uint64_t id)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_CANCEL;
    msg.request_id = id;
    send_now (self, &msg, 0);
    stream_flush (self);
    pf_msg_reset (&msg);
}

//  ---------------------------------------------------------------------------
//  Client

pf_client_t *pf_client_new (const char *endpoint)
{
    return pf_client_new_keys (endpoint, NULL, NULL);
}

//  Loads the CurveZMQ keys: 0 with *cert_p NULL if none, or the
//  certificate and the broker's key; -1 with why.
static int keys_load (const pf_client_keys_t *keys, zcert_t **cert_p,
                      char key[PF_CURVE_KEY_LEN + 1], char *why, size_t whylen)
{
    *cert_p = NULL;
    if (!keys || (!keys->cert && !keys->broker_key)) return 0;
    if (!keys->cert || !keys->broker_key) {
        snprintf (why, whylen, "CurveZMQ needs both a client certificate and the broker's key");
        return -1;
    }
    *cert_p = pf_curve_cert_load (keys->cert, why, whylen);
    if (*cert_p && pf_curve_public_key (keys->broker_key, key, why, whylen) == 0) return 0;
    zcert_destroy (cert_p);
    return -1;
}

int pf_client_check_keys (const pf_client_keys_t *keys, char *why, size_t whylen)
{
    zcert_t *cert;
    char key[PF_CURVE_KEY_LEN + 1];
    int rc = keys_load (keys, &cert, key, why, whylen);
    zcert_destroy (&cert);
    return rc;
}

pf_client_t *pf_client_new_with (const char *endpoint, const pf_client_options_t *options)
{
    return pf_client_new_keys (endpoint, options, NULL);
}

pf_client_t *pf_client_new_keys (const char *endpoint, const pf_client_options_t *options,
                                 const pf_client_keys_t *keys)
{
    zcert_t *cert = NULL;
    char key[PF_CURVE_KEY_LEN + 1], why[PATH_MAX + 128];
    if (!endpoint || !*endpoint || keys_load (keys, &cert, key, why, sizeof why) != 0)
        return NULL;
    pf_client_t *self = calloc (1, sizeof *self);
    if (!self) {
        zcert_destroy (&cert);
        return NULL;
    }
    self->timeout_ms = PF_CLIENT_DEFAULT_TIMEOUT_MS;
    if (options && options->timeout_ms) self->timeout_ms = options->timeout_ms;
    pf_client_set_retry (self, options ? &options->retry : NULL);
    self->retries.by_retry = true;
    if (getrandom (&self->next_id, sizeof self->next_id, GRND_NONBLOCK) != sizeof self->next_id)
        self->next_id = (uint64_t)zclock_time () * 2654435761u ^ (uint64_t)getpid ();
    self->random = self->next_id | 1; //  xorshift needs a non-zero state
    self->requests = zhashx_new ();
    self->backlog = zlistx_new ();
    self->ready = zlistx_new ();
    pf_stream_init (&self->stream, -1, 0);
    if (!self->requests || !self->backlog || !self->ready) goto failed;
    zhashx_set_key_hasher (self->requests, id_hash);
    zhashx_set_key_comparator (self->requests, id_compare);
    zhashx_set_key_duplicator (self->requests, NULL);
    zhashx_set_key_destructor (self->requests, NULL);
    zlistx_set_destructor (self->ready, (zlistx_destructor_fn *)pf_reply_destroy);
    const char *path = pf_stream_path (endpoint);
    if (path) {
        //  Connecting waits for the first request, as a DEALER's would. No
        //  keys over unix:// (the socket file's permissions decide).
        zcert_destroy (&cert);
        self->stream_path = pf_stream_path_valid (path) ? strdup (path) : NULL;
        if (!self->stream_path) goto failed;
        return self;
    }
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) goto failed;
    if (cert) {
        pf_curve_client_apply (self->dealer, cert, key);
        self->curve = true;
    }

    //  Linger 0: destroy must not block on requests no one will wait for.
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, CLIENT_HWM);
    zsock_set_rcvhwm (self->dealer, CLIENT_HWM);
    zsock_set_immediate (self->dealer, 1);

    //  The monitor tells us when the broker connection drops, so idempotent
    //  requests lost with it can be sent again at once, not at their deadline.
    //  A name never used before: libzmq may release the previous client's
    //  monitor endpoint after destroy returns, and malloc may hand the next
    //  client the same address, so the address alone is not unique enough.
    static uint64_t monitor_serial = 0;
    char monitor_endpoint[64];
    snprintf (monitor_endpoint, sizeof monitor_endpoint, "inproc://pf-client-monitor-%llu",
              (unsigned long long)__atomic_add_fetch (&monitor_serial, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor (zsock_resolve (self->dealer), monitor_endpoint,
                            ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0)
        goto failed;
    self->monitor = zsock_new_pair (monitor_endpoint); //  connects
    if (!self->monitor) goto failed;
    if (zsock_connect (self->dealer, "%s", endpoint) != 0) goto failed;
    zcert_destroy (&cert);
    return self;

failed:
    zcert_destroy (&cert);
    pf_client_destroy (&self);
    return NULL;
}

void pf_client_destroy (pf_client_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_client_t *self = *self_p;
    while (self->expiry.size)
        request_forget (self, self->expiry.items[0]);
    zhashx_destroy (&self->requests);
    zlistx_destroy (&self->backlog);
    zlistx_destroy (&self->ready);
    pf_batch_free (&self->batch);
    if (self->dealer && self->monitor) zmq_socket_monitor (zsock_resolve (self->dealer), NULL, 0);
    zsock_destroy (&self->monitor);
    zsock_destroy (&self->dealer);
    pf_stream_close (&self->stream);
    free (self->stream_path);
    free (self->expiry.items);
    free (self->retries.items);
    free (self);
    *self_p = NULL;
}

void pf_client_set_timeout (pf_client_t *self, uint32_t timeout_ms)
{
    if (timeout_ms > 0) self->timeout_ms = timeout_ms;
}

void pf_client_set_batching (pf_client_t *self, bool batching)
{
    self->batching = batching;
    if (!batching) flush_backlog (self);
}

uint32_t pf_client_timeout (pf_client_t *self)
{
    return self->timeout_ms;
}

void pf_client_set_retry (pf_client_t *self, const pf_retry_t *retry)
{
    pf_retry_t policy = {1, PF_RETRY_DEFAULT_BASE_MS, PF_RETRY_DEFAULT_CAP_MS};
    if (retry && retry->attempts > 1) {
        policy.attempts = retry->attempts;
        if (retry->base_ms) policy.base_ms = retry->base_ms;
        if (retry->cap_ms) policy.cap_ms = retry->cap_ms;
        if (policy.cap_ms < policy.base_ms) policy.cap_ms = policy.base_ms;
    }
    self->retry = policy;
}

pf_retry_t pf_client_retry (pf_client_t *self)
{
    return self->retry;
}

size_t pf_client_outstanding (pf_client_t *self)
{
    return self->expiry.size + zlistx_size (self->ready);
}

const char *pf_client_error (pf_client_t *self)
{
    return self->error;
}

//  ---------------------------------------------------------------------------
//  Requests

//  Checks the arguments, encodes the REQUEST and registers it (backlog, heap,
//  table). Returns the request, or NULL with self->error set and *code_p the
//  error code to report.
static request_t *request_submit (pf_client_t *self, const char *service, const char *command,
                                  const void *args, size_t args_size,
                                  const pf_call_options_t *options, uint32_t extra_flags,
                                  int *code_p)
{
    self->error[0] = 0;
    *code_p = PF_BAD_REQUEST;
    const char *session = options && options->session ? options->session : "";
    uint32_t flags = (options ? options->flags : 0) | extra_flags;
    uint32_t timeout_ms = options && options->timeout_ms ? options->timeout_ms : self->timeout_ms;
    size_t service_size = service ? strnlen (service, PF_MAX_NAME + 1) : 0;
    size_t command_size = command ? strnlen (command, PF_MAX_NAME + 1) : 0;
    if (service_size == 0 || service_size > PF_MAX_NAME) {
        snprintf (self->error, sizeof self->error, "service name must be 1..%d bytes", PF_MAX_NAME);
        return NULL;
    }
    if (command_size == 0 || command_size > PF_MAX_NAME) {
        snprintf (self->error, sizeof self->error, "command name must be 1..%d bytes", PF_MAX_NAME);
        return NULL;
    }
    if (strnlen (session, PF_MAX_NAME + 1) > PF_MAX_NAME) {
        snprintf (self->error, sizeof self->error, "session id must be at most %d bytes",
                  PF_MAX_NAME);
        return NULL;
    }
    if (flags & ~PF_CALL_ALL_FLAGS) {
        snprintf (self->error, sizeof self->error, "unknown flags 0x%x",
                  flags & ~PF_CALL_ALL_FLAGS);
        return NULL;
    }
    if (args_size > PF_DEFAULT_MAX_BODY || (args_size && !args)) {
        *code_p = args_size > PF_DEFAULT_MAX_BODY ? PF_TOO_LARGE : PF_BAD_REQUEST;
        snprintf (self->error, sizeof self->error,
                  args ? "arguments are %zu bytes, the limit is %u" : "no arguments for %zu bytes",
                  args_size, PF_DEFAULT_MAX_BODY);
        return NULL;
    }

    *code_p = PF_INTERNAL;
    request_t *request = calloc (1, sizeof *request);
    if (!request) {
        snprintf (self->error, sizeof self->error, "out of memory");
        return NULL;
    }
    if (self->next_id == 0) self->next_id++;
    request->id = self->next_id;
    request->flags = flags;
    request->deadline = zclock_mono () + timeout_ms;

    //  The names were checked above: the message always encodes.
    pf_msg_t *msg = malloc (sizeof *msg);
    if (msg) pf_msg_init (msg);
    zframe_t *body = msg ? zframe_new (args, args_size) : NULL;
    if (!body) {
        free (msg);
        free (request);
        snprintf (self->error, sizeof self->error, "out of memory");
        return NULL;
    }
    msg->proto = PF_PROTO_C;
    msg->command = PF_C_REQUEST_PACKED; //  5 frames instead of 10, same fields
    msg->request_id = request->id;
    memcpy (msg->service, service, service_size + 1);
    memcpy (msg->command_name, command, command_size + 1);
    strcpy (msg->session, session);
    msg->timeout_ms = timeout_ms;
    //  We read BATCH answers (PROTOCOL.md 4.6): the broker may send several
    //  in one message.
    msg->flags = flags | PF_FLAG_BATCH_OK;
    msg->body = body;
    request->msg = msg;
    request->unsent = true;
    if (heap_push (&self->expiry, request) != 0) {
        request_drop_msg (request);
        free (request);
        snprintf (self->error, sizeof self->error, "out of memory");
        return NULL;
    }
    zhashx_insert (self->requests, &request->id, request);
    request->backlog_handle = zlistx_add_end (self->backlog, request);
    self->next_id++;
    //  Batching: it goes with the others when the client next waits.
    if (!self->batching) flush_backlog (self);
    return request;
}

int pf_send (pf_client_t *self, const char *service, const char *command, const void *args,
             size_t args_size, const pf_call_options_t *options, uint64_t *request_id_p)
{
    int code;
    request_t *request =
        request_submit (self, service, command, args, args_size, options, 0, &code);
    if (!request) return -1;
    if (request_id_p) *request_id_p = request->id;
    return 0;
}

pf_reply_t *pf_recv (pf_client_t *self, int timeout_ms)
{
    int64_t until = timeout_ms < 0 ? -1 : zclock_mono () + timeout_ms;
    while (true) {
        pf_reply_t *reply = zlistx_detach (self->ready, NULL);
        if (reply) return reply;
        if (self->expiry.size == 0) return NULL;
        int64_t now = zclock_mono ();
        reply = expire_one (self, now);
        if (reply) return reply;
        resend_due (self, now);
        //  Under load replies are already queued: take one without a poll
        //  (a system call) first.
        if (zlistx_size (self->backlog) == 0 && (reply = receive_reply (self)))
            return reply;

        int64_t wait = next_event_at (self) - now;
        if (until >= 0 && until - now < wait) wait = until - now;
        int events = wait_socket (self, wait);
        if (events < 0) return NULL; //  interrupted
        if (events & ZMQ_POLLIN) {
            reply = receive_reply (self);
            if (reply) return reply;
        } else if (!(events & ZMQ_POLLOUT) && until >= 0 && zclock_mono () >= until)
            return NULL;
    }
}

//  Sends one request and waits for its reply (the body of pf_call and
//  pf_broadcast).
static pf_reply_t *call_with_flags (pf_client_t *self, const char *service, const char *command,
                                    const void *args, size_t args_size,
                                    const pf_call_options_t *options, uint32_t extra_flags)
{
    int code;
    request_t *request =
        request_submit (self, service, command, args, args_size, options, extra_flags, &code);
    if (!request) return reply_new_local (0, code, self->error);
    uint64_t id = request->id;
    while (true) {
        int64_t now = zclock_mono ();
        request = request_find (self, id);
        //  Answered locally meanwhile (a refused handshake).
        if (!request) return take_ready (self, id);
        if (now >= request->deadline + PF_CLIENT_TIMEOUT_MARGIN_MS)
            return timeout_reply (self, request);
        resend_due (self, now);
        int events = wait_socket (self, next_event_at (self) - now);
        if (events < 0) {
            request = request_find (self, id);
            if (request && request->attempts && !request->unsent && !request->waiting)
                send_cancel (self, id);
            if (request) request_forget (self, request);
            return reply_new_local (id, PF_CANCELLED, "interrupted");
        }
        if (events & ZMQ_POLLOUT) flush_backlog (self);
        if (events & ZMQ_POLLIN) {
            pf_reply_t *reply = receive_reply (self);
            if (reply && pf_reply_request_id (reply) == id) return reply;
            if (reply) zlistx_add_end (self->ready, reply);
            if ((reply = take_ready (self, id))) return reply;
        }
        //  Other requests' local timeouts are due too: keep them for pf_recv.
        pf_reply_t *expired;
        now = zclock_mono ();
        while ((expired = expire_one (self, now))) {
            if (pf_reply_request_id (expired) == id) return expired;
            zlistx_add_end (self->ready, expired);
        }
    }
}

pf_reply_t *pf_call (pf_client_t *self, const char *service, const char *command, const void *args,
                     size_t args_size, const pf_call_options_t *options)
{
    return call_with_flags (self, service, command, args, args_size, options, 0);
}

pf_reply_t *pf_broadcast (pf_client_t *self, const char *service, const char *command,
                          const void *args, size_t args_size, const pf_call_options_t *options)
{
    return call_with_flags (self, service, command, args, args_size, options, PF_CALL_BROADCAST);
}

//  Packs JSON arguments as msgpack; -1 with self->error set if invalid.
static int pack_json_args (pf_client_t *self, const char *json_args, void **args_p,
                           size_t *size_p)
{
    const char *json = json_args ? json_args : "{}";
    char err[200];
    if (pf_json_to_msgpack (json, strlen (json), args_p, size_p, err, sizeof err) == 0) return 0;
    snprintf (self->error, sizeof self->error, "arguments are not valid JSON: %s", err);
    return -1;
}

pf_reply_t *pf_call_json (pf_client_t *self, const char *service, const char *command,
                          const char *json_args, const pf_call_options_t *options)
{
    void *args;
    size_t args_size;
    if (pack_json_args (self, json_args, &args, &args_size) != 0)
        return reply_new_local (0, PF_BAD_REQUEST, self->error);
    pf_reply_t *reply = pf_call (self, service, command, args, args_size, options);
    free (args);
    return reply;
}

int pf_send_json (pf_client_t *self, const char *service, const char *command,
                  const char *json_args, const pf_call_options_t *options, uint64_t *request_id_p)
{
    void *args;
    size_t args_size;
    if (pack_json_args (self, json_args, &args, &args_size) != 0) return -1;
    int rc = pf_send (self, service, command, args, args_size, options, request_id_p);
    free (args);
    return rc;
}

int pf_cancel (pf_client_t *self, uint64_t request_id)
{
    self->error[0] = 0;
    request_t *request = request_find (self, request_id);
    if (!request) {
        snprintf (self->error, sizeof self->error, "request %llu is not outstanding",
                  (unsigned long long)request_id);
        return -1;
    }
    if (request->unsent || request->waiting) {
        //  Not at the broker now (never sent, or waiting to be sent again):
        //  answer it here, in its turn with other replies.
        pf_reply_t *reply = reply_new_local (request_id, PF_CANCELLED,
                                             request->attempts ? "cancelled while waiting to retry"
                                                               : "cancelled before it was sent");
        if (!reply) {
            snprintf (self->error, sizeof self->error, "out of memory");
            return -1;
        }
        reply->attempts = request->attempts;
        request_forget (self, request);
        zlistx_add_end (self->ready, reply);
    } else
        send_cancel (self, request_id);
    return 0;
}
