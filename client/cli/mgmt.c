/*  mgmt.c — the operator's side of the broker's management endpoint (PFM1,
    docs/MANAGEMENT.md): `pyfleet status|workers|sessions|services|metrics`
    and the actions `drain`, `recycle`, `end-session`.

    Also the pieces top.c shares: the PFM1 request socket (cli_mgmt_t), an
    aligned text table (cli_table_t) and the formatting of JSON values for
    tables. Every request has a deadline: a broker that is down gives TIMEOUT
    and an exit status, never a hang. */
#include "cli.h"
#include "pf_error.h"

#include <czmq.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------------
//  PFM1 request socket

struct cli_mgmt_t {
    char *endpoint;
    zsock_t *dealer;
    char error[256];
};

static zsock_t *connect_dealer (const char *endpoint)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer) return NULL;
    //  Unsent requests to a broker that is down must not hold up exit.
    zsock_set_linger (dealer, 0);
    if (zsock_connect (dealer, "%s", endpoint) != 0) zsock_destroy (&dealer);
    return dealer;
}

cli_mgmt_t *cli_mgmt_new (const char *endpoint)
{
    cli_mgmt_t *self = calloc (1, sizeof *self);
    if (!self) return NULL;
    self->endpoint = strdup (endpoint);
    self->dealer = self->endpoint ? connect_dealer (endpoint) : NULL;
    if (!self->dealer) {
        fprintf (stderr, "pyfleet: invalid management endpoint '%s'\n", endpoint);
        cli_mgmt_destroy (&self);
    }
    return self;
}

void cli_mgmt_destroy (cli_mgmt_t **self_p)
{
    if (!self_p || !*self_p) return;
    cli_mgmt_t *self = *self_p;
    zsock_destroy (&self->dealer);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

int cli_mgmt_send (cli_mgmt_t *self, const char *command, const char *args_json)
{
    if (zsock_send (self->dealer, "ssss", "", "PFM1", command, args_json ? args_json : "{}")) {
        snprintf (self->error, sizeof self->error, "cannot send to %s", self->endpoint);
        return -1;
    }
    return 0;
}

void *cli_mgmt_handle (cli_mgmt_t *self)
{
    return zsock_resolve (self->dealer);
}

int cli_mgmt_reset (cli_mgmt_t *self)
{
    zsock_destroy (&self->dealer);
    self->dealer = connect_dealer (self->endpoint);
    return self->dealer ? 0 : -1;
}

const char *cli_mgmt_error (cli_mgmt_t *self)
{
    return self->error;
}

void cli_mgmt_reply_free (cli_mgmt_reply_t *reply)
{
    free (reply->body);
    reply->body = NULL;
    reply->size = 0;
}

static bool frame_is (zframe_t *frame, const char *text)
{
    return frame && zframe_streq (frame, text);
}

int cli_mgmt_recv (cli_mgmt_t *self, cli_mgmt_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    zmsg_t *msg = zmsg_recv (self->dealer);
    if (!msg) {
        snprintf (self->error, sizeof self->error, "interrupted");
        return -1;
    }
    int rc = -1;
    zframe_t *empty = zmsg_first (msg);
    zframe_t *header = zmsg_next (msg);
    zframe_t *status = zmsg_next (msg);
    zframe_t *body = zmsg_next (msg);
    if (zmsg_size (msg) != 4 || zframe_size (empty) != 0 || !frame_is (header, "PFM1") ||
        !(frame_is (status, "OK") || frame_is (status, "ERROR")))
        snprintf (self->error, sizeof self->error, "the management reply is not PFM1 (%zu frames)",
                  zmsg_size (msg));
    else if (!(reply->body = malloc (zframe_size (body) + 1)))
        snprintf (self->error, sizeof self->error, "out of memory");
    else {
        memcpy (reply->body, zframe_data (body), zframe_size (body));
        reply->body[zframe_size (body)] = 0;
        reply->size = zframe_size (body);
        reply->ok = frame_is (status, "OK");
        rc = 0;
    }
    zmsg_destroy (&msg);
    return rc;
}

int cli_mgmt_call (cli_mgmt_t *self, const char *command, const char *args_json,
                   uint32_t timeout_ms, cli_mgmt_reply_t *reply, int *exit_code_p)
{
    memset (reply, 0, sizeof *reply);
    if (cli_mgmt_send (self, command, args_json)) {
        *exit_code_p = CLI_EXIT_FAILURE;
        return -1;
    }
    int64_t deadline = zclock_mono () + timeout_ms;
    zmq_pollitem_t item = {cli_mgmt_handle (self), 0, ZMQ_POLLIN, 0};
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0) {
            snprintf (self->error, sizeof self->error,
                      "TIMEOUT: management endpoint did not answer");
            *exit_code_p = CLI_EXIT_TIMEOUT;
            return -1;
        }
        int ready = zmq_poll (&item, 1, (long)left);
        if (zsys_interrupted) {
            snprintf (self->error, sizeof self->error, "pyfleet: interrupted");
            *exit_code_p = CLI_EXIT_CANCELLED;
            return -1;
        }
        if (ready > 0) break;
        if (ready < 0 && zmq_errno () != EINTR) {
            snprintf (self->error, sizeof self->error, "pyfleet: poll failed: %s",
                      zmq_strerror (zmq_errno ()));
            *exit_code_p = CLI_EXIT_FAILURE;
            return -1;
        }
    }
    if (cli_mgmt_recv (self, reply)) {
        *exit_code_p = CLI_EXIT_FAILURE;
        return -1;
    }
    *exit_code_p = CLI_EXIT_OK;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Aligned text table

