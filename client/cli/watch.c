/*  watch.c — `pyfleet watch`: streams the broker's events (docs/MANAGEMENT.md,
    "Events") from its PUB socket, one line each:

        2026-11-27T10:00:00Z agent.joined agent=host-1-ab12 host=host-1 pid=4242

    or each event's JSON object on its own line with --json. Runs until
    Ctrl-C/SIGTERM (exit 0), or until --count events were printed. */
#include "cli.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TOPICS 32

typedef struct {
    const char *events;
    bool json;
    uint64_t count; //  0: no limit
    const char *topics[MAX_TOPICS];
    size_t topic_count;
} options_t;

static void print_watch_usage (FILE *stream)
{
    fprintf (stream, "Usage: pyfleet watch [OPTIONS]\n"
                     "\n"
                     "Prints the broker's events as they happen, one line each:\n"
                     "TIME TOPIC key=value ... (agent.joined, agent.left, bridge.up, bridge.down,\n"
                     "bridge.draining, session.lost, session.expired, action). Runs until\n"
                     "Ctrl-C (exit 0) or until --count events were printed.\n"
                     "\n"
                     "Options:\n"
                     "  -e, --events EP         event endpoint (default $PYFLEET_EVENTS or\n"
                     "                          " CLI_DEFAULT_EVENTS ")\n"
                     "      --topic PREFIX      only topics starting with PREFIX (e.g. 'agent.');\n"
                     "                          may be given more than once (default: all)\n"
                     "  -n, --count N           exit after N events\n"
                     "  -j, --json              print each event's JSON object instead\n"
                     "  -h, --help              show this help\n");
}

static int parse_options (int argc, char **argv, options_t *options)
{
    enum { OPT_TOPIC = 256 };
    static const struct option long_options[] = {
        {"events", required_argument, NULL, 'e'}, {"topic", required_argument, NULL, OPT_TOPIC},
        {"count", required_argument, NULL, 'n'},  {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *env_events = getenv ("PYFLEET_EVENTS");
    options->events = env_events && *env_events ? env_events : CLI_DEFAULT_EVENTS;
    static char program_name[] = "pyfleet watch";
    argv[0] = program_name;
    optind = 1;
    opterr = 1;
    int option;
    while ((option = getopt_long (argc, argv, "e:n:jh", long_options, NULL)) != -1) {
        switch (option) {
        case 'e':
            options->events = optarg;
            break;
        case OPT_TOPIC:
            if (options->topic_count == MAX_TOPICS) {
                fprintf (stderr, "pyfleet watch: at most %d --topic\n", MAX_TOPICS);
                return -1;
            }
            options->topics[options->topic_count++] = optarg;
            break;
        case 'n':
            if (cli_parse_integer (optarg, 1, UINT32_MAX, &options->count)) {
                fprintf (stderr, "pyfleet watch: --count wants a number > 0, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'j':
            options->json = true;
            break;
        case 'h':
            print_watch_usage (stdout);
            return 1;
        default:
            return -1;
        }
    }
    if (optind != argc) {
        fprintf (stderr, "pyfleet watch: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

//  A string value goes out bare when that cannot be misread, else quoted.
static bool needs_quotes (const char *text)
{
    if (!*text) return true;
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == '"' || *c == '=' || *c == 0x7f) return true;
    return false;
}

static void print_line (const char *topic, json_t *event)
{
    const char *time_text = json_string_value (json_object_get (event, "time"));
    char now[32];
    if (!time_text) {
        time_t seconds = time (NULL);
        struct tm utc;
        gmtime_r (&seconds, &utc);
        strftime (now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &utc);
        time_text = now;
    }
    printf ("%s %s", time_text, topic);
    const char *key;
    json_t *value;
    json_object_foreach (event, key, value)
    {
        if (strcmp (key, "time") == 0 || strcmp (key, "event") == 0) continue;
        const char *text = json_string_value (value);
        char *encoded = text && !needs_quotes (text)
                            ? NULL
                            : json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        printf (" %s=%s", key, encoded ? encoded : text ? text : "?");
        free (encoded);
    }
    printf ("\n");
}

//  Prints one event; false if it was not an event (reported on stderr).
static bool print_event (zmsg_t *msg, bool json)
{
    zframe_t *topic_frame = zmsg_first (msg);
    zframe_t *body_frame = zmsg_next (msg);
    json_error_t error;
    json_t *event = NULL;
    if (zmsg_size (msg) == 2)
        event = json_loadb ((const char *)zframe_data (body_frame), zframe_size (body_frame), 0,
                            &error);
    char *topic = topic_frame ? zframe_strdup (topic_frame) : NULL;
    bool valid = json_is_object (event) && topic;
    if (!valid)
        fprintf (stderr, "pyfleet watch: ignored a message that is not an event (%zu frames%s%s)\n",
                 zmsg_size (msg), event || zmsg_size (msg) != 2 ? "" : ": ",
                 event || zmsg_size (msg) != 2 ? "" : error.text);
    else if (json) {
        char *text = json_dumps (event, JSON_COMPACT);
        if (text) printf ("%s\n", text);
        free (text);
    } else {
        //  Control characters in a topic would reach the terminal.
        for (char *c = topic; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        print_line (topic, event);
    }
    fflush (stdout);
    free (topic);
    json_decref (event);
    return valid;
}

int cli_watch (int argc, char **argv)
{
    options_t options = {0};
    int rc = parse_options (argc, argv, &options);
    if (rc) return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;

    zsock_t *subscriber = zsock_new (ZMQ_SUB);
    if (!subscriber) {
        fprintf (stderr, "pyfleet watch: cannot create a socket\n");
        return CLI_EXIT_FAILURE;
    }
    zsock_set_linger (subscriber, 0);
    if (options.topic_count == 0) zsock_set_subscribe (subscriber, "");
    for (size_t i = 0; i < options.topic_count; i++)
        zsock_set_subscribe (subscriber, options.topics[i]);
    if (zsock_connect (subscriber, "%s", options.events) != 0) {
        fprintf (stderr, "pyfleet watch: invalid event endpoint '%s'\n", options.events);
        zsock_destroy (&subscriber);
        return CLI_EXIT_USAGE;
    }
    int exit_code = CLI_EXIT_OK;
    uint64_t printed = 0;
    zmq_pollitem_t item = {zsock_resolve (subscriber), 0, ZMQ_POLLIN, 0};
    while (!zsys_interrupted && (options.count == 0 || printed < options.count)) {
        int ready = zmq_poll (&item, 1, -1);
        if (ready < 0) {
            if (zmq_errno () == EINTR) continue; //  the loop tests zsys_interrupted
            fprintf (stderr, "pyfleet watch: poll failed: %s\n", zmq_strerror (zmq_errno ()));
            exit_code = CLI_EXIT_FAILURE;
            break;
        }
        zmsg_t *msg = zmsg_recv (subscriber);
        if (!msg) continue;
        if (print_event (msg, options.json)) printed++;
        zmsg_destroy (&msg);
    }
    zsock_destroy (&subscriber);
    return exit_code;
}
