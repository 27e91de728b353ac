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

    --relay: the floor of any broker. The load comes from a separate client
    process over a Unix stream socket (a socketpair), and this process only
    relays: each request frame to the least loaded child, each answer back,
    in one thread, reading the client whenever it has written. No ZeroMQ,
    sessions, deadlines or bounds: what a client process plus one relaying
    thread cost on this machine. The JSON adds client_cpu_us_per_req and
    relay_cpu_us_per_req. --lazy (with --relay): while every child has a
    request waiting behind the one it runs, the relay does not wake for the
    client; it reads the client when a child answers (or after 5 ms).
    --proxy (with --relay): a second thread stands between the client and
    the relay, copying bytes between the client's socket and another
    socketpair to the relay: what one more thread on the path costs (as
    pyfleet's broker and local agent are two threads).

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
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
static bool relay;         //  --relay: answers go back to the client
static bool lazy;          //  --lazy: see above
static buf_t to_client;

static void append_frame (buf_t *b, const void *data, size_t size)
{
    unsigned char h [4] = {(unsigned char) (size >> 24), (unsigned char) (size >> 16),
                           (unsigned char) (size >> 8), (unsigned char) size};
    buf_append (b, h, 4);
    buf_append (b, data, size);
}

//  Counts one answer and its latency (the parent, or the relay's client).
static void account (msgpack_object *reply)
{
    msgpack_object *id = map_get (reply, "id");
    if (!id || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER || id->via.u64 == 0)
        die ("a reply without an id");
    msgpack_object *ok = map_get (reply, "ok");
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean)
        errors++;
    else
        latency_us [answered - errors] = (uint32_t) ((now_ns () - sent_at [id->via.u64]) / 1000);
    answered++;
}

//  Unpacks one frame (a single msgpack object) into msg.
static void unpack (msgpack_unpacked *msg, const char *data, size_t size)
{
    msgpack_unpacked_init (msg);
    size_t off = 0;
    if (msgpack_unpack_next (msg, data, size, &off) != MSGPACK_UNPACK_SUCCESS || off != size)
        die ("a frame that is not one msgpack object");
}

//  Handles one frame from a child: ready, beat (skipped) or a reply.
static void on_frame (child_t *c, const char *data, size_t size)
{
    msgpack_unpacked msg;
    unpack (&msg, data, size);
    msgpack_object *event = map_get (&msg.data, "event");
    if (event && event->type == MSGPACK_OBJECT_STR) {
        if (event->via.str.size == 5 && memcmp (event->via.str.ptr, "ready", 5) == 0)
            c->ready = true;
    }
    else {
        if (relay)
            append_frame (&to_client, data, size);
        else
            account (&msg.data);
        c->inflight--;
    }
    msgpack_unpacked_destroy (&msg);
}

//  Takes every complete frame off the front of b, handing each to fn.
static void split_frames (buf_t *b, void (*fn) (void *arg, const char *data, size_t size), void *arg)
{
    while (b->size - b->start >= 4) {
        const unsigned char *h = (const unsigned char *) b->data + b->start;
        uint32_t len = (uint32_t) h [0] << 24 | (uint32_t) h [1] << 16 | (uint32_t) h [2] << 8 | h [3];
        if (len > MAX_FRAME)
            die ("a frame above the limit");
        if (b->size - b->start - 4 < len)
            break;
        fn (arg, b->data + b->start + 4, len);
        b->start += 4 + len;
    }
}

static void child_frame (void *arg, const char *data, size_t size)
{
    on_frame (arg, data, size);
}

//  Reads what fd has for b; false at end of file.
static bool read_into (int fd, buf_t *b)
{
    char chunk [262144];
    for (;;) {
        ssize_t n = read (fd, chunk, sizeof chunk);
        if (n == 0)
            return false;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return true;
            die ("read");
        }
        buf_append (b, chunk, (size_t) n);
        if ((size_t) n < sizeof chunk)
            return true;
    }
}

//  Writes what b holds, as far as fd takes it.
static void write_from (int fd, buf_t *b)
{
    while (b->start < b->size) {
        ssize_t n = write (fd, b->data + b->start, b->size - b->start);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            die ("write");
        }
        b->start += (size_t) n;
    }
}

//  Reads what the child has written and handles every complete frame.
//  Returns false at end of file.
static bool on_readable (child_t *c)
{
    bool open = read_into (c->reply_fd, &c->in);
    split_frames (&c->in, child_frame, c);
    return open;
}

