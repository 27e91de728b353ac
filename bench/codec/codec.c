/*  bench/codec — what it costs to get a pf_msg_t on and off a ZeroMQ socket.

    Every routed request is ~40 frames through the broker. The old path gives
    each frame a zframe_t (pf_msg_encode, then pop and zframe_send per frame;
    zmsg_recv, then pf_msg_decode); the new one (pf_msg_send / pf_msg_recv)
    sends and parses small frames from the stack. This times N round trips of
    a PFC1 REQUEST (100-byte body) one way and a PFW2 REPLY back, in one
    thread over inproc, both ways, over a PAIR pair and over DEALER -> ROUTER
    (the broker's side: routing id in, routing id out). The body travels on:
    the server answers with the body it received and the client sends the
    body of the reply again, so every allocation counted is the codec's or
    libzmq's, none the driver's.

    Allocations are counted by interposing malloc/calloc/realloc over glibc's
    __libc_* entry points (libzmq and CZMQ call them through the PLT too).
    -DBENCH_CODEC_NO_COUNT leaves the allocator alone (counts read 0), e.g. to
    time with tcmalloc as the broker links it: add -ltcmalloc_minimal.
    Each variant runs ROUNDS times, alternating old and new; the best time
    counts. Prints one JSON line: ns and allocations per message (a round
    trip is two messages) and the old/new ratio.

    Build and run (from the repository root):
      cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -Icommon bench/codec/codec.c \
         common/pf_proto.c common/pf_error.c $(pkg-config --cflags --libs libczmq libzmq) \
         -o /tmp/bench-codec && /tmp/bench-codec [round_trips]        */
#include "pf_error.h"
#include "pf_proto.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_ROUND_TRIPS 200000
#define ROUNDS              3
#define BODY_SIZE           100

//  --------------------------------------------------------------------------
//  Allocation counting

static atomic_ulong allocations;

#ifndef BENCH_CODEC_NO_COUNT
extern void *__libc_malloc (size_t size);
extern void *__libc_calloc (size_t count, size_t size);
extern void *__libc_realloc (void *pointer, size_t size);

void *malloc (size_t size)
{
    atomic_fetch_add_explicit (&allocations, 1, memory_order_relaxed);
    return __libc_malloc (size);
}

void *calloc (size_t count, size_t size)
{
    atomic_fetch_add_explicit (&allocations, 1, memory_order_relaxed);
    return __libc_calloc (count, size);
}

void *realloc (void *pointer, size_t size)
{
    atomic_fetch_add_explicit (&allocations, 1, memory_order_relaxed);
    return __libc_realloc (pointer, size);
}
#endif

//  --------------------------------------------------------------------------
//  The two paths

typedef struct {
    void *client; //  PAIR or DEALER
    void *server; //  PAIR or ROUTER
    bool routed;  //  the server sees routing ids
} link_t;

static void die (const char *what, int rc, const char *err)
{
    fprintf (stderr, "bench-codec: %s failed (%d, %s)\n", what, rc, err ? err : "");
    exit (1);
}

//  As broker/main.c's router_send did: the routing id reused, then every
//  frame of the encoded zmsg popped and sent.
static void old_send (pf_msg_t *msg, void *socket, zframe_t *routing_id)
{
    zmsg_t *out = pf_msg_encode (msg);
    if (!out) die ("pf_msg_encode", -1, NULL);
    int rc = 0;
    if (routing_id) rc = zframe_send (&routing_id, socket, ZFRAME_MORE | ZFRAME_REUSE);
    zframe_t *frame;
    while (rc == 0 && (frame = zmsg_pop (out))) {
        int more = zmsg_size (out) > 0 ? ZFRAME_MORE : 0;
        rc = zframe_send (&frame, socket, more);
        zframe_destroy (&frame);
    }
    zmsg_destroy (&out);
    if (rc) die ("zframe_send", rc, NULL);
}

static void old_recv (pf_msg_t *msg, void *socket, zframe_t **routing_id_p)
{
    zmsg_t *in = zmsg_recv (socket);
    if (!in) die ("zmsg_recv", -1, NULL);
    if (routing_id_p) *routing_id_p = zmsg_pop (in);
    char err[128];
    int rc = pf_msg_decode (msg, &in, 0, err, sizeof (err));
    if (rc != PF_OK) die ("pf_msg_decode", rc, err);
}

static void new_send (pf_msg_t *msg, void *socket, zframe_t *routing_id)
{
    if (pf_msg_send (msg, socket, routing_id, 0)) die ("pf_msg_send", -1, NULL);
}

static void new_recv (pf_msg_t *msg, void *socket, zframe_t **routing_id_p)
{
    char err[128];
    int rc = pf_msg_recv (msg, socket, 0, routing_id_p, 0, err, sizeof (err));
    if (rc != PF_OK) die ("pf_msg_recv", rc, err);
}

typedef struct {
    void (*send) (pf_msg_t *msg, void *socket, zframe_t *routing_id);
    void (*recv) (pf_msg_t *msg, void *socket, zframe_t **routing_id_p);
} path_t;

