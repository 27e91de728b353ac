/*  call.c — `pyfleet call`: one request, or many as a load generator.

    One request: JSON arguments in, the result as one line of JSON out, and an
    exit code per error class (cli.h). With --count/--concurrency it keeps C
    requests in flight with pf_send/pf_recv until N are answered and reports
    throughput and latency; the last line of the text report holds "req/s". */
#include "cli.h"
#include "pf_json.h"
#include "pyfleet.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BROKER "tcp://127.0.0.1:5555"

typedef struct {
    const char *broker;
    const char *session;
    uint32_t timeout_ms;
    uint32_t flags;
    pf_retry_t retry;
    bool json;
    bool load; //  --count or --concurrency given
    uint64_t count;
    uint64_t concurrency;
    const char *service;
    const char *command;
    const char *args; //  JSON text, "-" for stdin
    const char *curve_cert; //  CurveZMQ: this client's certificate, and the broker's key
    const char *broker_key;
} options_t;

static void print_call_usage (FILE *stream)
{
    fprintf (stream,
             "Usage: pyfleet call [OPTIONS] SERVICE COMMAND [JSON_ARGS|-]\n"
             "\n"
             "Sends COMMAND with JSON_ARGS (default {}; '-' reads them from stdin) to\n"
             "SERVICE through the broker and prints the result as one line of JSON.\n"
             "Use '--' before JSON_ARGS that start with '-' (a negative number).\n"
             "On error prints 'CODE: message' on stderr (for PYTHON_ERROR also the\n"
             "Python type and traceback) and exits with the code's exit status.\n"
             "\n"
             "Options:\n"
             "  -b, --broker EP         broker endpoint: tcp://HOST:PORT, ipc://PATH, or\n"
             "                          unix://PATH for a broker's --unix socket (default\n"
             "                          $PYFLEET_BROKER or " DEFAULT_BROKER ")\n"
             "  -s, --session ID        run in session ID (state kept on one bridge)\n"
             "  -t, --timeout MS        request deadline in ms (default 30000)\n"
             "      --idempotent        the request may run twice (re-queued if its\n"
             "                          worker dies)\n"
             "      --soft              soft session affinity: rebind if the bridge is gone\n"
             "      --broadcast         run on every bridge of the service\n"
             "  -r, --retries N         retry up to N times, only after BUSY or, with\n"
             "                          --idempotent, WORKER_LOST/BRIDGE_CRASHED/a lost\n"
             "                          connection; within the one deadline (default 0)\n"
             "      --retry-base MS     first backoff (default 50; doubles, with jitter)\n"
             "      --retry-cap MS      largest backoff (default 2000)\n"
             "  -j, --json              print the whole reply as one JSON object:\n"
             "                          {\"ok\",\"request_id\",\"result\"|\"error\",\"rebound\"}\n"
             "  -n, --count N           load generator: send N requests in total\n"
             "  -c, --concurrency C     load generator: keep C requests in flight\n"
             "                          (default 1); prints throughput and p50/p99/max\n"
             "                          latency, or one JSON object with --json\n"
             "      --curve-cert FILE   CurveZMQ: this client's certificate (FILE and\n"
             "                          FILE_secret, from `pyfleet keygen`; default\n"
             "                          $PYFLEET_CURVE_CERT); needs --broker-key\n"
             "      --broker-key KEY    the broker's public key: 40 Z85 characters or its\n"
             "                          certificate file (default $PYFLEET_BROKER_KEY)\n"
             "  -h, --help              show this help\n"
             "\n"
             "%s",
             cli_exit_code_help);
}

//  Reads all of a stream; NULL if it cannot.
static char *read_stream (FILE *stream, size_t *size_p)
{
    size_t size = 0, capacity = 4096;
    char *data = malloc (capacity);
    while (data) {
        size += fread (data + size, 1, capacity - size, stream);
        if (size < capacity) break;
        capacity *= 2;
        char *bigger = realloc (data, capacity);
        if (!bigger) free (data);
        data = bigger;
    }
    if (data && ferror (stream)) {
        free (data);
        return NULL;
    }
    *size_p = size;
    return data;
}