static int cmp_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

//  The least loaded child.
static child_t *least_loaded (void)
{
    child_t *c = &children [0];
    for (int i = 1; i < nchildren; i++)
        if (children [i].inflight < c->inflight)
            c = &children [i];
    return c;
}

//  Relay: a request frame from the client goes to the least loaded child.
static void client_frame (void *arg, const char *data, size_t size)
{
    (void) arg;
    child_t *c = least_loaded ();
    append_frame (&c->out, data, size);
    c->inflight++;
}

//  One poll round over every child and, relaying, the client's socket
//  (client_fd >= 0; returns false once the client has closed it). Dies if
//  nothing happens for IO_TIMEOUT_MS.
static bool pump (int client_fd, buf_t *from_client)
{
    struct pollfd fds [MAX_CHILDREN * 2 + 1];
    for (int i = 0; i < nchildren; i++) {
        fds [2 * i] = (struct pollfd) {.fd = children [i].reply_fd, .events = POLLIN};
        bool pending = children [i].out.start < children [i].out.size;
        fds [2 * i + 1] = (struct pollfd) {.fd = pending ? children [i].req_fd : -1, .events = POLLOUT};
    }
    bool later = lazy && client_fd >= 0;  //  every child has one waiting
    for (int i = 0; i < nchildren && later; i++)
        later = children [i].inflight >= 2;
    short to_write = to_client.start < to_client.size ? POLLOUT : 0;
    fds [2 * nchildren] = (struct pollfd) {.fd = client_fd, .events = (short) ((later ? 0 : POLLIN) | to_write)};
    int rc = poll (fds, (nfds_t) nchildren * 2 + 1, later ? 5 : IO_TIMEOUT_MS);
    if (rc < 0 && errno != EINTR)
        die ("poll");
    static uint64_t quiet_since;  //  lazy polls that time out are bounded too
    if (rc > 0)
        quiet_since = 0;
    else if (rc == 0 && later && !quiet_since)
        quiet_since = now_ns ();
    if (rc == 0 && (!later || now_ns () - quiet_since > (uint64_t) IO_TIMEOUT_MS * 1000000)) {
        errno = 0;
        die ("no progress for 30 s");
    }
    for (int i = 0; i < nchildren; i++) {
        if (fds [2 * i + 1].revents & (POLLOUT | POLLERR))
            write_from (children [i].req_fd, &children [i].out);
        if (fds [2 * i].revents & (POLLIN | POLLHUP)) {
            if (!on_readable (&children [i])) {
                errno = 0;
                die ("a child closed its pipe");
            }
        }
    }
    if (client_fd < 0)
        return true;
    bool open = true;
    if (later || fds [2 * nchildren].revents & (POLLIN | POLLHUP | POLLERR)) {
        open = read_into (client_fd, from_client);
        split_frames (from_client, client_frame, NULL);
        for (int i = 0; i < nchildren; i++)
            write_from (children [i].req_fd, &children [i].out);
    }
    write_from (client_fd, &to_client);
    return open;
}

//  Appends request id as one frame: {"id", "cmd", "args" (packed once), "session": nil}.
static void pack_request (buf_t *out, msgpack_sbuffer *frame, uint64_t id, const char *cmd,
                          const msgpack_sbuffer *args)
{
    msgpack_sbuffer_clear (frame);
    msgpack_packer fp;
    msgpack_packer_init (&fp, frame, msgpack_sbuffer_write);
    msgpack_pack_map (&fp, 4);
    msgpack_pack_str_with_body (&fp, "id", 2);
    msgpack_pack_uint64 (&fp, id);
    msgpack_pack_str_with_body (&fp, "cmd", 3);
    msgpack_pack_str_with_body (&fp, cmd, strlen (cmd));
    msgpack_pack_str_with_body (&fp, "args", 4);
    msgpack_sbuffer_write (frame, args->data, args->size);
    msgpack_pack_str_with_body (&fp, "session", 7);
    msgpack_pack_nil (&fp);
    append_frame (out, frame->data, frame->size);
}

//  The relay's client: its answers are counted like the parent's own.
static void client_answer (void *arg, const char *data, size_t size)
{
    (void) arg;
    msgpack_unpacked msg;
    unpack (&msg, data, size);
    account (&msg.data);
    msgpack_unpacked_destroy (&msg);
}

