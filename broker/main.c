/*  pyfleet-broker — binds one ROUTER for clients and worker agents and runs
    the broker logic (pf_broker) around a single poll loop.

    With --local-worker FILE it also runs an agent (the worker's, configured
    by the file) in a thread of its own, connected over inproc: on a host
    that runs both, a request then skips the broker-to-agent TCP hop and its
    I/O threads (docs/PERFORMANCE.md). Other agents may still connect. */
#define _GNU_SOURCE //  pthread_setname_np
#include "pf_batch.h"
#include "pf_broker.h"
#include "pf_log.h"
#include "pf_mdp.h"
#include "pf_options.h"
#include "pf_parse.h"
#include "pf_proto.h"
#include "pf_stream_server.h"
#include "pf_curve.h"
#include "pf_zap.h"
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

static volatile sig_atomic_t interrupted = 0;

static void on_signal (int sig)
{
    (void) sig;
    interrupted = 1;
}

typedef struct {
    zsock_t *router;
    pf_outbox_t *outbox; //  agents' messages this loop turn, a BATCH per agent
    pf_stream_server_t *streams; //  clients on unix:// (--unix), or NULL
    pf_mdp_t *mdp;       //  MDP/0.1 clients' requests in flight
} sender_t;

//  Never blocks: a slow or gone peer costs a counted failure, not a stall.
//  ROUTER_MANDATORY makes an unroutable peer an error instead of a silent drop.
//  Agents' messages, and the answers for clients that read BATCH, wait in
//  the outbox until the loop is about to poll.
static int router_send (void *arg, zframe_t *routing_id, pf_msg_t *msg, int flags)
{
    sender_t *sender = arg;
    if (sender->streams && pf_stream_server_owns (routing_id))
        return pf_stream_server_send (sender->streams, routing_id, msg);
    //  The answer to an MDP client's request goes back as MDPC01, alone.
    if (pf_mdp_pending (sender->mdp) && pf_mdp_answer (sender->mdp, routing_id, msg))
        return pf_msg_send (msg, sender->router, routing_id,
                            (flags & ~PF_MSG_BATCHABLE) | ZMQ_DONTWAIT);
    //  An MDP worker gets MDPW01, one message at a time (or nothing).
    if (msg->proto == PF_PROTO_W && pf_mdp_workers (sender->mdp)) {
        int mine = pf_mdp_to_worker (sender->mdp, routing_id, msg);
        if (mine >= 0)
            return mine ? pf_msg_send (msg, sender->router, routing_id, flags | ZMQ_DONTWAIT) : 0;
    }
    if (msg->proto == PF_PROTO_W || (flags & PF_MSG_BATCHABLE))
        return pf_outbox_send (sender->outbox, sender->router, routing_id, msg,
                               flags | ZMQ_DONTWAIT);
    return pf_msg_send (msg, sender->router, routing_id, flags | ZMQ_DONTWAIT);
}

//  Events go out as two frames: the topic (for prefix subscriptions) and
//  the JSON object, stamped with the time.
static void publish_event (void *arg, const char *topic, json_t *event)
{
    zsock_t *publisher = arg;
    char stamp[40];
    struct timeval now;
    gettimeofday (&now, NULL);
    struct tm tm;
    gmtime_r (&now.tv_sec, &tm);
    size_t length = strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (stamp + length, sizeof stamp - length, ".%03dZ", (int) (now.tv_usec / 1000));
    json_object_set_new (event, "time", json_string (stamp));
    char *text = json_dumps (event, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (event);
    if (!text)
        return;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, topic);
    zmsg_addstr (msg, text);
    free (text);
    //  PUB never blocks: a slow subscriber loses events past its HWM.
    zmsg_send (&msg, publisher);
    zmsg_destroy (&msg);
}

#define LOCAL_ENDPOINT "inproc://pyfleet-local-worker"

//  The local worker: an agent in a thread of the broker's process.
typedef struct {
    pf_worker_options_t options;
    pthread_t thread;
    volatile sig_atomic_t stop; //  the agent's "interrupted"
    atomic_bool done;
    int rc; //  pf_agent_run's exit status
} local_worker_t;

static void *local_worker_run (void *arg)
{
    local_worker_t *local = arg;
    pthread_setname_np (pthread_self (), "local-worker"); //  in top -H, perf
    pf_log_thread ("worker");
    local->rc = pf_agent_run (&local->options.config, &local->stop);
    atomic_store (&local->done, true);
    return NULL;
}

