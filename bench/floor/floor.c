/*  =========================================================================
    floor - the physical floor of the benchmarks: a C parent and N Python
    children over pipes, no broker, no agent, no ZeroMQ.

    The parent speaks the bridge protocol of docs/PROTOCOL.md section 11
    (4-byte big-endian length + one msgpack map) to N real pyfleet_bridge
    runtimes, keeps up to --concurrency requests in flight spread over the
    children (each child's pipe holds its share, so a child never waits for
    the parent between requests), and prints one JSON object with the same
    fields as `pyfleet call --json`: requests, errors, req_per_s, p50_us,
    p99_us, max_us. Anything pyfleet adds on top of this is overhead.

    Built by bench/run.sh: cc -O2 floor.c $(pkg-config --cflags --libs msgpack)
    =========================================================================
*/

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 64
#define IO_TIMEOUT_MS 30000
#define MAX_FRAME (64u * 1024 * 1024)

typedef struct {
    char *data;
    size_t size;   //  bytes held
    size_t start;  //  first unconsumed byte
    size_t alloc;
} buf_t;

typedef struct {
    pid_t pid;
    int req_fd;    //  our write end of the child's fd 0
    int reply_fd;  //  our read end of the child's fd 1
    buf_t out, in;
    size_t inflight;
    bool ready;
} child_t;

static child_t children [MAX_CHILDREN];
static int nchildren = 2;

static void die (const char *what)
{
    fprintf (stderr, "floor: %s: %s\n", what, errno ? strerror (errno) : "failed");
    for (int i = 0; i < nchildren; i++)
        if (children [i].pid > 0)
            kill (children [i].pid, SIGKILL);
    exit (1);
}

static uint64_t now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void buf_append (buf_t *b, const void *data, size_t size)
{
    if (b->start > 0 && b->start == b->size)
        b->start = b->size = 0;
    if (b->size + size > b->alloc) {
        if (b->start > 0) {  //  compact before growing
            memmove (b->data, b->data + b->start, b->size - b->start);
            b->size -= b->start;
            b->start = 0;
        }
        size_t want = b->alloc ? b->alloc : 65536;
        while (want < b->size + size)
            want *= 2;
        if (want != b->alloc) {
            b->data = realloc (b->data, want);
            if (!b->data)
                die ("out of memory");
            b->alloc = want;
        }
    }
    memcpy (b->data + b->size, data, size);
    b->size += size;
}

//  Spawns one bridge: its fd 0 reads our requests, its fd 1 writes frames.
static void spawn (child_t *c, char **argv)
{
    int req [2], reply [2];
    if (pipe2 (req, O_CLOEXEC) || pipe2 (reply, O_CLOEXEC))
        die ("pipe");
    pid_t pid = fork ();
    if (pid < 0)
        die ("fork");
    if (pid == 0) {
        dup2 (req [0], 0);
        dup2 (reply [1], 1);
        execv (argv [0], argv);
        _exit (127);
    }
    close (req [0]);
    close (reply [1]);
    c->pid = pid;
    c->req_fd = req [1];
    c->reply_fd = reply [0];
    fcntl (c->req_fd, F_SETFL, O_NONBLOCK);
    fcntl (c->reply_fd, F_SETFL, O_NONBLOCK);
}

//  Looks up a string key in a msgpack map; NULL if absent.
static msgpack_object *map_get (msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
            && memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static uint64_t *sent_at;   //  by request id (1..count)
static uint32_t *latency_us;
static size_t answered, errors;

//  Handles one frame from a child: ready, beat (skipped) or a reply.
static void on_frame (child_t *c, const char *data, size_t size)
{
    msgpack_unpacked msg;
    msgpack_unpacked_init (&msg);
    size_t off = 0;
    if (msgpack_unpack_next (&msg, data, size, &off) != MSGPACK_UNPACK_SUCCESS || off != size)
        die ("child sent a frame that is not one msgpack object");
    msgpack_object *event = map_get (&msg.data, "event");
    msgpack_object *id = map_get (&msg.data, "id");
    if (event && event->type == MSGPACK_OBJECT_STR) {
        if (event->via.str.size == 5 && memcmp (event->via.str.ptr, "ready", 5) == 0)
            c->ready = true;
        msgpack_unpacked_destroy (&msg);
        return;  //  beats carry no reply
    }
    if (!id || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER || id->via.u64 == 0)
        die ("child sent a reply without an id");
    msgpack_object *ok = map_get (&msg.data, "ok");
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean)
        errors++;
    else
        latency_us [answered - errors] = (uint32_t) ((now_ns () - sent_at [id->via.u64]) / 1000);
    answered++;
    c->inflight--;
    msgpack_unpacked_destroy (&msg);
}