//  The relay's client process: count requests, concurrency in flight, over
//  the blocking socket fd. Its results go to the parent through results_fd.
static int run_client (int fd, int results_fd, long count, long concurrency, const char *cmd,
                       const msgpack_sbuffer *args)
{
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    buf_t out = {0}, in = {0};
    long sent = 0;
    uint64_t start = now_ns ();
    while (answered < (size_t) count) {
        while (sent < count && (size_t) sent - answered < (size_t) concurrency) {
            pack_request (&out, &frame, (uint64_t) ++sent, cmd, args);
            sent_at [sent] = now_ns ();
        }
        write_from (fd, &out);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll (&pfd, 1, IO_TIMEOUT_MS) != 1) {
            errno = 0;
            die ("client: no answer for 30 s");
        }
        if (!read_into (fd, &in)) {
            errno = 0;
            die ("client: the relay closed the socket");
        }
        split_frames (&in, client_answer, NULL);
    }
    double elapsed = (double) (now_ns () - start) / 1e9;
    close (fd);  //  the relay's end of file: it reads the results next
    if (write (results_fd, &elapsed, sizeof elapsed) != sizeof elapsed
        || write (results_fd, &answered, sizeof answered) != sizeof answered
        || write (results_fd, &errors, sizeof errors) != sizeof errors
        || write (results_fd, latency_us, (answered - errors) * sizeof *latency_us)
               != (ssize_t) ((answered - errors) * sizeof *latency_us))
        die ("client: results");
    free (out.data);
    free (in.data);
    msgpack_sbuffer_destroy (&frame);
    return 0;
}

//  --proxy: copies bytes both ways between fds[0] (the client's socket) and
//  fds[1] (the relay's) until the client closes; then closes fds[1].
static void *proxy (void *arg)
{
    int *fds = arg;
    buf_t to_relay = {0}, to_client_side = {0};
    for (;;) {
        struct pollfd f [2] = {
            {fds [0], (short) (POLLIN | (to_client_side.start < to_client_side.size ? POLLOUT : 0)), 0},
            {fds [1], (short) (POLLIN | (to_relay.start < to_relay.size ? POLLOUT : 0)), 0}};
        if (poll (f, 2, IO_TIMEOUT_MS) <= 0) {
            errno = 0;
            die ("proxy: no progress for 30 s");
        }
        if (f [0].revents & (POLLIN | POLLHUP | POLLERR) && !read_into (fds [0], &to_relay))
            break;
        if (f [1].revents & (POLLIN | POLLHUP | POLLERR))
            read_into (fds [1], &to_client_side);
        write_from (fds [1], &to_relay);
        write_from (fds [0], &to_client_side);
    }
    close (fds [1]);
    free (to_relay.data);
    free (to_client_side.data);
    return NULL;
}

//  Reads exactly size bytes (the relay's client results); dies on a short read.
static void read_all (int fd, void *data, size_t size)
{
    for (size_t got = 0; got < size;) {
        ssize_t n = read (fd, (char *) data + got, size - got);
        if (n <= 0) {
            errno = 0;
            die ("the client's results were cut short");
        }
        got += (size_t) n;
    }
}

