/*  bench-broker-sessions — the broker's session table at scale, no Python,
    no sockets: the broker logic (pf_broker) driven in-process by a C client
    and a C echo agent that answers every request at once.

    For each session count S it opens S sessions (one request each), reports
    the heap bytes per session (mallinfo2 delta), then routes R requests to
    sessions picked at random and reports routed requests per second. The
    session table's cost per lookup is what grows with S, so the ratio of
    throughput at 1 000 000 vs 1 000 sessions is the figure of merit.

    usage: bench-broker-sessions [SESSIONS ...] [--requests R] [--json] */
#include "pf_broker.h"
#include "pf_proto.h"
#include <malloc.h>

#define BRIDGES 64

typedef struct {
    zlistx_t *to_agent; //  W REQUESTs the broker sent, answered after handle returns
    uint64_t replies;
    uint64_t errors;
} harness_t;

static zframe_t *agent_id, *client_id;

static int capture (void *arg, zframe_t *routing_id, pf_msg_t *out, int flags)
{
    harness_t *harness = arg;
    if (zframe_eq (routing_id, agent_id)) {
        //  PF_MSG_KEEP: the body stays the broker's; encode a copy of it.
        pf_msg_t shared = *out;
        if (flags & PF_MSG_KEEP)
            shared.body = out->body ? zframe_dup (out->body) : NULL;
        zlistx_add_end (harness->to_agent, pf_msg_encode (&shared));
        //  What the encoding moved out of the copy is gone from out too.
        out->detail = shared.detail;
        out->sessions = shared.sessions;
        out->bridges = shared.bridges;
        if (!(flags & PF_MSG_KEEP))
            out->body = shared.body;
    }
    else if (out->command == PF_C_REPLY)
        harness->replies++;
    else
        harness->errors++;
    return 0;
}

static void feed (pf_broker_t *broker, zframe_t *from, pf_msg_t *msg, int64_t now)
{
    zmsg_t *out = pf_msg_encode (msg);
    zmsg_prepend (out, &(zframe_t *) {zframe_dup (from)});
    pf_broker_handle (broker, &out, now);
}

//  The echo agent: every request the broker sent is answered with its body.
static void answer_agent (pf_broker_t *broker, harness_t *harness, int64_t now)
{
    zmsg_t *sent;
    while ((sent = zlistx_detach (harness->to_agent, NULL))) {
        pf_msg_t request, reply;
        pf_msg_init (&request);
        pf_msg_init (&reply);
        char err[256];
        if (pf_msg_decode (&request, &sent, 0, err, sizeof err) == 0
            && request.command == PF_W_REQUEST) {
            reply.proto = PF_PROTO_W;
            reply.command = PF_W_REPLY;
            reply.request_id = request.request_id;
            reply.bridge = request.bridge;
            reply.generation = request.generation;
            reply.body = request.body;
            request.body = NULL;
            feed (broker, agent_id, &reply, now);
        }
        pf_msg_reset (&request);
        pf_msg_reset (&reply);
    }
}

static void register_agent (pf_broker_t *broker, int64_t now)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_READY;
    strcpy (msg.agent_id, "bench-agent");
    strcpy (msg.host, "localhost");
    strcpy (msg.service, "bench");
    msg.capacity = BRIDGES;
    feed (broker, agent_id, &msg, now);
    pf_msg_reset (&msg);

    //  The roster: every bridge serves.
    char roster[BRIDGES * 16];
    size_t size = 0;
    roster[size++] = (char) 0xdc; //  array 16
    roster[size++] = 0;
    roster[size++] = BRIDGES;
    for (int index = 0; index < BRIDGES; index++) {
        roster[size++] = (char) 0x93; //  fixarray 3
        roster[size++] = (char) index;
        roster[size++] = 1;
        roster[size++] = (char) 0xa5;
        memcpy (roster + size, "ready", 5);
        size += 5;
    }
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_HEARTBEAT;
    msg.bridges = zframe_new (roster, size);
    feed (broker, agent_id, &msg, now);
    pf_msg_reset (&msg);
}