//  Reads what the child has written and handles every complete frame.
//  Returns false at end of file.
static bool on_readable (child_t *c)
{
    char chunk [262144];
    for (;;) {
        ssize_t n = read (c->reply_fd, chunk, sizeof chunk);
        if (n == 0)
            return false;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            die ("read");
        }
        buf_append (&c->in, chunk, (size_t) n);
        if ((size_t) n < sizeof chunk)
            break;
    }
    while (c->in.size - c->in.start >= 4) {
        const unsigned char *h = (const unsigned char *) c->in.data + c->in.start;
        uint32_t len = (uint32_t) h [0] << 24 | (uint32_t) h [1] << 16 | (uint32_t) h [2] << 8 | h [3];
        if (len > MAX_FRAME)
            die ("child announced a frame above the limit");
        if (c->in.size - c->in.start - 4 < len)
            break;
        on_frame (c, c->in.data + c->in.start + 4, len);
        c->in.start += 4 + len;
    }
    return true;
}

static void on_writable (child_t *c)
{
    while (c->out.start < c->out.size) {
        ssize_t n = write (c->req_fd, c->out.data + c->out.start, c->out.size - c->out.start);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            die ("write");
        }
        c->out.start += (size_t) n;
    }
}

static int cmp_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

//  One poll round over every child; dies if nothing happens for IO_TIMEOUT_MS.
static void pump (void)
{
    struct pollfd fds [MAX_CHILDREN * 2];
    for (int i = 0; i < nchildren; i++) {
        fds [2 * i] = (struct pollfd) {.fd = children [i].reply_fd, .events = POLLIN};
        bool pending = children [i].out.start < children [i].out.size;
        fds [2 * i + 1] = (struct pollfd) {.fd = pending ? children [i].req_fd : -1, .events = POLLOUT};
    }
    int rc = poll (fds, (nfds_t) nchildren * 2, IO_TIMEOUT_MS);
    if (rc < 0 && errno != EINTR)
        die ("poll");
    if (rc == 0) {
        errno = 0;
        die ("no progress for 30 s");
    }
    for (int i = 0; i < nchildren; i++) {
        if (fds [2 * i + 1].revents & (POLLOUT | POLLERR))
            on_writable (&children [i]);
        if (fds [2 * i].revents & (POLLIN | POLLHUP)) {
            if (!on_readable (&children [i])) {
                errno = 0;
                die ("a child closed its pipe");
            }
        }
    }
}