static double cpu_us (const struct rusage *r)
{
    return (double) (r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1e6
         + (double) (r->ru_utime.tv_usec + r->ru_stime.tv_usec);
}

int main (int argc, char **argv)
{
    long count = 1000, concurrency = 64, size = 100;
    double burn_ms = 1;
    bool with_proxy = false;
    const char *cmd = "echo", *python = "/usr/bin/python3", *module = NULL;
    static struct option options [] = {
        {"children", 1, 0, 'n'}, {"count", 1, 0, 'c'}, {"concurrency", 1, 0, 'C'},
        {"size", 1, 0, 's'},     {"cmd", 1, 0, 'x'},   {"ms", 1, 0, 'm'},
        {"python", 1, 0, 'p'},   {"module", 1, 0, 'M'}, {"relay", 0, 0, 'r'},
        {"lazy", 0, 0, 'l'},    {"proxy", 0, 0, 'P'},
        {0, 0, 0, 0}};
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
            case 'r': relay = true; break;
            case 'l': lazy = true; break;
            case 'P': with_proxy = true; break;
            default:
                fprintf (stderr, "usage: floor [--children N] [--count N] [--concurrency C] "
                                 "[--size BYTES] [--cmd echo|burn] [--ms MS] [--python PATH] "
                                 "[--module FILE] [--relay [--lazy] [--proxy]]\n");
                return 2;
        }
    }
    if (nchildren < 1 || nchildren > MAX_CHILDREN || count < 1 || concurrency < 1 || size < 0
        || (strcmp (cmd, "echo") && strcmp (cmd, "burn")) || ((lazy || with_proxy) && !relay)) {
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
        pump (-1, NULL);
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

    double elapsed, client_cpu = 0, relay_cpu = 0;
    if (relay) {
        //  The client is a process of its own; this one only relays.
        int sv [2], results [2];
        if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || pipe2 (results, O_CLOEXEC))
            die ("socketpair");
        fflush (NULL);
        pid_t client = fork ();
        if (client < 0)
            die ("fork");
        if (client == 0) {
            for (int i = 0; i < nchildren; i++)
                children [i].pid = 0;  //  not the client's to kill
            close (sv [0]);
            close (results [0]);
            _exit (run_client (sv [1], results [1], count, concurrency, cmd, &args));
        }
        close (sv [1]);
        close (results [1]);
        fcntl (sv [0], F_SETFL, O_NONBLOCK);
        int relay_fd = sv [0], proxied [2] = {sv [0], -1}, inner [2];
        pthread_t proxy_thread;
        if (with_proxy) {
            if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, inner))
                die ("socketpair");
            proxied [1] = inner [0];
            relay_fd = inner [1];
            fcntl (inner [0], F_SETFL, O_NONBLOCK);
            if (pthread_create (&proxy_thread, NULL, proxy, proxied))
                die ("pthread_create");
        }
        fcntl (relay_fd, F_SETFL, O_NONBLOCK);
        struct rusage before, after, client_usage;
        getrusage (RUSAGE_SELF, &before);  //  every thread of the relay
        buf_t from_client = {0};
        while (pump (relay_fd, &from_client))
            ;
        getrusage (RUSAGE_SELF, &after);
        if (with_proxy) {
            pthread_join (proxy_thread, NULL);
            close (relay_fd);
        }
        read_all (results [0], &elapsed, sizeof elapsed);
        read_all (results [0], &answered, sizeof answered);
        read_all (results [0], &errors, sizeof errors);
        if (answered != (size_t) count || errors > answered) {
            errno = 0;
            die ("the client's results do not add up");
        }
        read_all (results [0], latency_us, (answered - errors) * sizeof *latency_us);
        int status;
        if (wait4 (client, &status, 0, &client_usage) != client || !WIFEXITED (status)
            || WEXITSTATUS (status) != 0) {
            errno = 0;
            die ("the client failed");
        }
        client_cpu = cpu_us (&client_usage) / (double) count;
        relay_cpu = (cpu_us (&after) - cpu_us (&before)) / (double) count;
        close (sv [0]);
        close (results [0]);
        free (from_client.data);
    }
    else {
        uint64_t start = now_ns ();
        long sent = 0;
        while (answered < (size_t) count) {
            while (sent < count && (size_t) sent - answered < (size_t) concurrency) {
                child_t *c = least_loaded ();
                pack_request (&c->out, &frame, (uint64_t) ++sent, cmd, &args);
                sent_at [sent] = now_ns ();
                c->inflight++;
            }
            for (int i = 0; i < nchildren; i++)
                write_from (children [i].req_fd, &children [i].out);
            pump (-1, NULL);
        }
        elapsed = (double) (now_ns () - start) / 1e9;
    }

    size_t ok = answered - errors;
    qsort (latency_us, ok, sizeof *latency_us, cmp_u32);
    uint32_t p50 = ok ? latency_us [ok / 2] : 0;
    uint32_t p99 = ok ? latency_us [(size_t) (0.99 * (double) ok) < ok ? (size_t) (0.99 * (double) ok) : ok - 1] : 0;
    uint32_t max = ok ? latency_us [ok - 1] : 0;
    printf ("{\"requests\":%zu,\"errors\":%zu,\"elapsed_s\":%.6f,\"req_per_s\":%.1f,"
            "\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u",
            answered, errors, elapsed, elapsed > 0 ? (double) ok / elapsed : 0.0, p50, p99, max);
    if (relay)
        printf (",\"client_cpu_us_per_req\":%.1f,\"relay_cpu_us_per_req\":%.1f", client_cpu, relay_cpu);
    printf ("}\n");
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