//  Parses the command line into options; returns -1 (after a message) on a
//  usage error, 1 if help was printed, 0 to go on.
static int parse_options (int argc, char **argv, options_t *options)
{
    enum {
        OPT_IDEMPOTENT = 256,
        OPT_SOFT,
        OPT_BROADCAST,
        OPT_RETRY_BASE,
        OPT_RETRY_CAP,
        OPT_CURVE_CERT,
        OPT_BROKER_KEY
    };
    static const struct option long_options[] = {
        {"broker", required_argument, NULL, 'b'},
        {"session", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'},
        {"idempotent", no_argument, NULL, OPT_IDEMPOTENT},
        {"soft", no_argument, NULL, OPT_SOFT},
        {"broadcast", no_argument, NULL, OPT_BROADCAST},
        {"retries", required_argument, NULL, 'r'},
        {"retry-base", required_argument, NULL, OPT_RETRY_BASE},
        {"retry-cap", required_argument, NULL, OPT_RETRY_CAP},
        {"json", no_argument, NULL, 'j'},
        {"count", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"curve-cert", required_argument, NULL, OPT_CURVE_CERT},
        {"broker-key", required_argument, NULL, OPT_BROKER_KEY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env_broker = getenv ("PYFLEET_BROKER");
    const char *env_cert = getenv ("PYFLEET_CURVE_CERT");
    const char *env_key = getenv ("PYFLEET_BROKER_KEY");
    options->curve_cert = env_cert && *env_cert ? env_cert : NULL;
    options->broker_key = env_key && *env_key ? env_key : NULL;
    options->broker = env_broker && *env_broker ? env_broker : DEFAULT_BROKER;
    options->timeout_ms = PF_CLIENT_DEFAULT_TIMEOUT_MS;
    options->count = 1;
    options->concurrency = 1;
    options->args = "{}";

    //  getopt prefixes its messages with argv[0].
    static char program_name[] = "pyfleet call";
    argv[0] = program_name;
    optind = 1;
    opterr = 1;
    int option;
    uint64_t value;
    while ((option = getopt_long (argc, argv, "b:s:t:r:jn:c:h", long_options, NULL)) != -1) {
        switch (option) {
        case 'b':
            options->broker = optarg;
            break;
        case 's':
            options->session = optarg;
            break;
        case 't':
            if (cli_parse_integer (optarg, 1, UINT32_MAX, &value)) {
                fprintf (stderr, "pyfleet call: --timeout wants milliseconds > 0, not '%s'\n",
                         optarg);
                return -1;
            }
            options->timeout_ms = (uint32_t)value;
            break;
        case OPT_IDEMPOTENT:
            options->flags |= PF_CALL_IDEMPOTENT;
            break;
        case OPT_SOFT:
            options->flags |= PF_CALL_SOFT_AFFINITY;
            break;
        case OPT_BROADCAST:
            options->flags |= PF_CALL_BROADCAST;
            break;
        case 'r':
            if (cli_parse_integer (optarg, 0, 1000, &value)) {
                fprintf (stderr, "pyfleet call: --retries wants 0..1000, not '%s'\n", optarg);
                return -1;
            }
            options->retry.attempts = (uint32_t)value + 1;
            break;
        case OPT_RETRY_BASE:
        case OPT_RETRY_CAP:
            if (cli_parse_integer (optarg, 1, 3600000, &value)) {
                fprintf (stderr, "pyfleet call: --%s wants milliseconds 1..3600000, not '%s'\n",
                         option == OPT_RETRY_BASE ? "retry-base" : "retry-cap", optarg);
                return -1;
            }
            *(option == OPT_RETRY_BASE ? &options->retry.base_ms : &options->retry.cap_ms) =
                (uint32_t)value;
            break;
        case 'j':
            options->json = true;
            break;
        case 'n':
        case 'c':
            if (cli_parse_integer (optarg, 1, 100000000, &value)) {
                fprintf (stderr,
                         "pyfleet call: --%s wants a number from 1 to 100000000, not '%s'\n",
                         option == 'n' ? "count" : "concurrency", optarg);
                return -1;
            }
            *(option == 'n' ? &options->count : &options->concurrency) = value;
            options->load = true;
            break;
        case OPT_CURVE_CERT:
            options->curve_cert = optarg;
            break;
        case OPT_BROKER_KEY:
            options->broker_key = optarg;
            break;
        case 'h':
            print_call_usage (stdout);
            return 1;
        default:
            return -1; //  getopt said what was wrong
        }
    }
    int positional = argc - optind;
    if (positional < 2 || positional > 3) {
        fprintf (stderr, "pyfleet call: expected SERVICE COMMAND [JSON_ARGS|-]\n");
        return -1;
    }
    options->service = argv[optind];
    options->command = argv[optind + 1];
    if (positional == 3) options->args = argv[optind + 2];
    return 0;
}

//  ---------------------------------------------------------------------------
//  One request

static void print_json_string_or_null (FILE *stream, const char *text)
{
    char *quoted = text ? pf_json_quote (text, strlen (text)) : NULL;
    fputs (quoted ? quoted : "null", stream);
    free (quoted);
}

//  Prints the reply envelope as one JSON object on stdout.
static int print_envelope (pf_reply_t *reply)
{
    bool ok = pf_reply_ok (reply);
    char *result = NULL;
    char err[128] = "";
    if (ok) {
        size_t size;
        const void *body = pf_reply_body (reply, &size);
        result = body ? pf_msgpack_to_json (body, size, err, sizeof err) : strdup ("null");
        if (!result) {
            fprintf (stderr, "pyfleet: the result is not valid msgpack: %s\n", err);
            return CLI_EXIT_FAILURE;
        }
    }
    printf ("{\"ok\":%s,\"request_id\":%llu,", ok ? "true" : "false",
            (unsigned long long)pf_reply_request_id (reply));
    if (ok)
        printf ("\"result\":%s", result);
    else {
        printf ("\"error\":{\"code\":\"%s\",\"message\":", pf_reply_code_name (reply));
        print_json_string_or_null (stdout, pf_reply_message (reply));
        printf (",\"type\":");
        print_json_string_or_null (stdout, pf_reply_error_type (reply));
        printf (",\"traceback\":");
        print_json_string_or_null (stdout, pf_reply_traceback (reply));
        printf (",\"local\":%s}", pf_reply_local (reply) ? "true" : "false");
    }
    printf (",\"rebound\":%s}\n", pf_reply_rebound (reply) ? "true" : "false");
    free (result);
    return ok ? CLI_EXIT_OK : cli_exit_code (pf_reply_code (reply));
}

//  Prints the result line, or the error on stderr; returns the exit code.
static int print_reply (pf_reply_t *reply)
{
    if (pf_reply_ok (reply)) {
        size_t size;
        const void *body = pf_reply_body (reply, &size);
        char err[128] = "";
        char *result = body ? pf_msgpack_to_json (body, size, err, sizeof err) : strdup ("null");
        if (!result) {
            fprintf (stderr, "pyfleet: the result is not valid msgpack: %s\n", err);
            return CLI_EXIT_FAILURE;
        }
        printf ("%s\n", result);
        free (result);
        if (pf_reply_rebound (reply))
            fprintf (stderr, "pyfleet: note: the session was rebound to another bridge\n");
        return CLI_EXIT_OK;
    }
    const char *message = pf_reply_message (reply);
    const char *type = pf_reply_error_type (reply);
    const char *traceback = pf_reply_traceback (reply);
    fprintf (stderr, "%s: ", pf_reply_code_name (reply));
    if (type) fprintf (stderr, "%s: ", type);
    fprintf (stderr, "%s\n", *message ? message : "(no message)");
    if (traceback && *traceback)
        fprintf (stderr, "%s%s", traceback, traceback[strlen (traceback) - 1] == '\n' ? "" : "\n");
    return cli_exit_code (pf_reply_code (reply));
}

static int call_once (pf_client_t *client, const options_t *options, const void *args,
                      size_t args_size)
{
    pf_call_options_t call_options = {options->session, options->timeout_ms, options->flags};
    pf_reply_t *reply =
        pf_call (client, options->service, options->command, args, args_size, &call_options);
    if (!reply) {
        fprintf (stderr, "pyfleet: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    int exit_code;
    if (pf_reply_local (reply) && pf_reply_code (reply) == PF_BAD_REQUEST) {
        //  Refused before sending: the command line was wrong.
        fprintf (stderr, "pyfleet call: %s\n", pf_reply_message (reply));
        exit_code = CLI_EXIT_USAGE;
    } else
        exit_code = options->json ? print_envelope (reply) : print_reply (reply);
    pf_reply_destroy (&reply);
    return exit_code;
}

//  ---------------------------------------------------------------------------
//  Load generator

static int compare_int64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

//  Nearest-rank percentile of sorted values.
static int64_t percentile (const int64_t *sorted, size_t count, int percent)
{
    if (count == 0) return 0;
    size_t rank = (count * (size_t)percent + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

static int call_load (pf_client_t *client, const options_t *options, const void *args,
                      size_t args_size)
{
    pf_call_options_t call_options = {options->session, options->timeout_ms, options->flags};
    size_t total = (size_t)options->count;
    int64_t *sent_at = calloc (total, sizeof *sent_at);     //  by id - first id
    int64_t *latencies = calloc (total, sizeof *latencies); //  of successes, us
    if (!sent_at || !latencies) {
        free (sent_at);
        free (latencies);
        fprintf (stderr, "pyfleet: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    size_t errors_by_code[PF_ERROR_COUNT + 1] = {0}; //  last slot: unknown codes
    size_t sent = 0, answered = 0, succeeded = 0, errors = 0;
    uint64_t first_id = 0;
    bool interrupted = false;
    int exit_code = CLI_EXIT_OK;
    //  The requests sent between two waits for a reply go as one message.
    pf_client_set_batching (client, true);
    int64_t start = zclock_usecs ();

    while (answered < total) {
        while (sent < total && sent - answered < options->concurrency) {
            uint64_t id;
            if (pf_send (client, options->service, options->command, args, args_size, &call_options,
                         &id) != 0) {
                fprintf (stderr, "pyfleet call: %s\n", pf_client_error (client));
                exit_code = CLI_EXIT_USAGE;
                goto done;
            }
            if (sent == 0) first_id = id;
            sent_at[id - first_id] = zclock_usecs ();
            sent++;
        }
        pf_reply_t *reply = pf_recv (client, -1);
        if (!reply) {
            interrupted = true;
            break;
        }
        uint64_t index = pf_reply_request_id (reply) - first_id;
        int code = pf_reply_code (reply);
        if (code == PF_OK && index < total)
            latencies[succeeded++] = zclock_usecs () - sent_at[index];
        else if (code != PF_OK) {
            errors++;
            errors_by_code[code >= 0 && code < PF_ERROR_COUNT ? code : PF_ERROR_COUNT]++;
        }
        answered++;
        pf_reply_destroy (&reply);
    }
    double elapsed = (double)(zclock_usecs () - start) / 1e6;
    double rate = elapsed > 0 ? (double)answered / elapsed : 0;
    qsort (latencies, succeeded, sizeof *latencies, compare_int64);
    int64_t p50 = percentile (latencies, succeeded, 50);
    int64_t p99 = percentile (latencies, succeeded, 99);
    int64_t max = succeeded ? latencies[succeeded - 1] : 0;

    if (options->json) {
        printf ("{\"requests\":%zu,\"ok\":%zu,\"errors\":%zu,\"errors_by_code\":{", answered,
                succeeded, errors);
        bool first = true;
        for (int code = 0; code <= PF_ERROR_COUNT; code++)
            if (errors_by_code[code]) {
                printf ("%s\"%s\":%zu", first ? "" : ",", pf_error_name (code),
                        errors_by_code[code]);
                first = false;
            }
        printf ("},\"concurrency\":%llu,\"elapsed_s\":%.6f,\"req_per_s\":%.1f,"
                "\"p50_us\":%lld,\"p99_us\":%lld,\"max_us\":%lld,\"interrupted\":%s}\n",
                (unsigned long long)options->concurrency, elapsed, rate, (long long)p50,
                (long long)p99, (long long)max, interrupted ? "true" : "false");
    } else {
        printf ("requests:   %zu answered of %zu, %llu in flight at most\n", answered, total,
                (unsigned long long)options->concurrency);
        printf ("errors:     %zu", errors);
        for (int code = 0; code <= PF_ERROR_COUNT; code++)
            if (errors_by_code[code])
                printf (" %s=%zu", pf_error_name (code), errors_by_code[code]);
        printf ("\nelapsed:    %.3f s%s\n", elapsed, interrupted ? " (interrupted)" : "");
        printf ("latency:    p50 %lld us, p99 %lld us, max %lld us (successful requests)\n",
                (long long)p50, (long long)p99, (long long)max);
        printf ("throughput: %.1f req/s\n", rate);
    }
    //  Exit with the most frequent error's code, so a script sees why.
    if (interrupted)
        exit_code = CLI_EXIT_CANCELLED;
    else if (errors) {
        int worst = 0;
        for (int code = 1; code <= PF_ERROR_COUNT; code++)
            if (errors_by_code[code] > errors_by_code[worst]) worst = code;
        exit_code = cli_exit_code (worst);
    }
done:
    free (sent_at);
    free (latencies);
    return exit_code;
}

//  ---------------------------------------------------------------------------

int cli_call (int argc, char **argv)
{
    options_t options = {0};
    int rc = parse_options (argc, argv, &options);
    if (rc != 0) {
        if (rc < 0) fprintf (stderr, "Try 'pyfleet call --help'.\n");
        return rc < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    //  Arguments are checked before anything is sent.
    size_t json_size;
    char *json = NULL;
    if (strcmp (options.args, "-") == 0) {
        json = read_stream (stdin, &json_size);
        if (!json) {
            fprintf (stderr, "pyfleet call: cannot read arguments from stdin\n");
            return CLI_EXIT_USAGE;
        }
    }
    void *args;
    size_t args_size;
    char err[256];
    rc = pf_json_to_msgpack (json ? json : options.args, json ? json_size : strlen (options.args),
                             &args, &args_size, err, sizeof err);
    free (json);
    if (rc != 0) {
        fprintf (stderr, "pyfleet call: JSON_ARGS is not valid JSON: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    pf_client_options_t client_options = {options.timeout_ms, options.retry};
    pf_client_keys_t keys = {options.curve_cert, options.broker_key};
    if (pf_client_check_keys (&keys, err, sizeof err) != 0) {
        fprintf (stderr, "pyfleet call: %s\n", err);
        free (args);
        return CLI_EXIT_USAGE;
    }
    pf_client_t *client = pf_client_new_keys (options.broker, &client_options, &keys);
    if (!client) {
        fprintf (stderr, "pyfleet call: invalid broker endpoint '%s'\n", options.broker);
        free (args);
        return CLI_EXIT_USAGE;
    }
    int exit_code = options.load ? call_load (client, &options, args, args_size)
                                 : call_once (client, &options, args, args_size);
    pf_client_destroy (&client);
    free (args);
    return exit_code;
}
