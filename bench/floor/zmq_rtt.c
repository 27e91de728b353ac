/*  zmq_rtt — ZeroMQ's own latency floor on this machine: one round trip
    between two processes (DEALER -> ROUTER that echoes -> DEALER), 100-byte
    messages, one at a time. A pyfleet request crosses at least one of these
    (client <-> broker) before anything else runs (docs/PERFORMANCE.md (b)).
    With a unix:// endpoint, the same round trip over a Unix stream socket
    with blocking reads and writes, what a unix:// client's request crosses.

    Usage: zmq_rtt COUNT ENDPOINT [CPU CPU]   (e.g. 5000 tcp://127.0.0.1:5999,
    ipc:///tmp/rtt.sock or unix:///tmp/rtt.stream; a tcp port below the
    kernel's ephemeral range). With two CPU numbers, the measuring process
    runs on the first and the echoing one on the second: the same one for
    wake-ups within a CPU, two for wake-ups across CPUs.
    Prints one JSON line: {"endpoint", "count", "p50_us", "p99_us",
    "cpu_us_per_rtt"}, the last being both processes' CPU time per round
    trip (from their rusage, so the ZeroMQ I/O threads are in it).
    Every wait is bounded: the echo process gives up after 10 s without a
    message, the measuring one after 5 s without an answer. */
#define _GNU_SOURCE
#include <czmq.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE 100

static int compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

//  Reads exactly size bytes, waiting at most timeout_ms for each part.
static int read_all (int fd, char *data, size_t size, int timeout_ms)
{
    for (size_t got = 0; got < size;) {
        struct pollfd item = {fd, POLLIN, 0};
        ssize_t part = poll (&item, 1, timeout_ms) == 1 ? read (fd, data + got, size - got) : -1;
        if (part <= 0) return -1;
        got += (size_t) part;
    }
    return 0;
}

static int unix_address (const char *endpoint, struct sockaddr_un *address)
{
    *address = (struct sockaddr_un){.sun_family = AF_UNIX};
    const char *path = endpoint + strlen ("unix://");
    if (strlen (path) >= sizeof address->sun_path) return -1;
    strcpy (address->sun_path, path);
    return 0;
}

//  The echo side over a Unix stream socket.
static int echo_unix (int count, const char *endpoint, int report_fd)
{
    struct sockaddr_un address;
    int listener = socket (AF_UNIX, SOCK_STREAM, 0);
    bool named = unix_address (endpoint, &address) == 0;
    if (named) unlink (address.sun_path);
    char status = listener >= 0 && named
                          && bind (listener, (struct sockaddr *) &address, sizeof address) == 0
                          && listen (listener, 1) == 0
                      ? 'B'
                      : 'F';
    if (write (report_fd, &status, 1) != 1 || status != 'B') return 1;
    struct pollfd item = {listener, POLLIN, 0};
    int fd = poll (&item, 1, 10000) == 1 ? accept (listener, NULL, NULL) : -1;
    int rc = fd < 0;
    char body[SIZE];
    for (int i = 0; i < count + 1 && rc == 0; i++)
        rc = read_all (fd, body, SIZE, 10000) != 0 || write (fd, body, SIZE) != SIZE;
    close (fd);
    close (listener);
    unlink (address.sun_path);
    return rc;
}

//  The measuring side over a Unix stream socket; 0 if every round trip ran.
static int measure_unix (int count, const char *endpoint, int64_t *latency)
{
    struct sockaddr_un address;
    int fd = socket (AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || unix_address (endpoint, &address) != 0
        || connect (fd, (struct sockaddr *) &address, sizeof address) != 0) {
        if (fd >= 0) close (fd);
        return 1;
    }
    char body[SIZE];
    memset (body, 'x', sizeof body);
    int rc = 0;
    for (int i = -1; i < count && rc == 0; i++) {
        int64_t start = zclock_usecs ();
        rc = write (fd, body, SIZE) != SIZE || read_all (fd, body, SIZE, 5000) != 0;
        if (rc == 0 && i >= 0) latency[i] = zclock_usecs () - start;
    }
    close (fd);
    return rc;
}

//  The echo side: binds, says so to the parent, echoes count + 1 messages.
static int echo (int count, const char *endpoint, int report_fd)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_rcvtimeo (router, 10000);
    zsock_set_linger (router, 2000); //  the last echo must leave before the socket closes
    char status = zsock_bind (router, "%s", endpoint) < 0 ? 'F' : 'B';
    if (write (report_fd, &status, 1) != 1 || status != 'B') {
        zsock_destroy (&router);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < count + 1; i++) {
        zmsg_t *msg = zmsg_recv (router);
        if (!msg) {
            rc = 1;
            break;
        }
        zmsg_send (&msg, router);
    }
    zsock_destroy (&router);
    zsys_shutdown (); //  ends the context, which sends what lingers (_exit runs no atexit)
    return rc;
}