struct cli_table_t {
    size_t columns;
    char *align;
    char **cells; //  rows * columns, row 0 the header
    size_t rows;
    size_t capacity;
    size_t *widths;
};

cli_table_t *cli_table_new (const char *align, const char *const *headers)
{
    cli_table_t *self = calloc (1, sizeof *self);
    if (!self) return NULL;
    self->columns = strlen (align);
    self->align = strdup (align);
    self->widths = calloc (self->columns, sizeof *self->widths);
    if (!self->align || !self->widths || cli_table_add (self, headers)) cli_table_destroy (&self);
    return self;
}

void cli_table_destroy (cli_table_t **self_p)
{
    if (!self_p || !*self_p) return;
    cli_table_t *self = *self_p;
    for (size_t i = 0; i < self->rows * self->columns; i++)
        free (self->cells[i]);
    free (self->cells);
    free (self->widths);
    free (self->align);
    free (self);
    *self_p = NULL;
}

//  Display width of UTF-8 text: code points, which is right for the names
//  and numbers these tables hold.
static size_t text_width (const char *text)
{
    size_t width = 0;
    for (; *text; text++)
        if (((unsigned char)*text & 0xC0) != 0x80) width++;
    return width;
}

int cli_table_add (cli_table_t *self, const char *const *cells)
{
    if (self->rows == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 16;
        char **bigger = realloc (self->cells, capacity * self->columns * sizeof *bigger);
        if (!bigger) return -1;
        self->cells = bigger;
        self->capacity = capacity;
    }
    char **row = self->cells + self->rows * self->columns;
    for (size_t column = 0; column < self->columns; column++) {
        //  NULL is a value that is missing; "" a cell that does not apply.
        const char *text = cells[column] ? cells[column] : "-";
        row[column] = strdup (text);
        if (!row[column]) {
            while (column--)
                free (row[column]);
            return -1;
        }
        //  Control characters from the wire would move the cursor.
        for (char *c = row[column]; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        size_t width = text_width (row[column]);
        if (width > self->widths[column]) self->widths[column] = width;
    }
    self->rows++;
    return 0;
}

size_t cli_table_rows (cli_table_t *self)
{
    return self->rows;
}

char *cli_table_line (cli_table_t *self, size_t row)
{
    if (row >= self->rows) return NULL;
    size_t size = 1;
    for (size_t column = 0; column < self->columns; column++)
        size += self->widths[column] * 4 + 2; //  UTF-8 cells may take 4 bytes a column
    char *line = malloc (size);
    if (!line) return NULL;
    size_t used = 0;
    for (size_t column = 0; column < self->columns; column++) {
        const char *cell = self->cells[row * self->columns + column];
        size_t pad = self->widths[column] - text_width (cell);
        bool last = column + 1 == self->columns;
        if (column) used += (size_t)sprintf (line + used, "  ");
        if (self->align[column] == 'r') {
            memset (line + used, ' ', pad);
            used += pad;
            pad = 0;
        }
        used += (size_t)sprintf (line + used, "%s", cell);
        if (!last) {
            memset (line + used, ' ', pad);
            used += pad;
        }
    }
    line[used] = 0;
    //  Trailing blanks of a left-aligned last column would be noise.
    while (used && line[used - 1] == ' ')
        line[--used] = 0;
    return line;
}

void cli_table_print (cli_table_t *self, FILE *stream)
{
    for (size_t row = 0; row < self->rows; row++) {
        char *line = cli_table_line (self, row);
        if (line) fprintf (stream, "%s\n", line);
        free (line);
    }
}

//  ---------------------------------------------------------------------------
//  Formatting JSON values

const char *cli_format_value (json_t *value, char *buffer, size_t size)
{
    if (json_is_string (value))
        snprintf (buffer, size, "%s", json_string_value (value));
    else if (json_is_integer (value))
        snprintf (buffer, size, "%lld", (long long)json_integer_value (value));
    else if (json_is_real (value))
        snprintf (buffer, size, "%.1f", json_real_value (value));
    else if (json_is_boolean (value))
        snprintf (buffer, size, "%s", json_is_true (value) ? "yes" : "no");
    else
        snprintf (buffer, size, "-");
    return buffer;
}

static bool json_number (json_t *value, double *number_p)
{
    if (!json_is_number (value)) return false;
    *number_p = json_number_value (value);
    return isfinite (*number_p) && *number_p >= 0;
}

const char *cli_format_seconds (json_t *seconds, char *buffer, size_t size)
{
    double value;
    if (!json_number (seconds, &value))
        snprintf (buffer, size, "-");
    else if (value < 60)
        snprintf (buffer, size, "%.1fs", value);
    else if (value < 3600)
        snprintf (buffer, size, "%dm%02ds", (int)(value / 60), (int)fmod (value, 60));
    else if (value < 86400)
        snprintf (buffer, size, "%dh%02dm", (int)(value / 3600), (int)fmod (value / 60, 60));
    else
        snprintf (buffer, size, "%dd%02dh", (int)(value / 86400), (int)fmod (value / 3600, 24));
    return buffer;
}

const char *cli_format_ms (json_t *ms, char *buffer, size_t size)
{
    double value;
    if (!json_number (ms, &value))
        snprintf (buffer, size, "-");
    else if (value < 1000)
        snprintf (buffer, size, "%.0fms", value);
    else {
        json_t *seconds = json_real (value / 1000);
        cli_format_seconds (seconds, buffer, size);
        json_decref (seconds);
    }
    return buffer;
}

const char *cli_format_us (json_t *us, char *buffer, size_t size)
{
    double value;
    if (!json_number (us, &value))
        snprintf (buffer, size, "-");
    else if (value < 1000)
        snprintf (buffer, size, "%.0fus", value);
    else if (value < 1000000)
        snprintf (buffer, size, "%.1fms", value / 1000);
    else
        snprintf (buffer, size, "%.2fs", value / 1000000);
    return buffer;
}

const char *cli_format_kb (json_t *kb, char *buffer, size_t size)
{
    double value;
    if (!json_number (kb, &value))
        snprintf (buffer, size, "-");
    else if (value < 1024)
        snprintf (buffer, size, "%.0fK", value);
    else if (value < 1024 * 1024)
        snprintf (buffer, size, "%.1fM", value / 1024);
    else
        snprintf (buffer, size, "%.2fG", value / (1024 * 1024));
    return buffer;
}

//  ---------------------------------------------------------------------------
//  Subcommands

typedef struct {
    const char *name;      //  as typed: "status", "end-session"
    const char *command;   //  PFM1 command
    const char *arguments; //  positional arguments, for usage
    int positional;        //  how many
    const char *summary;
} subcommand_t;

static const subcommand_t subcommands[] = {
    {"status", "STATUS", "", 0, "a summary of the fleet"},
    {"workers", "WORKERS", "", 0, "agents and their bridges, one row each"},
    {"sessions", "SESSIONS", "", 0, "sessions, filtered and paged"},
    {"services", "SERVICES", "", 0, "per service: queue, rate, latency, errors"},
    {"metrics", "METRICS", "", 0, "the Prometheus text exposition, as is"},
    {"drain", "DRAIN", " AGENT", 1, "stop new work on AGENT, then let it leave"},
    {"recycle", "RECYCLE", " AGENT[/BRIDGE]", 1, "replace one bridge or all of an agent's"},
    {"end-session", "END_SESSION", " SERVICE SESSION", 2, "end a session now"},
};

typedef struct {
    const subcommand_t *sub;
    const char *mgmt;
    uint32_t timeout_ms;
    bool json;
    const char *service; //  sessions filters
    const char *agent;
    uint64_t offset;
    uint64_t limit;
    char **positional;
} options_t;

static void print_mgmt_usage (const subcommand_t *sub, FILE *stream)
{
    bool sessions = strcmp (sub->name, "sessions") == 0;
    bool metrics = strcmp (sub->name, "metrics") == 0;
    fprintf (stream,
             "Usage: pyfleet %s [OPTIONS]%s\n"
             "\n"
             "Asks the broker's management endpoint for %s.\n"
             "On an ERROR answer prints 'CODE: message' on stderr and exits with the\n"
             "code's exit status; a broker that does not answer in time gives\n"
             "'TIMEOUT: management endpoint did not answer' and exit status 3.\n"
             "\n"
             "Options:\n"
             "  -m, --mgmt EP           management endpoint (default $PYFLEET_MGMT or\n"
             "                          " CLI_DEFAULT_MGMT ")\n"
             "  -t, --timeout MS        wait at most MS for the answer (default %d)\n"
             "%s"
             "%s"
             "  -h, --help              show this help\n"
             "\n"
             "%s",
             sub->name, sub->arguments, sub->summary, CLI_DEFAULT_MGMT_TIMEOUT_MS,
             metrics ? "" : "  -j, --json              print the broker's JSON answer\n",
             sessions ? "      --service S         only sessions of service S\n"
                        "      --agent A           only sessions bound to agent A\n"
                        "      --offset N          skip the first N matching (default 0)\n"
                        "      --limit N           show at most N, 1..10000 (default 100)\n"
                      : "",
             cli_exit_code_help);
}

static int parse_options (int argc, char **argv, options_t *options)
{
    enum { OPT_SERVICE = 256, OPT_AGENT, OPT_OFFSET, OPT_LIMIT };
    static const struct option long_options[] = {
        {"mgmt", required_argument, NULL, 'm'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"service", required_argument, NULL, OPT_SERVICE},
        {"agent", required_argument, NULL, OPT_AGENT},
        {"offset", required_argument, NULL, OPT_OFFSET},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env_mgmt = getenv ("PYFLEET_MGMT");
    options->mgmt = env_mgmt && *env_mgmt ? env_mgmt : CLI_DEFAULT_MGMT;
    options->timeout_ms = CLI_DEFAULT_MGMT_TIMEOUT_MS;
    options->limit = 100;
    bool sessions = strcmp (options->sub->name, "sessions") == 0;
    bool metrics = strcmp (options->sub->name, "metrics") == 0;

    static char program_name[64];
    snprintf (program_name, sizeof program_name, "pyfleet %s", options->sub->name);
    argv[0] = program_name;
    optind = 1;
    opterr = 1;
    int option;
    uint64_t value;
    while ((option = getopt_long (argc, argv, "m:t:jh", long_options, NULL)) != -1) {
        switch (option) {
        case 'm':
            options->mgmt = optarg;
            break;
        case 't':
            if (cli_parse_integer (optarg, 1, UINT32_MAX, &value)) {
                fprintf (stderr, "%s: --timeout wants milliseconds > 0, not '%s'\n", program_name,
                         optarg);
                return -1;
            }
            options->timeout_ms = (uint32_t)value;
            break;
        case 'j':
            if (metrics) {
                fprintf (stderr, "%s: --json does not apply: metrics are Prometheus text\n",
                         program_name);
                return -1;
            }
            options->json = true;
            break;
        case OPT_SERVICE:
        case OPT_AGENT:
        case OPT_OFFSET:
        case OPT_LIMIT:
            if (!sessions) {
                fprintf (stderr, "%s: --%s applies to 'pyfleet sessions' only\n", program_name,
                         long_options[option - OPT_SERVICE + 3].name);
                return -1;
            }
            if (option == OPT_SERVICE) options->service = optarg;
            if (option == OPT_AGENT) options->agent = optarg;
            if (option == OPT_OFFSET &&
                cli_parse_integer (optarg, 0, UINT32_MAX, &options->offset)) {
                fprintf (stderr, "%s: --offset wants a number >= 0, not '%s'\n", program_name,
                         optarg);
                return -1;
            }
            if (option == OPT_LIMIT && cli_parse_integer (optarg, 1, 10000, &options->limit)) {
                fprintf (stderr, "%s: --limit wants a number from 1 to 10000, not '%s'\n",
                         program_name, optarg);
                return -1;
            }
            break;
        case 'h':
            print_mgmt_usage (options->sub, stdout);
            return 1;
        default:
            return -1;
        }
    }
    if (argc - optind != options->sub->positional) {
        fprintf (stderr, "%s: expected%s\n", program_name,
                 options->sub->positional ? options->sub->arguments : " no arguments");
        return -1;
    }
    options->positional = argv + optind;
    return 0;
}

//  Sets a string member; false if the text is not UTF-8 (json_stringn refuses it).
static bool set_string (json_t *args, const char *key, const char *text, size_t size)
{
    return json_object_set_new (args, key, json_stringn (text, size)) == 0;
}

//  The request's arguments as JSON text (caller frees), or NULL after a
//  usage message.
static char *request_arguments (const options_t *options)
{
    json_t *args = json_object ();
    if (!args) return NULL;
    const char *name = options->sub->name;
    char **positional = options->positional;
    bool valid = true;
    if (strcmp (name, "sessions") == 0) {
        if (options->service)
            valid &= set_string (args, "service", options->service, strlen (options->service));
        if (options->agent)
            valid &= set_string (args, "agent", options->agent, strlen (options->agent));
        json_object_set_new (args, "offset", json_integer ((json_int_t)options->offset));
        json_object_set_new (args, "limit", json_integer ((json_int_t)options->limit));
    } else if (strcmp (name, "drain") == 0)
        valid &= set_string (args, "agent", positional[0], strlen (positional[0]));
    else if (strcmp (name, "recycle") == 0) {
        //  AGENT/BRIDGE: the bridge is what follows the last slash.
        char *slash = strrchr (positional[0], '/');
        uint64_t bridge = 0;
        if (slash && cli_parse_integer (slash + 1, 0, INT32_MAX, &bridge)) {
            fprintf (stderr, "pyfleet recycle: BRIDGE in AGENT/BRIDGE must be a number, not '%s'\n",
                     slash + 1);
            json_decref (args);
            return NULL;
        }
        size_t agent_size = slash ? (size_t)(slash - positional[0]) : strlen (positional[0]);
        valid &= set_string (args, "agent", positional[0], agent_size);
        if (slash) json_object_set_new (args, "bridge", json_integer ((json_int_t)bridge));
    } else if (strcmp (name, "end-session") == 0) {
        valid &= set_string (args, "service", positional[0], strlen (positional[0]));
        valid &= set_string (args, "session", positional[1], strlen (positional[1]));
    }
    if (!valid) {
        fprintf (stderr, "pyfleet %s: arguments must be UTF-8 text\n", name);
        json_decref (args);
        return NULL;
    }
    char *text = json_dumps (args, JSON_COMPACT);
    json_decref (args);
    return text;
}

//  An ERROR answer: "CODE: message" on stderr; returns the exit status.
static int print_error (const cli_mgmt_reply_t *reply)
{
    json_error_t error;
    json_t *body = json_loads (reply->body, 0, &error);
    const char *code = json_string_value (json_object_get (body, "error"));
    const char *message = json_string_value (json_object_get (body, "message"));
    int exit_code;
    if (code) {
        fprintf (stderr, "%s: %s\n", code, message && *message ? message : "(no message)");
        int value = pf_error_from_name (code);
        exit_code = value < 0 ? CLI_EXIT_INTERNAL : cli_exit_code (value);
    } else {
        fprintf (stderr, "INTERNAL: unreadable ERROR answer from the broker: %s\n", reply->body);
        exit_code = CLI_EXIT_INTERNAL;
    }
    json_decref (body);
    return exit_code;
}

static json_t *member (json_t *object, const char *key)
{
    return json_object_get (object, key);
}

static void print_status (json_t *body)
{
    char a[64], b[64], c[64], d[64];
    json_t *bridges = member (body, "bridges");
    printf ("uptime       %s\n", cli_format_seconds (member (body, "uptime_s"), a, sizeof a));
    printf ("agents       %s\n", cli_format_value (member (body, "agents"), a, sizeof a));
    printf ("bridges      %s total: %s ready, %s busy, %s draining\n",
            cli_format_value (member (bridges, "total"), a, sizeof a),
            cli_format_value (member (bridges, "ready"), b, sizeof b),
            cli_format_value (member (bridges, "busy"), c, sizeof c),
            cli_format_value (member (bridges, "draining"), d, sizeof d));
    printf ("sessions     %s\n", cli_format_value (member (body, "sessions"), a, sizeof a));
    printf ("queued       %s\n", cli_format_value (member (body, "queued"), a, sizeof a));
    printf ("in flight    %s\n", cli_format_value (member (body, "in_flight"), a, sizeof a));
    if (member (body, "unix_clients"))
        printf ("unix clients %s\n", cli_format_value (member (body, "unix_clients"), a, sizeof a));
    printf ("requests     %s accepted, %s answered, %s req/s\n",
            cli_format_value (member (body, "requests_total"), a, sizeof a),
            cli_format_value (member (body, "replies_total"), b, sizeof b),
            cli_format_value (member (body, "requests_per_s"), c, sizeof c));
    printf ("errors      ");
    json_t *errors = member (body, "errors");
    const char *key;
    json_t *value;
    if (json_object_size (errors) == 0) printf (" none");
    json_object_foreach (errors, key, value)
        printf (" %s=%s", key, cli_format_value (value, a, sizeof a));
    printf ("\n");
    printf ("anomalies    %s malformed, %s send failures, %s late replies\n",
            cli_format_value (member (body, "malformed"), a, sizeof a),
            cli_format_value (member (body, "send_failures"), b, sizeof b),
            cli_format_value (member (body, "late_replies"), c, sizeof c));
    printf ("sessions     %s lost, %s expired\n",
            cli_format_value (member (body, "sessions_lost"), a, sizeof a),
            cli_format_value (member (body, "sessions_expired"), b, sizeof b));
    json_t *actions = member (body, "actions");
    if (json_array_size (actions)) {
        printf ("\nrecent actions:\n");
        static const char *const headers[] = {"TIME", "ACTION", "AGENT", "RESULT"};
        cli_table_t *table = cli_table_new ("llll", headers);
        size_t index;
        json_array_foreach (actions, index, value)
        {
            //  end_session names a service and session rather than an agent.
            char target[256];
            const char *agent = json_string_value (member (value, "agent"));
            const char *service = json_string_value (member (value, "service"));
            const char *session = json_string_value (member (value, "session"));
            if (agent) {
                json_t *bridge = member (value, "bridge");
                if (json_is_integer (bridge))
                    snprintf (target, sizeof target, "%s/%lld", agent,
                              (long long)json_integer_value (bridge));
                else
                    snprintf (target, sizeof target, "%s", agent);
            } else
                snprintf (target, sizeof target, "%s/%s", service ? service : "-",
                          session ? session : "-");
            const char *cells[] = {json_string_value (member (value, "time")),
                                   json_string_value (member (value, "action")), target,
                                   json_string_value (member (value, "result"))};
            if (table) cli_table_add (table, cells);
        }
        if (table) cli_table_print (table, stdout);
        cli_table_destroy (&table);
    }
}

static void print_workers (json_t *body)
{
    static const char *const headers[] = {
        "AGENT / BRIDGE", "HOST",     "PID",    "UPTIME",   "BEAT",    "CAPACITY", "STATE",
        "IN FLIGHT",      "REQUESTS", "ERRORS", "SESSIONS", "REQUEST", "AGE",      "RSS"};
    cli_table_t *table = cli_table_new ("llrrrrlrrrrrrr", headers);
    if (!table) return;
    json_t *agents = member (body, "agents");
    size_t index;
    json_t *agent;
    json_array_foreach (agents, index, agent)
    {
        char pid[32], uptime[32], beat[32], capacity[64], in_flight[32], requests[32], errors[32];
        char serving[32], cap[32];
        snprintf (capacity, sizeof capacity, "%s/%s",
                  cli_format_value (member (agent, "serving"), serving, sizeof serving),
                  cli_format_value (member (agent, "capacity"), cap, sizeof cap));
        const char *agent_cells[] = {
            json_string_value (member (agent, "agent")),
            json_string_value (member (agent, "host")),
            cli_format_value (member (agent, "pid"), pid, sizeof pid),
            cli_format_seconds (member (agent, "uptime_s"), uptime, sizeof uptime),
            cli_format_ms (member (agent, "last_beat_ms"), beat, sizeof beat),
            capacity,
            json_is_true (member (agent, "draining")) ? "draining" : "serving",
            cli_format_value (member (agent, "in_flight"), in_flight, sizeof in_flight),
            cli_format_value (member (agent, "requests"), requests, sizeof requests),
            cli_format_value (member (agent, "errors"), errors, sizeof errors),
            "",
            "",
            "",
            ""};
        cli_table_add (table, agent_cells);
        size_t bridge_index;
        json_t *bridge;
        json_array_foreach (member (agent, "bridges"), bridge_index, bridge)
        {
            char name[64], number[32], generation[32], bridge_pid[32], sessions[32], request[32],
                age[32], rss[32], bridge_in_flight[32];
            snprintf (
                name, sizeof name, "  bridge %s.%s",
                cli_format_value (member (bridge, "bridge"), number, sizeof number),
                cli_format_value (member (bridge, "generation"), generation, sizeof generation));
            const char *bridge_cells[] = {
                name,
                "",
                cli_format_value (member (bridge, "pid"), bridge_pid, sizeof bridge_pid),
                "",
                "",
                "",
                json_string_value (member (bridge, "state")),
                cli_format_value (member (bridge, "in_flight"), bridge_in_flight,
                                  sizeof bridge_in_flight),
                cli_format_value (member (bridge, "requests"), requests, sizeof requests),
                cli_format_value (member (bridge, "errors"), errors, sizeof errors),
                cli_format_value (member (bridge, "sessions"), sessions, sizeof sessions),
                cli_format_value (member (bridge, "request"), request, sizeof request),
                cli_format_ms (member (bridge, "request_age_ms"), age, sizeof age),
                cli_format_kb (member (bridge, "rss_kb"), rss, sizeof rss)};
            cli_table_add (table, bridge_cells);
        }
    }
    if (json_array_size (agents))
        cli_table_print (table, stdout);
    else
        printf ("no agents\n");
    cli_table_destroy (&table);
}

static void print_sessions (json_t *body)
{
    static const char *const headers[] = {"SERVICE", "SESSION", "AGENT", "BRIDGE",
                                          "GEN",     "IDLE",    "QUEUED"};
    cli_table_t *table = cli_table_new ("lllrrrr", headers);
    if (!table) return;
    json_t *sessions = member (body, "sessions");
    size_t index;
    json_t *session;
    json_array_foreach (sessions, index, session)
    {
        char bridge[32], generation[32], idle[32], queued[32];
        const char *agent = json_string_value (member (session, "agent"));
        const char *cells[] = {
            json_string_value (member (session, "service")),
            json_string_value (member (session, "session")),
            agent                                        ? agent
            : json_is_true (member (session, "lost")) ? "(lost)"
                                                       : "(unbound)",
            cli_format_value (member (session, "bridge"), bridge, sizeof bridge),
            cli_format_value (member (session, "generation"), generation, sizeof generation),
            cli_format_ms (member (session, "idle_ms"), idle, sizeof idle),
            cli_format_value (member (session, "queued"), queued, sizeof queued)};
        cli_table_add (table, cells);
    }
    if (json_array_size (sessions)) cli_table_print (table, stdout);
    cli_table_destroy (&table);
    char total[32];
    json_int_t offset = json_integer_value (member (body, "offset"));
    size_t shown = json_array_size (sessions);
    if (shown)
        printf ("sessions %lld-%lld of %s\n", (long long)offset + 1,
                (long long)offset + (long long)shown,
                cli_format_value (member (body, "total"), total, sizeof total));
    else
        printf ("no sessions shown (%s matching in total)\n",
                cli_format_value (member (body, "total"), total, sizeof total));
}

static void print_services (json_t *body)
{
    static const char *const headers[] = {"SERVICE",  "AGENTS",     "BRIDGES", "QUEUED",
                                          "REQUESTS", "REQ/S",      "P50",     "P95",
                                          "P99",      "ERROR RATE", "ERRORS"};
    cli_table_t *table = cli_table_new ("lrrrrrrrrrl", headers);
    if (!table) return;
    json_t *services = member (body, "services");
    size_t index;
    json_t *service;
    json_array_foreach (services, index, service)
    {
        char agents[32], bridges[32], queued[32], requests[32], rate[32], p50[32], p95[32], p99[32],
            error_rate[32], errors[512] = "";
        json_t *latency = member (service, "latency_us");
        json_t *value = member (service, "error_rate");
        if (json_is_number (value))
            snprintf (error_rate, sizeof error_rate, "%.2f%%", json_number_value (value) * 100);
        else
            snprintf (error_rate, sizeof error_rate, "-");
        const char *key;
        size_t used = 0;
        json_object_foreach (member (service, "errors"), key, value)
        {
            char count[32];
            used += (size_t)snprintf (
                errors + used, used < sizeof errors ? sizeof errors - used : 0, "%s%s=%s",
                used ? " " : "", key, cli_format_value (value, count, sizeof count));
            if (used >= sizeof errors) break;
        }
        const char *cells[] = {
            json_string_value (member (service, "service")),
            cli_format_value (member (service, "agents"), agents, sizeof agents),
            cli_format_value (member (service, "bridges"), bridges, sizeof bridges),
            cli_format_value (member (service, "queued"), queued, sizeof queued),
            cli_format_value (member (service, "requests"), requests, sizeof requests),
            cli_format_value (member (service, "requests_per_s"), rate, sizeof rate),
            cli_format_us (member (latency, "p50"), p50, sizeof p50),
            cli_format_us (member (latency, "p95"), p95, sizeof p95),
            cli_format_us (member (latency, "p99"), p99, sizeof p99),
            error_rate,
            errors};
        cli_table_add (table, cells);
    }
    if (json_array_size (services))
        cli_table_print (table, stdout);
    else
        printf ("no services\n");
    cli_table_destroy (&table);
}

static void print_acknowledgement (const char *name, json_t *body)
{
    char a[256], b[256];
    const char *result = json_string_value (member (body, "result"));
    if (!result) result = "done";
    if (strcmp (name, "drain") == 0)
        printf ("%s: %s\n", cli_format_value (member (body, "agent"), a, sizeof a), result);
    else if (strcmp (name, "recycle") == 0) {
        json_t *bridge = member (body, "bridge");
        if (json_is_integer (bridge))
            printf ("%s bridge %lld: %s\n", cli_format_value (member (body, "agent"), a, sizeof a),
                    (long long)json_integer_value (bridge), result);
        else
            printf ("%s all bridges: %s\n", cli_format_value (member (body, "agent"), a, sizeof a),
                    result);
    } else
        printf ("%s/%s: %s\n", cli_format_value (member (body, "service"), a, sizeof a),
                cli_format_value (member (body, "session"), b, sizeof b), result);
}

//  An OK answer; returns the exit status.
static int print_answer (const options_t *options, const cli_mgmt_reply_t *reply)
{
    const char *name = options->sub->name;
    if (strcmp (name, "metrics") == 0) {
        fwrite (reply->body, 1, reply->size, stdout);
        return CLI_EXIT_OK;
    }
    json_error_t error;
    json_t *body = json_loads (reply->body, 0, &error);
    if (!json_is_object (body)) {
        fprintf (stderr, "pyfleet %s: the broker's answer is not a JSON object: %s\n", name,
                 body ? "another JSON value" : error.text);
        json_decref (body);
        return CLI_EXIT_FAILURE;
    }
    if (options->json) {
        //  The broker's body as it came (it is one JSON object), one per line.
        fwrite (reply->body, 1, reply->size, stdout);
        if (reply->size == 0 || reply->body[reply->size - 1] != '\n') putchar ('\n');
    } else if (strcmp (name, "status") == 0)
        print_status (body);
    else if (strcmp (name, "workers") == 0)
        print_workers (body);
    else if (strcmp (name, "sessions") == 0)
        print_sessions (body);
    else if (strcmp (name, "services") == 0)
        print_services (body);
    else
        print_acknowledgement (name, body);
    json_decref (body);
    return CLI_EXIT_OK;
}

int cli_mgmt_command (int argc, char **argv)
{
    options_t options = {0};
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (strcmp (argv[0], subcommands[i].name) == 0) options.sub = &subcommands[i];
    if (!options.sub) return CLI_EXIT_USAGE;
    int rc = parse_options (argc, argv, &options);
    if (rc) return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    char *args = request_arguments (&options);
    if (!args) return CLI_EXIT_USAGE;

    int exit_code = CLI_EXIT_OK;
    cli_mgmt_t *mgmt = cli_mgmt_new (options.mgmt);
    if (!mgmt)
        exit_code = CLI_EXIT_USAGE;
    else {
        cli_mgmt_reply_t reply;
        if (cli_mgmt_call (mgmt, options.sub->command, args, options.timeout_ms, &reply,
                           &exit_code) != 0)
            fprintf (stderr, "%s\n", cli_mgmt_error (mgmt));
        else
            exit_code = reply.ok ? print_answer (&options, &reply) : print_error (&reply);
        cli_mgmt_reply_free (&reply);
    }
    cli_mgmt_destroy (&mgmt);
    free (args);
    return exit_code;
}