//  Reads the file as pyfleet-worker --config reads it; 2 on a bad one.
static int local_worker_load (local_worker_t *local, const char *path)
{
    pf_worker_options_init (&local->options);
    if (pf_worker_options_load (&local->options, path, "pyfleet-broker") != 0)
        return 2;
    pf_worker_options_finish (&local->options);
    local->options.config.broker = LOCAL_ENDPOINT;
    //  In-process: no handshake, so no keys.
    local->options.config.curve_cert = local->options.config.broker_key = NULL;
    return 0;
}

//  The thread gets every signal blocked: SIGINT and SIGTERM reach the
//  broker's loop, SIGCHLD's handler wakes the agent through its pipe.
static int local_worker_start (local_worker_t *local)
{
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, &old);
    int rc = pthread_create (&local->thread, NULL, local_worker_run, local);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    if (rc != 0)
        pf_error ("cannot start the local worker: %s", strerror (rc));
    return rc;
}

static void usage (FILE *out)
{
    fprintf (out,
             "usage: pyfleet-broker [options]\n"
             "  --config FILE      ZPL file with these keys under 'broker'; flags override it\n"
             "  --bind EP          endpoint for clients and agents (default tcp://127.0.0.1:5555)\n"
             "  --unix PATH        also serve clients on a Unix stream socket at PATH, read by\n"
             "                     this process's own loop: clients on this host connect to\n"
             "                     unix://PATH, with fewer thread hand-offs than over ZeroMQ\n"
             "  --mgmt EP          management endpoint, keep it local (default tcp://127.0.0.1:5556;\n"
             "                     'none' to turn it off)\n"
             "  --events EP        PUB endpoint for events (default tcp://127.0.0.1:5557; 'none')\n"
             "  --queue-max N      queued requests per service before BUSY (default 10000)\n"
             "  --session-queue-max N  waiting requests per session before BUSY (default 1000)\n"
             "  --session-ttl S    idle sessions expire after S seconds (default 1800)\n"
             "  --timeout MS       deadline of requests that set none (default 30000)\n"
             "  --startup-grace MS after start, requests for a service no agent has registered\n"
             "                     yet wait for one instead of UNKNOWN_SERVICE (default 5000)\n"
             "  --heartbeat MS     heartbeat interval with agents (default 1000)\n"
             "  --liveness N       missed heartbeats before an agent is dead (default 3)\n"
             "  --max-body BYTES   largest request or reply body (default 67108864)\n"
             "  --window N         requests in flight per bridge (default 32; 1 = one at a time)\n"
             "  --window-ms MS     ... more than one only while the bridge's oldest has run less\n"
             "                     than MS, so none waits behind a long request (default 10)\n"
             "  --curve-cert FILE  encrypt and authenticate the --bind endpoint with CurveZMQ,\n"
             "                     as this certificate (FILE and FILE_secret, from `pyfleet\n"
             "                     keygen`); agents and clients then need its public key\n"
             "  --curve-allow DIR|any  with --curve-cert: admit the public keys of the\n"
             "                     certificates in DIR (read again when DIR changes), or any key\n"
             "  --local-worker FILE  also run a worker agent in this process, configured by\n"
             "                     FILE as pyfleet-worker --config reads it (its 'broker',\n"
             "                     'curve-cert' and 'broker-key' keys are not used: it connects\n"
             "                     in-process; --log-level applies)\n"
             "  --log-level LEVEL  debug, info, warn or error (default info)\n");
}

//  CurveZMQ on the --bind endpoint: the broker's certificate and the ZAP
//  handler's thread, both freed by main after run.
typedef struct {
    zcert_t *cert;
    zactor_t *zap;
} curve_t;

//  Every option, from a flag or from a `broker` section of a ZPL file
//  (--config; keys named like the long flags, flags win). Strings point
//  into argv or into the file's tree, which lives as long as the options.
typedef struct {
    pf_broker_config_t config;
    const char *bind, *mgmt_endpoint, *events_endpoint, *local_config, *unix_path;
    const char *curve_cert, *curve_allow;
    bool mgmt_given, events_given;
    int log_level;
    zconfig_t *tree;
} options_t;

typedef struct {
    const char *key;
    long long min, max;
    size_t offset; //  in pf_broker_config_t
    size_t size;   //  4 (uint32_t) or 8 (size_t)
} number_option_t;