static void call (pf_broker_t *broker, harness_t *harness, uint64_t id, const char *session,
                  int64_t now)
{
    static const char body[] = "\x81\xa1x\x01"; //  {"x": 1}
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_C;
    msg.command = PF_C_REQUEST;
    msg.request_id = id;
    strcpy (msg.service, "bench");
    strcpy (msg.session, session);
    strcpy (msg.command_name, "echo");
    msg.timeout_ms = 60000;
    msg.body = zframe_new (body, sizeof body - 1);
    feed (broker, client_id, &msg, now);
    pf_msg_reset (&msg);
    answer_agent (broker, harness, now);
}

//  tcmalloc's own count when the broker is linked with it (weak: absent with
//  glibc's allocator, which mallinfo2 reports on).
extern int MallocExtension_GetNumericProperty (const char *property, size_t *value)
    __attribute__ ((weak));

static size_t heap_in_use (void)
{
    size_t bytes;
    if (MallocExtension_GetNumericProperty
        && MallocExtension_GetNumericProperty ("generic.current_allocated_bytes", &bytes))
        return bytes;
    malloc_trim (0);
    return mallinfo2 ().uordblks;
}

int main (int argc, char *argv[])
{
    size_t counts[16];
    int runs = 0;
    long requests = 1000000;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--requests") == 0 && i + 1 < argc)
            requests = atol (argv[++i]);
        else if (strcmp (argv[i], "--json") == 0)
            json = true;
        else if (runs < 16 && atol (argv[i]) > 0)
            counts[runs++] = (size_t) atol (argv[i]);
        else {
            fprintf (stderr, "usage: %s [SESSIONS ...] [--requests R] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (runs == 0) {
        counts[runs++] = 1000;
        counts[runs++] = 1000000;
    }
    zsys_init ();
    agent_id = zframe_new ("agent", 5);
    client_id = zframe_new ("client", 6);
    if (json)
        printf ("[");
    for (int run = 0; run < runs; run++) {
        size_t sessions = counts[run];
        harness_t harness = {zlistx_new (), 0, 0};
        pf_broker_config_t config;
        pf_broker_config_defaults (&config);
        pf_broker_t *broker = pf_broker_new (&config, capture, &harness, 0);
        int64_t now = 1;
        register_agent (broker, now);
        uint64_t id = 1;
        char session[32];

        size_t before = heap_in_use ();
        for (size_t s = 0; s < sessions; s++) {
            snprintf (session, sizeof session, "session-%zu", s);
            call (broker, &harness, id++, session, now);
        }
        pf_broker_stats_t stats;
        pf_broker_stats (broker, &stats);
        double bytes = (double) (heap_in_use () - before) / (double) sessions;

        uint64_t seed = 88172645463325252ull;
        int64_t start = zclock_usecs ();
        for (long r = 0; r < requests; r++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17; //  xorshift64
            snprintf (session, sizeof session, "session-%zu", (size_t) (seed % sessions));
            call (broker, &harness, id++, session, now);
        }
        double seconds = (double) (zclock_usecs () - start) / 1e6;
        double rate = (double) requests / seconds;
        if (json)
            printf ("%s{\"sessions\": %zu, \"live_sessions\": %zu, \"bytes_per_session\": %.1f, "
                    "\"requests\": %ld, \"req_per_s\": %.0f, \"errors\": %llu}",
                    run ? ", " : "", sessions, stats.sessions, bytes, requests, rate,
                    (unsigned long long) harness.errors);
        else
            printf ("%9zu sessions: %6.1f bytes/session, %9.0f routed req/s (%ld requests, "
                    "%llu errors)\n",
                    stats.sessions, bytes, rate, requests, (unsigned long long) harness.errors);
        fflush (stdout);
        pf_broker_destroy (&broker);
        zlistx_destroy (&harness.to_agent);
    }
    if (json)
        printf ("]\n");
    zframe_destroy (&agent_id);
    zframe_destroy (&client_id);
    return 0;
}
