/*  =========================================================================
    sessions - the live-sessions load generator of the benchmarks (workload g).

    Opens S sessions on a pyfleet service (one `echo` per session, C in
    flight), then sends M more requests spread over all S sessions and
    prints one JSON object: requests, errors, req_per_s, p50_us, p99_us,
    max_us (of the M requests) and open_s (time to open the S sessions).
    Any error reply makes it exit 1 with the error on stderr, which the
    harness reports as "unsupported" (a broker without sessions).

    Built by bench/run.sh against build/lib/libpyfleet.a.
    =========================================================================
*/

#define _GNU_SOURCE
#include "pyfleet.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int cmp_u32 (const void *a, const void *b)
{
    unsigned x = *(const unsigned *) a, y = *(const unsigned *) b;
    return x < y ? -1 : x > y;
}

//  Sends count requests, concurrency in flight, request i in session
//  "s<session_of(i)>". Latencies (µs) go to lat if not NULL. Returns errors.
static long run (pf_client_t *client, const char *service, long count, long concurrency,
                 long sessions, long stride, unsigned *lat)
{
    static const unsigned char args [] = {0x81, 0xa1, 'd', 0xa1, 'x'};  //  {"d": "x"}
    double *sent_at = calloc ((size_t) count, sizeof *sent_at);
    if (!sent_at)
        return count;
    uint64_t first = 0;
    long sent = 0, done = 0, errors = 0;
    char name [32];
    while (done < count) {
        while (sent < count && sent - done < concurrency) {
            snprintf (name, sizeof name, "s%ld", (sent * stride) % sessions);
            pf_call_options_t options = {.session = name, .timeout_ms = 60000};
            uint64_t id;
            if (pf_send (client, service, "echo", args, sizeof args, &options, &id)) {
                fprintf (stderr, "sessions: pf_send: %s\n", pf_client_error (client));
                free (sent_at);
                return count;
            }
            if (sent == 0)
                first = id;
            sent_at [id - first] = now_s ();
            sent++;
        }
        pf_reply_t *reply = pf_recv (client, 70000);
        if (!reply) {
            fprintf (stderr, "sessions: no reply within 70 s\n");
            free (sent_at);
            return count;
        }
        uint64_t idx = pf_reply_request_id (reply) - first;
        if (!pf_reply_ok (reply)) {
            if (errors == 0)
                fprintf (stderr, "sessions: %s: %s\n", pf_reply_code_name (reply), pf_reply_message (reply));
            errors++;
        }
        else if (lat && idx < (uint64_t) count)
            lat [done - errors] = (unsigned) ((now_s () - sent_at [idx]) * 1e6);
        pf_reply_destroy (&reply);
        done++;
    }
    free (sent_at);
    return errors;
}

int main (int argc, char **argv)
{
    const char *endpoint = "tcp://127.0.0.1:5555", *service = "bench";
    long sessions = 1000, count = 10000, concurrency = 64;
    static struct option options [] = {{"broker", 1, 0, 'b'},   {"service", 1, 0, 's'},
                                       {"sessions", 1, 0, 'S'}, {"count", 1, 0, 'n'},
                                       {"concurrency", 1, 0, 'c'}, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long (argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
            case 'b': endpoint = optarg; break;
            case 's': service = optarg; break;
            case 'S': sessions = atol (optarg); break;
            case 'n': count = atol (optarg); break;
            case 'c': concurrency = atol (optarg); break;
            default:
                fprintf (stderr, "usage: sessions [--broker EP] [--service S] [--sessions N] "
                                 "[--count M] [--concurrency C]\n");
                return 2;
        }
    }
    if (sessions < 1 || count < 1 || concurrency < 1) {
        fprintf (stderr, "sessions: counts must be positive\n");
        return 2;
    }
    pf_client_t *client = pf_client_new (endpoint);
    unsigned *lat = calloc ((size_t) count, sizeof *lat);
    if (!client || !lat) {
        fprintf (stderr, "sessions: cannot create the client\n");
        return 1;
    }
    double t0 = now_s ();
    long errors = run (client, service, sessions, concurrency, sessions, 1, NULL);
    double open_s = now_s () - t0;
    if (errors == 0) {
        t0 = now_s ();
        //  A stride coprime with most session counts visits sessions in a scattered order.
        errors = run (client, service, count, concurrency, sessions, 7919, lat);
    }
    double elapsed = now_s () - t0;
    long ok = errors ? 0 : count;
    qsort (lat, (size_t) ok, sizeof *lat, cmp_u32);
    printf ("{\"requests\":%ld,\"errors\":%ld,\"sessions\":%ld,\"open_s\":%.3f,\"elapsed_s\":%.6f,"
            "\"req_per_s\":%.1f,\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u}\n",
            count, errors, sessions, open_s, elapsed, ok ? (double) ok / elapsed : 0.0,
            ok ? lat [ok / 2] : 0, ok ? lat [(long) (0.99 * (double) ok)] : 0, ok ? lat [ok - 1] : 0);
    free (lat);
    pf_client_destroy (&client);
    return errors ? 1 : 0;
}