#define NUMBER(key, min, max, field)                                                               \
    {key, min, max, offsetof (pf_broker_config_t, field), sizeof (((pf_broker_config_t *) 0)->field)}

static const number_option_t numbers[] = {
    NUMBER ("queue-max", 1, 100000000, queue_max),
    NUMBER ("session-queue-max", 1, 100000000, session_queue_max),
    NUMBER ("session-ttl", 1, 365LL * 24 * 3600, session_ttl_s),
    NUMBER ("timeout", 1, UINT32_MAX, default_timeout_ms),
    NUMBER ("startup-grace", 0, 3600000, startup_grace_ms),
    NUMBER ("heartbeat", 10, 3600000, heartbeat_ms),
    NUMBER ("liveness", 1, 1000, liveness),
    NUMBER ("max-body", 1024, 1LL << 31, max_body),
    NUMBER ("window", 1, 64, window),
    NUMBER ("window-ms", 0, 3600000, window_ms),
};

//  Applies one key = value: 0, -1 for a bad value (with why), -2 for an
//  unknown key.
static int option_apply (options_t *options, const char *key, const char *value, char *why,
                         size_t whylen)
{
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (streq (key, numbers[i].key)) {
            long long number;
            if (pf_parse_number (value, numbers[i].min, numbers[i].max, &number) != 0) {
                snprintf (why, whylen, "expected an integer from %lld to %lld", numbers[i].min,
                          numbers[i].max);
                return -1;
            }
            char *field = (char *) &options->config + numbers[i].offset;
            if (numbers[i].size == sizeof (uint32_t))
                *(uint32_t *) field = (uint32_t) number;
            else
                *(size_t *) field = (size_t) number;
            return 0;
        }
    if (streq (key, "log-level")) {
        options->log_level = pf_log_level_parse (value);
        if (options->log_level < 0) {
            snprintf (why, whylen, "expected debug, info, warn or error");
            return -1;
        }
        return 0;
    }
    struct {
        const char *key;
        const char **target;
        bool *given;
    } strings[] = {
        {"bind", &options->bind, NULL},
        {"mgmt", &options->mgmt_endpoint, &options->mgmt_given},
        {"events", &options->events_endpoint, &options->events_given},
        {"local-worker", &options->local_config, NULL},
        {"unix", &options->unix_path, NULL},
        {"curve-cert", &options->curve_cert, NULL},
        {"curve-allow", &options->curve_allow, NULL},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (streq (key, strings[i].key)) {
            if (!*value) {
                snprintf (why, whylen, "must not be empty");
                return -1;
            }
            *strings[i].target = value;
            if (strings[i].given) *strings[i].given = true;
            return 0;
        }
    return -2;
}

//  Reads the `broker/KEY = VALUE` entries of a ZPL file; -1 after saying
//  on stderr what is wrong, naming the file and the key.
static int options_load (options_t *options, const char *path)
{
    if (!zsys_file_exists (path)) {
        fprintf (stderr, "pyfleet-broker: config file '%s' not found\n", path);
        return -1;
    }
    zconfig_destroy (&options->tree);
    options->tree = zconfig_load (path);
    if (!options->tree) {
        fprintf (stderr, "pyfleet-broker: config file '%s' is not valid ZPL\n", path);
        return -1;
    }
    for (zconfig_t *section = zconfig_child (options->tree); section;
         section = zconfig_next (section)) {
        if (!streq (zconfig_name (section), "broker")) {
            fprintf (stderr, "pyfleet-broker: %s: unknown section '%s' (expected 'broker')\n",
                     path, zconfig_name (section));
            return -1;
        }
        for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
            const char *key = zconfig_name (item);
            const char *value = zconfig_value (item) ? zconfig_value (item) : "";
            char why[256] = "";
            int rc = option_apply (options, key, value, why, sizeof why);
            if (rc == -2)
                fprintf (stderr, "pyfleet-broker: %s: unknown key 'broker/%s'\n", path, key);
            else if (rc != 0)
                fprintf (stderr,
                         "pyfleet-broker: %s: invalid value '%s' for key 'broker/%s': %s\n", path,
                         value, key, why);
            if (rc != 0) return -1;
        }
    }
    return 0;
}