//  Pins the calling process to cpu (none if negative); false if it cannot.
static bool pin (int cpu)
{
    if (cpu < 0) return true;
    cpu_set_t set;
    CPU_ZERO (&set);
    CPU_SET (cpu, &set);
    return sched_setaffinity (0, sizeof set, &set) == 0;
}

static double cpu_us (const struct rusage *usage)
{
    return (double) (usage->ru_utime.tv_sec + usage->ru_stime.tv_sec) * 1e6
         + (double) (usage->ru_utime.tv_usec + usage->ru_stime.tv_usec);
}

int main (int argc, char *argv[])
{
    bool args_ok = argc == 3 || argc == 5;
    int count = args_ok ? atoi (argv[1]) : 0;
    const char *endpoint = args_ok ? argv[2] : "";
    int cpus[2] = {argc == 5 ? atoi (argv[3]) : -1, argc == 5 ? atoi (argv[4]) : -1};
    bool unix_stream = strncmp (endpoint, "unix://", 7) == 0;
    if (count < 1 || count > 10000000
        || (strncmp (endpoint, "tcp://", 6) != 0 && strncmp (endpoint, "ipc://", 6) != 0
            && !unix_stream)) {
        fprintf (stderr, "usage: zmq_rtt COUNT tcp://HOST:PORT|ipc://PATH|unix://PATH [CPU CPU]\n");
        return 2;
    }
    if (!pin (cpus[0])) {
        fprintf (stderr, "zmq_rtt: cannot run on CPU %d\n", cpus[0]);
        return 2;
    }
    int report[2];
    if (pipe (report) != 0)
        return 1;
    //  Fork before either side makes a ZeroMQ context.
    pid_t pid = fork ();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        close (report[0]);
        if (!pin (cpus[1])) _exit (2);
        _exit (unix_stream ? echo_unix (count, endpoint, report[1])
                           : echo (count, endpoint, report[1]));
    }
    close (report[1]);
    char bound = 0;
    struct pollfd item = {report[0], POLLIN, 0};
    ssize_t got = poll (&item, 1, 5000) == 1 ? read (report[0], &bound, 1) : -1;
    close (report[0]);
    int rc = 1;
    int64_t *latency = malloc ((size_t) count * sizeof *latency);
    struct rusage before, after, echo_usage = {0};
    getrusage (RUSAGE_SELF, &before);
    if (unix_stream && got == 1 && bound == 'B' && latency)
        rc = measure_unix (count, endpoint, latency);
    zsock_t *dealer = !unix_stream && got == 1 && bound == 'B' ? zsock_new (ZMQ_DEALER) : NULL;
    if (dealer && latency && zsock_connect (dealer, "%s", endpoint) == 0) {
        zsock_set_rcvtimeo (dealer, 5000);
        void *socket = zsock_resolve (dealer);
        char body[SIZE], answer[2 * SIZE];
        memset (body, 'x', sizeof body);
        rc = 0;
        //  One warm-up round trip (connection set up), then the measured ones.
        for (int i = -1; i < count && rc == 0; i++) {
            int64_t start = zclock_usecs ();
            if (zmq_send (socket, body, sizeof body, 0) < 0
                || zmq_recv (socket, answer, sizeof answer, 0) < 0)
                rc = 1;
            else if (i >= 0)
                latency[i] = zclock_usecs () - start;
        }
    }
    zsock_destroy (&dealer);
    getrusage (RUSAGE_SELF, &after);
    if (rc != 0) {
        fprintf (stderr, "zmq_rtt: no echo from the other process on %s\n", endpoint);
        kill (pid, SIGKILL);
    }
    int status = 0;
    wait4 (pid, &status, 0, &echo_usage);
    if (rc == 0) {
        qsort (latency, (size_t) count, sizeof *latency, compare);
        printf ("{\"endpoint\":\"%s\",\"count\":%d,\"p50_us\":%lld,\"p99_us\":%lld,"
                "\"cpu_us_per_rtt\":%.1f}\n",
                endpoint, count, (long long) latency[count / 2], (long long) latency[count * 99 / 100],
                (cpu_us (&after) - cpu_us (&before) + cpu_us (&echo_usage)) / count);
    }
    free (latency);
    return rc != 0 || !WIFEXITED (status) || WEXITSTATUS (status) != 0;
}