int main (int argc, char **argv)
{
    long count = 1000, concurrency = 64, size = 100;
    double burn_ms = 1;
    const char *cmd = "echo", *python = "/usr/bin/python3", *module = NULL;
    static struct option options [] = {
        {"children", 1, 0, 'n'}, {"count", 1, 0, 'c'}, {"concurrency", 1, 0, 'C'},
        {"size", 1, 0, 's'},     {"cmd", 1, 0, 'x'},   {"ms", 1, 0, 'm'},
        {"python", 1, 0, 'p'},   {"module", 1, 0, 'M'}, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long (argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
            case 'n': nchildren = atoi (optarg); break;
            case 'c': count = atol (optarg); break;
            case 'C': concurrency = atol (optarg); break;
            case 's': size = atol (optarg); break;
            case 'x': cmd = optarg; break;
            case 'm': burn_ms = atof (optarg); break;
            case 'p': python = optarg; break;
            case 'M': module = optarg; break;
            default:
                fprintf (stderr, "usage: floor [--children N] [--count N] [--concurrency C] "
                                 "[--size BYTES] [--cmd echo|burn] [--ms MS] [--python PATH] "
                                 "[--module FILE]\n");
                return 2;
        }
    }
    if (nchildren < 1 || nchildren > MAX_CHILDREN || count < 1 || concurrency < 1 || size < 0
        || (strcmp (cmd, "echo") && strcmp (cmd, "burn"))) {
        fprintf (stderr, "floor: bad arguments\n");
        return 2;
    }
    signal (SIGPIPE, SIG_IGN);

    char *child_argv [] = {(char *) python, "-m", "pyfleet_bridge", "--beat-ms", "0",
                           module ? "--module" : NULL, (char *) module, NULL};
    for (int i = 0; i < nchildren; i++)
        spawn (&children [i], child_argv);

    //  Every child says ready before the clock starts, as pyfleet's bridges do.
    uint64_t deadline = now_ns () + (uint64_t) IO_TIMEOUT_MS * 1000000;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < nchildren; i++)
            ready += children [i].ready;
        if (ready == nchildren)
            break;
        if (now_ns () > deadline) {
            errno = 0;
            die ("children not ready within 30 s");
        }
        pump ();
    }

    //  The args, packed once: {"d": "xxx..."} or {"ms": M}, like every driver.
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    if (strcmp (cmd, "echo") == 0) {
        char *text = malloc ((size_t) size + 1);
        if (!text)
            die ("out of memory");
        memset (text, 'x', (size_t) size);
        msgpack_pack_str_with_body (&pk, "d", 1);
        msgpack_pack_str_with_body (&pk, text, (size_t) size);
        free (text);
    }
    else {
        msgpack_pack_str_with_body (&pk, "ms", 2);
        msgpack_pack_double (&pk, burn_ms);
    }

    sent_at = calloc ((size_t) count + 1, sizeof *sent_at);
    latency_us = calloc ((size_t) count, sizeof *latency_us);
    if (!sent_at || !latency_us)
        die ("out of memory");
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);

    uint64_t start = now_ns ();
    long sent = 0;
    size_t inflight_total = 0;
    while (answered < (size_t) count) {
        inflight_total = (size_t) sent - answered;
        while (sent < count && inflight_total < (size_t) concurrency) {
            child_t *c = &children [0];  //  the least loaded child
            for (int i = 1; i < nchildren; i++)
                if (children [i].inflight < c->inflight)
                    c = &children [i];
            uint64_t id = (uint64_t) ++sent;
            msgpack_sbuffer_clear (&frame);
            msgpack_packer fp;
            msgpack_packer_init (&fp, &frame, msgpack_sbuffer_write);
            msgpack_pack_map (&fp, 4);
            msgpack_pack_str_with_body (&fp, "id", 2);
            msgpack_pack_uint64 (&fp, id);
            msgpack_pack_str_with_body (&fp, "cmd", 3);
            msgpack_pack_str_with_body (&fp, cmd, strlen (cmd));
            msgpack_pack_str_with_body (&fp, "args", 4);
            msgpack_sbuffer_write (&frame, args.data, args.size);
            msgpack_pack_str_with_body (&fp, "session", 7);
            msgpack_pack_nil (&fp);
            unsigned char h [4] = {(unsigned char) (frame.size >> 24), (unsigned char) (frame.size >> 16),
                                   (unsigned char) (frame.size >> 8), (unsigned char) frame.size};
            buf_append (&c->out, h, 4);
            buf_append (&c->out, frame.data, frame.size);
            sent_at [id] = now_ns ();
            c->inflight++;
            inflight_total++;
        }
        for (int i = 0; i < nchildren; i++)
            on_writable (&children [i]);
        pump ();
    }
    double elapsed = (double) (now_ns () - start) / 1e9;

    size_t ok = answered - errors;
    qsort (latency_us, ok, sizeof *latency_us, cmp_u32);
    uint32_t p50 = ok ? latency_us [ok / 2] : 0;
    uint32_t p99 = ok ? latency_us [(size_t) (0.99 * (double) ok) < ok ? (size_t) (0.99 * (double) ok) : ok - 1] : 0;
    uint32_t max = ok ? latency_us [ok - 1] : 0;
    printf ("{\"requests\":%zu,\"errors\":%zu,\"elapsed_s\":%.6f,\"req_per_s\":%.1f,"
            "\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u}\n",
            answered, errors, elapsed, elapsed > 0 ? (double) ok / elapsed : 0.0, p50, p99, max);

    //  End of input makes each bridge exit; reap them (bounded), then insist.
    for (int i = 0; i < nchildren; i++)
        close (children [i].req_fd);
    for (int i = 0; i < nchildren; i++) {
        int status;
        pid_t r = 0;
        for (int tries = 0; tries < 200 && r == 0; tries++) {
            r = waitpid (children [i].pid, &status, WNOHANG);
            if (r == 0)
                usleep (10000);
        }
        if (r == 0) {
            kill (children [i].pid, SIGKILL);
            waitpid (children [i].pid, &status, 0);
        }
        close (children [i].reply_fd);
        free (children [i].in.data);
        free (children [i].out.data);
    }
    msgpack_sbuffer_destroy (&frame);
    msgpack_sbuffer_destroy (&args);
    free (sent_at);
    free (latency_us);
    return errors ? 1 : 0;
}