//  Everything but freeing the local worker's options, the CurveZMQ state
//  and the options' file, which main does.
static int run (int argc, char *argv[], local_worker_t *local_storage, curve_t *curve,
                options_t *options)
{
    pf_broker_config_defaults (&options->config);
    options->bind = "tcp://127.0.0.1:5555";
    options->mgmt_endpoint = "tcp://127.0.0.1:5556";
    options->events_endpoint = "tcp://127.0.0.1:5557";
    options->log_level = PF_LOG_INFO;

    static struct option flags[] = {
        {"config", required_argument, 0, 0},      {"bind", required_argument, 0, 0},
        {"queue-max", required_argument, 0, 0},   {"session-queue-max", required_argument, 0, 0},
        {"mgmt", required_argument, 0, 0},        {"startup-grace", required_argument, 0, 0},
        {"events", required_argument, 0, 0},      {"session-ttl", required_argument, 0, 0},
        {"timeout", required_argument, 0, 0},     {"heartbeat", required_argument, 0, 0},
        {"liveness", required_argument, 0, 0},    {"max-body", required_argument, 0, 0},
        {"window", required_argument, 0, 0},      {"window-ms", required_argument, 0, 0},
        {"log-level", required_argument, 0, 0},   {"local-worker", required_argument, 0, 0},
        {"unix", required_argument, 0, 0},        {"curve-cert", required_argument, 0, 0},
        {"curve-allow", required_argument, 0, 0}, {"help", no_argument, 0, 'H'},
        {0, 0, 0, 0}};
    //  Pass 1: the config file, so that flags (pass 2) override it.
    int option, index = 0;
    opterr = 0;
    while ((option = getopt_long (argc, argv, "", flags, &index)) != -1)
        if (option == 0 && streq (flags[index].name, "config") &&
            options_load (options, optarg) != 0)
            return 2;
    optind = 1;
    opterr = 1;
    while ((option = getopt_long (argc, argv, "", flags, &index)) != -1) {
        if (option == 'H') {
            usage (stdout);
            return 0;
        }
        if (option != 0) {
            usage (stderr);
            return 2;
        }
        if (streq (flags[index].name, "config"))
            continue;
        char why[256] = "";
        if (option_apply (options, flags[index].name, optarg, why, sizeof why) != 0) {
            fprintf (stderr, "pyfleet-broker: invalid value '%s' for --%s: %s\n", optarg,
                     flags[index].name, why);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "pyfleet-broker: unexpected argument '%s'\n", argv[optind]);
        usage (stderr);
        return 2;
    }
    pf_broker_config_t config = options->config;
    const char *bind = options->bind, *mgmt_endpoint = options->mgmt_endpoint;
    const char *events_endpoint = options->events_endpoint;
    bool mgmt_given = options->mgmt_given, events_given = options->events_given;
    const char *local_config = options->local_config, *unix_path = options->unix_path;
    const char *curve_cert = options->curve_cert, *curve_allow = options->curve_allow;
    int log_level = options->log_level;
    if (!curve_cert != !curve_allow) {
        fprintf (stderr, "pyfleet-broker: %s\n",
                 curve_cert ? "--curve-cert needs --curve-allow DIR (the keys admitted) or 'any'"
                            : "--curve-allow needs --curve-cert");
        return 2;
    }
    bool allow_any = curve_allow && streq (curve_allow, "any");
    if (curve_allow && !allow_any && !zsys_file_exists (curve_allow)) {
        fprintf (stderr, "pyfleet-broker: --curve-allow: no directory '%s'\n", curve_allow);
        return 2;
    }
    char why[PATH_MAX + 128];
    if (curve_cert && !(curve->cert = pf_curve_cert_load (curve_cert, why, sizeof why))) {
        fprintf (stderr, "pyfleet-broker: --curve-cert: %s\n", why);
        return 2;
    }
    pf_log_init ("broker", log_level);
    local_worker_t *local = NULL;
    if (local_config) {
        if (local_worker_load (local_storage, local_config) != 0)
            return 2;
        local = local_storage;
    }

    //  Our own handlers, without SA_RESTART, so a signal interrupts the poll.
    zsys_handler_set (NULL);
    struct sigaction action = {.sa_handler = on_signal};
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    //  The handler must be up before the first handshake; inproc peers (the
    //  local worker) have none.
    if (curve->cert && !(curve->zap = pf_zap_start (allow_any ? NULL : curve_allow))) {
        pf_error ("cannot start the CurveZMQ authenticator: %s", strerror (errno));
        return 1;
    }
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    if (curve->cert) {
        zcert_apply (curve->cert, router);
        zsock_set_curve_server (router, 1);
    }
    zsock_set_router_mandatory (router, 1);
    zsock_set_sndhwm (router, 1000000);
    zsock_set_rcvhwm (router, 1000000);
    zsock_set_linger (router, 0);
    if (zsock_bind (router, "%s", bind) < 0
        || (local && zsock_bind (router, "%s", LOCAL_ENDPOINT) < 0)) {
        pf_error ("cannot bind %s: %s", bind, zmq_strerror (zmq_errno ()));
        zsock_destroy (&router);
        return 1;
    }
    if (curve->zap && pf_zap_watch (curve->zap, router) != 0)
        pf_warn ("failed CurveZMQ handshakes will not be logged: %s", zmq_strerror (zmq_errno ()));
    //  The management and event sockets are optional: one given explicitly
    //  that cannot be bound is fatal; a default that is taken (another
    //  broker on this host) only costs a warning.
    zsock_t *mgmt = NULL, *publisher = NULL;
    if (strcmp (mgmt_endpoint, "none") != 0) {
        mgmt = zsock_new (ZMQ_ROUTER);
        zsock_set_linger (mgmt, 0);
        if (zsock_bind (mgmt, "%s", mgmt_endpoint) < 0) {
            pf_log (mgmt_given ? PF_LOG_ERROR : PF_LOG_WARN, "cannot bind management endpoint %s: %s",
                    mgmt_endpoint, zmq_strerror (zmq_errno ()));
            zsock_destroy (&mgmt);
            if (mgmt_given) {
                zsock_destroy (&router);
                return 1;
            }
        }
    }
    if (strcmp (events_endpoint, "none") != 0) {
        publisher = zsock_new (ZMQ_PUB);
        zsock_set_linger (publisher, 0);
        zsock_set_sndhwm (publisher, 10000);
        if (zsock_bind (publisher, "%s", events_endpoint) < 0) {
            pf_log (events_given ? PF_LOG_ERROR : PF_LOG_WARN, "cannot bind events endpoint %s: %s",
                    events_endpoint, zmq_strerror (zmq_errno ()));
            zsock_destroy (&publisher);
            if (events_given) {
                zsock_destroy (&mgmt);
                zsock_destroy (&router);
                return 1;
            }
        }
    }
    sender_t sender = {router, pf_outbox_new (), NULL, pf_mdp_new ()};
    pf_broker_t *broker = NULL;
    if (unix_path && !(sender.streams = pf_stream_server_new (unix_path, config.max_body)))
        pf_error ("cannot listen on %s: %s", unix_path, strerror (errno));
    else if (!sender.outbox || !sender.mdp
             || !(broker = pf_broker_new (&config, router_send, &sender, zclock_mono ())))
        pf_error ("out of memory");
    if (!broker) {
        pf_stream_server_destroy (&sender.streams);
        pf_outbox_destroy (&sender.outbox);
        pf_mdp_destroy (&sender.mdp);
        zsock_destroy (&publisher);
        zsock_destroy (&mgmt);
        zsock_destroy (&router);
        return 1;
    }
    if (publisher)
        pf_broker_set_event_fn (broker, publish_event, publisher);
    pf_info ("listening on %s%s%s (pid %d); management %s; events %s", bind,
             unix_path ? " and unix://" : "", unix_path ? unix_path : "", getpid (),
             mgmt ? mgmt_endpoint : "off", publisher ? events_endpoint : "off");
    if (curve->cert)
        pf_info ("CurveZMQ on %s: public key %s; admits %s%s", bind, zcert_public_txt (curve->cert),
                 allow_any ? "any key" : "the keys in ", allow_any ? "" : curve_allow);
    int exit_rc = 0;
    if (local && local_worker_start (local) != 0) {
        local = NULL;
        exit_rc = 1;
        interrupted = 1;
    }

    void *router_socket = zsock_resolve (router);
    pf_msg_t msg;
    pf_msg_init (&msg);
    int64_t next_tick = 0;
    while (true) {
        //  On a signal the local worker stops first (its requests in
        //  flight end), while the broker still carries their replies.
        if (local && atomic_load (&local->done)) {
            pthread_join (local->thread, NULL);
            if (local->rc != 0) {
                pf_error ("the local worker failed (exit status %d)", local->rc);
                exit_rc = local->rc;
                interrupted = 1;
            }
            else if (!interrupted)
                pf_info ("the local worker has left (drained); serving other agents only");
            local = NULL;
        }
        if (interrupted && !local)
            break;
        if (interrupted && !local->stop) {
            local->stop = 1;
            pf_agent_wake ();
        }
        int64_t now = zclock_mono ();
        if (now >= next_tick)
            next_tick = now + pf_broker_tick (broker, now);
        pf_broker_send_failed (broker, pf_outbox_flush (sender.outbox, router));
        //  The router, the management socket, then the unix:// listener
        //  and clients.
        static zmq_pollitem_t items[3 + PF_STREAM_MAX_CLIENTS];
        size_t polled = 0;
        items[polled++] = (zmq_pollitem_t){router_socket, 0, ZMQ_POLLIN, 0};
        if (mgmt) items[polled++] = (zmq_pollitem_t){zsock_resolve (mgmt), 0, ZMQ_POLLIN, 0};
        zmq_pollitem_t *stream_items = items + polled;
        size_t streamed = sender.streams ? pf_stream_server_prepare (sender.streams, stream_items,
                                                                     1 + PF_STREAM_MAX_CLIENTS)
                                         : 0;
        int64_t timeout = next_tick - now;
        int rc = zmq_poll (items, (int)(polled + streamed),
                           interrupted && timeout > 10 ? 10 : timeout);
        if (rc < 0 && zmq_errno () != EINTR) {
            pf_error ("poll: %s", zmq_strerror (zmq_errno ()));
            exit_rc = 1;
            interrupted = 1;
        }
        if (mgmt && (items[1].revents & ZMQ_POLLIN)) {
            zmsg_t *request = zmsg_recv (mgmt);
            zframe_t *peer = request ? zmsg_pop (request) : NULL;
            zmsg_t *answer = peer ? pf_broker_manage (broker, &request, zclock_mono ()) : NULL;
            if (answer) {
                zmsg_prepend (answer, &peer);
                zmsg_send (&answer, mgmt);
                zmsg_destroy (&answer);
            }
            zframe_destroy (&peer);
            zmsg_destroy (&request);
        }
        //  Read a bounded batch, so timers still run under a flood.
        for (int batch = 0; batch < 1000; batch++) {
            zframe_t *routing_id = NULL;
            char err[256];
            int rc = pf_msg_recv (&msg, router_socket,
                                  ZMQ_DONTWAIT | (curve->cert ? PF_MSG_USER_ID : 0), &routing_id,
                                  config.max_body,
                                  err, sizeof err);
            if (rc == -1)
                break;
            if (msg.proto == PF_PROTO_MDPW) {
                pf_mdp_worker (sender.mdp, broker, routing_id, rc, &msg, err, zclock_mono ());
                pf_msg_reset (&msg);
            } else if (msg.proto == PF_PROTO_MDPC &&
                       !pf_mdp_accept (sender.mdp, broker, routing_id, rc, &msg, err, router_send,
                                       &sender))
                pf_msg_reset (&msg);
            else
                pf_broker_handle_msg (broker, routing_id, rc, &msg, err, zclock_mono ());
            zframe_destroy (&routing_id);
        }
        if (sender.streams && rc >= 0)
            pf_stream_server_handle (sender.streams, stream_items, streamed, broker);
    }
    pf_info ("shutting down");
    pf_broker_shutdown (broker);
    pf_broker_send_failed (broker, pf_outbox_flush (sender.outbox, router));
    if (sender.streams) pf_stream_server_flush (sender.streams);
    pf_broker_stats_t stats;
    pf_broker_stats (broker, &stats);
    pf_info ("served %llu requests, %llu malformed messages, %llu send failures",
             (unsigned long long) stats.requests, (unsigned long long) stats.malformed,
             (unsigned long long) stats.send_failures);
    pf_broker_destroy (&broker);
    pf_stream_server_destroy (&sender.streams);
    pf_outbox_destroy (&sender.outbox);
    pf_mdp_destroy (&sender.mdp);
    zsock_destroy (&publisher);
    zsock_destroy (&mgmt);
    zsock_destroy (&router);
    return exit_rc;
}

int main (int argc, char *argv[])
{
    local_worker_t local = {0};
    curve_t curve = {0};
    options_t options = {0};
    int rc = run (argc, argv, &local, &curve, &options);
    pf_worker_options_free (&local.options);
    zconfig_destroy (&options.tree);
    zactor_destroy (&curve.zap);
    zcert_destroy (&curve.cert);
    return rc;
}