typedef struct {
    double ns_per_message;
    double allocations_per_message;
} result_t;

static double now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

//  N round trips: client REQUEST -> server, server REPLY -> client.
static result_t run (const link_t *link, const path_t *path, long round_trips)
{
    pf_msg_t request, reply, at_server, at_client;
    pf_msg_init (&request);
    pf_msg_init (&reply);
    pf_msg_init (&at_server);
    pf_msg_init (&at_client);
    request.proto = PF_PROTO_C;
    request.command = PF_C_REQUEST;
    strcpy (request.service, "echo");
    strcpy (request.session, "session-0001");
    strcpy (request.command_name, "ping");
    request.timeout_ms = 30000;
    reply.proto = PF_PROTO_W;
    reply.command = PF_W_REPLY;
    reply.bridge = 3;
    reply.generation = 1;
    byte body[BODY_SIZE];
    for (size_t index = 0; index < sizeof (body); index++)
        body[index] = (byte)index;
    zframe_t *travelling = zframe_new (body, sizeof (body));

    unsigned long allocations_before = atomic_load (&allocations);
    double start = now_ns ();
    for (long index = 0; index < round_trips; index++) {
        request.request_id = (uint64_t)index;
        request.body = travelling;
        path->send (&request, link->client, NULL);

        zframe_t *routing_id = NULL;
        path->recv (&at_server, link->server, link->routed ? &routing_id : NULL);
        reply.request_id = at_server.request_id;
        reply.body = at_server.body;
        at_server.body = NULL;
        path->send (&reply, link->server, routing_id);
        zframe_destroy (&routing_id);

        path->recv (&at_client, link->client, NULL);
        if (at_client.request_id != (uint64_t)index || zframe_size (at_client.body) != BODY_SIZE)
            die ("round trip check", -1, "wrong reply");
        travelling = at_client.body;
        at_client.body = NULL;
    }
    double elapsed = now_ns () - start;
    unsigned long allocations_after = atomic_load (&allocations);

    zframe_destroy (&travelling);
    pf_msg_reset (&request);
    pf_msg_reset (&reply);
    pf_msg_reset (&at_server);
    pf_msg_reset (&at_client);
    double messages = 2.0 * (double)round_trips;
    return (result_t){elapsed / messages,
                      (double)(allocations_after - allocations_before) / messages};
}

//  Best of ROUNDS for each path, alternating so drift hits both alike.
static void compare (const char *name, const link_t *link, long round_trips, bool last)
{
    static const path_t old_path = {old_send, old_recv};
    static const path_t new_path = {new_send, new_recv};
    run (link, &old_path, round_trips / 10 + 1); //  warm up
    run (link, &new_path, round_trips / 10 + 1);
    result_t best_old = {1e18, 0}, best_new = {1e18, 0};
    for (int round = 0; round < ROUNDS; round++) {
        result_t old_result = run (link, &old_path, round_trips);
        result_t new_result = run (link, &new_path, round_trips);
        if (old_result.ns_per_message < best_old.ns_per_message) best_old = old_result;
        if (new_result.ns_per_message < best_new.ns_per_message) best_new = new_result;
    }
    printf ("\"%s\":{\"old_ns\":%.1f,\"new_ns\":%.1f,\"ratio\":%.2f,"
            "\"old_allocs\":%.2f,\"new_allocs\":%.2f}%s",
            name, best_old.ns_per_message, best_new.ns_per_message,
            best_old.ns_per_message / best_new.ns_per_message, best_old.allocations_per_message,
            best_new.allocations_per_message, last ? "" : ",");
}

int main (int argc, char *argv[])
{
    long round_trips = argc > 1 ? atol (argv[1]) : DEFAULT_ROUND_TRIPS;
    if (round_trips <= 0) {
        fprintf (stderr, "usage: %s [round_trips]\n", argv[0]);
        return 2;
    }
    zsys_init ();
    zsock_t *pair_server = zsock_new_pair ("@inproc://bench-codec-pair");
    zsock_t *pair_client = zsock_new_pair (">inproc://bench-codec-pair");
    zsock_t *router = zsock_new_router ("@inproc://bench-codec-router");
    zsock_t *dealer = zsock_new_dealer (">inproc://bench-codec-router");
    if (!pair_server || !pair_client || !router || !dealer) die ("socket setup", -1, NULL);

    link_t pair = {zsock_resolve (pair_client), zsock_resolve (pair_server), false};
    link_t routed = {zsock_resolve (dealer), zsock_resolve (router), true};
    printf ("{\"bench\":\"codec\",\"round_trips\":%ld,\"body_bytes\":%d,", round_trips, BODY_SIZE);
    compare ("pair", &pair, round_trips, false);
    compare ("router_dealer", &routed, round_trips, true);
    printf ("}\n");

    zsock_destroy (&dealer);
    zsock_destroy (&router);
    zsock_destroy (&pair_client);
    zsock_destroy (&pair_server);
    return 0;
}
