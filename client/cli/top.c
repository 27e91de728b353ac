/*  top.c — `pyfleet top`: a live full-screen view of the fleet from the
    broker's management endpoint (STATUS and WORKERS every interval).

    Plain ANSI escape sequences on the alternate screen, no curses, so it works
    in any terminal over ssh. The terminal goes to non-canonical, no-echo mode
    (signals stay on, so Ctrl-C works) and is put back on every way out: q,
    Ctrl-C, SIGTERM, or an error. A broker that does not answer is shown as a
    message and retried at the next refresh; the requests of a refresh that
    timed out are dropped with their socket, so a late answer is never shown
    as a fresh one. Keys are read while waiting for the broker, so q works
    even then. */
#include "cli.h"
#include "pf_error.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *mgmt;
    uint32_t interval_ms;
    uint32_t timeout_ms;
} options_t;

typedef struct {
    const options_t *options;
    cli_mgmt_t *mgmt;
    json_t *status; //  last answers, NULL until one came
    json_t *workers;
    char message[512];   //  why the view is not current, or ""
    int pending;         //  answers awaited for the refresh in flight: 2, 1, 0
    bool refresh_failed; //  an answer of the refresh in flight was an error
    int64_t sent_at;
    int64_t next_refresh;
    int64_t refreshed_at; //  when the shown answers came, 0 never
} top_t;

static struct termios saved_termios;
static bool terminal_changed;

static void print_top_usage (FILE *stream)
{
    fprintf (stream,
             "Usage: pyfleet top [OPTIONS]\n"
             "\n"
             "A live view of the fleet: a summary line (agents, bridges by state,\n"
             "sessions, queued, req/s) and every agent with its bridges, busiest first.\n"
             "Refreshes every interval; q quits.\n"
             "\n"
             "Options:\n"
             "  -m, --mgmt EP           management endpoint (default $PYFLEET_MGMT or\n"
             "                          " CLI_DEFAULT_MGMT ")\n"
             "  -i, --interval MS       refresh interval (default 1000, at least 100)\n"
             "  -t, --timeout MS        how long to wait for an answer (default %d)\n"
             "  -h, --help              show this help\n",
             CLI_DEFAULT_MGMT_TIMEOUT_MS);
}

static int parse_options (int argc, char **argv, options_t *options)
{
    static const struct option long_options[] = {
        {"mgmt", required_argument, NULL, 'm'},
        {"interval", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env_mgmt = getenv ("PYFLEET_MGMT");
    options->mgmt = env_mgmt && *env_mgmt ? env_mgmt : CLI_DEFAULT_MGMT;
    options->interval_ms = 1000;
    options->timeout_ms = CLI_DEFAULT_MGMT_TIMEOUT_MS;
    static char program_name[] = "pyfleet top";
    argv[0] = program_name;
    optind = 1;
    opterr = 1;
    int option;
    uint64_t value;
    while ((option = getopt_long (argc, argv, "m:i:t:h", long_options, NULL)) != -1) {
        switch (option) {
        case 'm':
            options->mgmt = optarg;
            break;
        case 'i':
        case 't':
            if (cli_parse_integer (optarg, option == 'i' ? 100 : 1, 3600000, &value)) {
                fprintf (stderr, "pyfleet top: --%s wants milliseconds %s..3600000, not '%s'\n",
                         option == 'i' ? "interval" : "timeout", option == 'i' ? "100" : "1",
                         optarg);
                return -1;
            }
            *(option == 'i' ? &options->interval_ms : &options->timeout_ms) = (uint32_t)value;
            break;
        case 'h':
            print_top_usage (stdout);
            return 1;
        default:
            return -1;
        }
    }
    if (optind != argc) {
        fprintf (stderr, "pyfleet top: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Terminal

static void write_all (const char *data, size_t size)
{
    while (size) {
        ssize_t written = write (STDOUT_FILENO, data, size);
        if (written < 0) {
            if (errno == EINTR) continue;
            return;
        }
        data += written;
        size -= (size_t)written;
    }
}

static int terminal_enter (void)
{
    if (tcgetattr (STDIN_FILENO, &saved_termios)) return -1;
    struct termios raw = saved_termios;
    //  Keys one at a time, unechoed; ISIG stays so Ctrl-C still interrupts.
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr (STDIN_FILENO, TCSAFLUSH, &raw)) return -1;
    terminal_changed = true;
    //  Alternate screen, cursor hidden.
    static const char enter[] = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";
    write_all (enter, sizeof enter - 1);
    return 0;
}

static void terminal_leave (void)
{
    if (!terminal_changed) return;
    static const char leave[] = "\x1b[?25h\x1b[?1049l";
    write_all (leave, sizeof leave - 1);
    tcsetattr (STDIN_FILENO, TCSAFLUSH, &saved_termios);
    terminal_changed = false;
}

static void terminal_size (int *rows_p, int *columns_p)
{
    struct winsize size;
    if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row && size.ws_col) {
        *rows_p = size.ws_row;
        *columns_p = size.ws_col;
    } else {
        *rows_p = 24;
        *columns_p = 80;
    }
}

//  ---------------------------------------------------------------------------
//  Screen

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
    int rows; //  lines written
    int max_rows;
    int columns;
} screen_t;

static void screen_append (screen_t *screen, const char *text, size_t size)
{
    if (screen->size + size + 1 > screen->capacity) {
        size_t capacity = (screen->size + size + 1) * 2;
        char *bigger = realloc (screen->data, capacity);
        if (!bigger) return;
        screen->data = bigger;
        screen->capacity = capacity;
    }
    memcpy (screen->data + screen->size, text, size);
    screen->size += size;
    screen->data[screen->size] = 0;
}

//  One line, cut at the terminal's width so nothing wraps and scrolls.
static void screen_line (screen_t *screen, const char *text)
{
    if (screen->rows >= screen->max_rows) return;
    size_t bytes = 0;
    int width = 0;
    while (text[bytes] && width < screen->columns) {
        bytes++;
        while (((unsigned char)text[bytes] & 0xC0) == 0x80)
            bytes++;
        width++;
    }
    if (screen->rows) screen_append (screen, "\r\n", 2);
    screen_append (screen, text, bytes);
    screen_append (screen, "\x1b[K", 3);
    screen->rows++;
}

static int state_rank (json_t *bridge)
{
    const char *state = json_string_value (json_object_get (bridge, "state"));
    if (!state) return 3;
    if (strcmp (state, "busy") == 0) return 0;
    if (strcmp (state, "ready") == 0) return 1;
    if (strcmp (state, "draining") == 0) return 2;
    return 3;
}

static json_int_t integer_member (json_t *object, const char *key)
{
    return json_integer_value (json_object_get (object, key));
}

static int busy_bridges (json_t *agent)
{
    int busy = 0;
    size_t index;
    json_t *bridge;
    json_array_foreach (json_object_get (agent, "bridges"), index, bridge) busy +=
        state_rank (bridge) == 0;
    return busy;
}

static int compare_by_requests (json_t *a, json_t *b)
{
    json_int_t x = integer_member (a, "requests"), y = integer_member (b, "requests");
    return x > y ? -1 : x < y;
}

//  Busiest agents first: most busy bridges, then most requests, then name.
static int compare_agents (const void *a_p, const void *b_p)
{
    json_t *a = *(json_t *const *)a_p, *b = *(json_t *const *)b_p;
    int x = busy_bridges (a), y = busy_bridges (b);
    if (x != y) return x > y ? -1 : 1;
    int order = compare_by_requests (a, b);
    if (order) return order;
    const char *m = json_string_value (json_object_get (a, "agent"));
    const char *n = json_string_value (json_object_get (b, "agent"));
    return strcmp (m ? m : "", n ? n : "");
}

//  Busy bridges first, then ready, then draining; then most requests.
static int compare_bridges (const void *a_p, const void *b_p)
{
    json_t *a = *(json_t *const *)a_p, *b = *(json_t *const *)b_p;
    int x = state_rank (a), y = state_rank (b);
    if (x != y) return x < y ? -1 : 1;
    int order = compare_by_requests (a, b);
    if (order) return order;
    json_int_t m = integer_member (a, "bridge"), n = integer_member (b, "bridge");
    return m < n ? -1 : m > n;
}

//  The array's items sorted (a new C array; the caller frees), or NULL.
static json_t **sorted_items (json_t *array, int (*compare) (const void *, const void *))
{
    size_t count = json_array_size (array);
    json_t **items = calloc (count + 1, sizeof *items);
    if (!items) return NULL;
    for (size_t i = 0; i < count; i++)
        items[i] = json_array_get (array, i);
    qsort (items, count, sizeof *items, compare);
    return items;
}

static void add_agent_rows (cli_table_t *table, json_t *agent)
{
    char beat[32], uptime[32], requests[32], errors[32], in_flight[32], pid[32], capacity[64],
        serving[32], cap[32];
    snprintf (capacity, sizeof capacity, "%s/%s",
              cli_format_value (json_object_get (agent, "serving"), serving, sizeof serving),
              cli_format_value (json_object_get (agent, "capacity"), cap, sizeof cap));
    const char *agent_cells[] = {
        json_string_value (json_object_get (agent, "agent")),
        json_string_value (json_object_get (agent, "host")),
        json_is_true (json_object_get (agent, "draining")) ? "draining" : "serving",
        capacity,
        cli_format_value (json_object_get (agent, "in_flight"), in_flight, sizeof in_flight),
        cli_format_value (json_object_get (agent, "requests"), requests, sizeof requests),
        cli_format_value (json_object_get (agent, "errors"), errors, sizeof errors),
        "",
        "",
        "",
        cli_format_value (json_object_get (agent, "pid"), pid, sizeof pid),
        "",
        cli_format_ms (json_object_get (agent, "last_beat_ms"), beat, sizeof beat),
        cli_format_seconds (json_object_get (agent, "uptime_s"), uptime, sizeof uptime)};
    cli_table_add (table, agent_cells);

    json_t **bridges = sorted_items (json_object_get (agent, "bridges"), compare_bridges);
    for (size_t i = 0; bridges && bridges[i]; i++) {
        json_t *bridge = bridges[i];
        char name[64], number[32], generation[32], sessions[32], request[32], age[32], rss[32],
            in_flight[32];
        snprintf (name, sizeof name, "  bridge %s.%s",
                  cli_format_value (json_object_get (bridge, "bridge"), number, sizeof number),
                  cli_format_value (json_object_get (bridge, "generation"), generation,
                                    sizeof generation));
        const char *cells[] = {
            name,
            "",
            json_string_value (json_object_get (bridge, "state")),
            "",
            cli_format_value (json_object_get (bridge, "in_flight"), in_flight, sizeof in_flight),
            cli_format_value (json_object_get (bridge, "requests"), requests, sizeof requests),
            cli_format_value (json_object_get (bridge, "errors"), errors, sizeof errors),
            cli_format_value (json_object_get (bridge, "sessions"), sessions, sizeof sessions),
            cli_format_value (json_object_get (bridge, "request"), request, sizeof request),
            cli_format_ms (json_object_get (bridge, "request_age_ms"), age, sizeof age),
            cli_format_value (json_object_get (bridge, "pid"), pid, sizeof pid),
            cli_format_kb (json_object_get (bridge, "rss_kb"), rss, sizeof rss),
            "",
            ""};
        cli_table_add (table, cells);
    }
    free (bridges);
}

static void render (top_t *self)
{
    screen_t screen = {0};
    terminal_size (&screen.max_rows, &screen.columns);
    screen_append (&screen, "\x1b[H", 3);

    char line[1024], clock[16];
    time_t now = time (NULL);
    struct tm local;
    localtime_r (&now, &local);
    strftime (clock, sizeof clock, "%H:%M:%S", &local);
    snprintf (line, sizeof line, "pyfleet top - %s - %s - every %u ms - q quits",
              self->options->mgmt, clock, self->options->interval_ms);
    screen_line (&screen, line);

    json_t *status = self->status;
    if (status) {
        char agents[32], total[32], busy[32], ready[32], draining[32], sessions[32], queued[32],
            in_flight[32], rate[32], requests[32];
        json_t *bridges = json_object_get (status, "bridges");
        snprintf (
            line, sizeof line,
            "agents %s  bridges %s: %s busy, %s ready, %s draining  sessions %s  "
            "queued %s  in flight %s  req/s %s  requests %s",
            cli_format_value (json_object_get (status, "agents"), agents, sizeof agents),
            cli_format_value (json_object_get (bridges, "total"), total, sizeof total),
            cli_format_value (json_object_get (bridges, "busy"), busy, sizeof busy),
            cli_format_value (json_object_get (bridges, "ready"), ready, sizeof ready),
            cli_format_value (json_object_get (bridges, "draining"), draining, sizeof draining),
            cli_format_value (json_object_get (status, "sessions"), sessions, sizeof sessions),
            cli_format_value (json_object_get (status, "queued"), queued, sizeof queued),
            cli_format_value (json_object_get (status, "in_flight"), in_flight, sizeof in_flight),
            cli_format_value (json_object_get (status, "requests_per_s"), rate, sizeof rate),
            cli_format_value (json_object_get (status, "requests_total"), requests,
                              sizeof requests));
        screen_line (&screen, line);
    } else
        screen_line (&screen, "");
    screen_line (&screen, self->message);

    json_t *agents = json_object_get (self->workers, "agents");
    if (self->workers && json_array_size (agents) == 0)
        screen_line (&screen, "no agents");
    else if (self->workers) {
        static const char *const headers[] = {
            "AGENT / BRIDGE", "HOST",    "STATE", "CAPACITY", "IN FLIGHT", "REQUESTS", "ERRORS",
            "SESSIONS",       "REQUEST", "AGE",   "PID",      "RSS",       "BEAT",     "UPTIME"};
        cli_table_t *table = cli_table_new ("lllrrrrrrrrrrr", headers);
        json_t **sorted = sorted_items (agents, compare_agents);
        for (size_t i = 0; table && sorted && sorted[i]; i++)
            add_agent_rows (table, sorted[i]);
        free (sorted);
        size_t rows = table ? cli_table_rows (table) : 0;
        for (size_t row = 0; row < rows; row++) {
            //  Keep the last line to say what did not fit.
            if (screen.rows == screen.max_rows - 1 && row + 1 < rows) {
                snprintf (line, sizeof line, "... %zu more rows", rows - row);
                screen_line (&screen, line);
                break;
            }
            char *text = cli_table_line (table, row);
            if (text) screen_line (&screen, text);
            free (text);
        }
        cli_table_destroy (&table);
    }
    screen_append (&screen, "\x1b[J", 3);
    if (screen.data) write_all (screen.data, screen.size);
    free (screen.data);
}

//  ---------------------------------------------------------------------------
//  Refresh cycle

static void start_refresh (top_t *self)
{
    if (cli_mgmt_send (self->mgmt, "STATUS", NULL) || cli_mgmt_send (self->mgmt, "WORKERS", NULL)) {
        snprintf (self->message, sizeof self->message, "%s", cli_mgmt_error (self->mgmt));
        cli_mgmt_reset (self->mgmt);
        self->next_refresh = zclock_mono () + self->options->interval_ms;
        return;
    }
    self->pending = 2;
    self->refresh_failed = false;
    self->sent_at = zclock_mono ();
}

static void refresh_timed_out (top_t *self)
{
    snprintf (self->message, sizeof self->message,
              "TIMEOUT: management endpoint %s did not answer within %u ms; retrying%s",
              self->options->mgmt, self->options->timeout_ms,
              self->refreshed_at ? " (the view below is old)" : "");
    cli_mgmt_reset (self->mgmt);
    self->pending = 0;
    self->next_refresh = zclock_mono () + self->options->interval_ms;
}

//  One answer of the refresh in flight: STATUS comes first, then WORKERS
//  (the broker answers a DEALER's requests in order).
static void take_answer (top_t *self)
{
    cli_mgmt_reply_t reply;
    if (cli_mgmt_recv (self->mgmt, &reply)) {
        snprintf (self->message, sizeof self->message, "%s", cli_mgmt_error (self->mgmt));
        self->refresh_failed = true;
        return;
    }
    if (self->pending == 0) { //  nothing asked for it
        cli_mgmt_reply_free (&reply);
        return;
    }
    bool first = self->pending == 2;
    self->pending--;
    if (reply.ok) {
        json_error_t error;
        json_t *body = json_loads (reply.body, 0, &error);
        if (json_is_object (body)) {
            json_t **slot = first ? &self->status : &self->workers;
            json_decref (*slot);
            *slot = body;
            body = NULL;
        } else {
            snprintf (self->message, sizeof self->message,
                      "the broker's %s answer is not a JSON object", first ? "STATUS" : "WORKERS");
            self->refresh_failed = true;
        }
        json_decref (body);
    } else {
        json_t *body = json_loads (reply.body, 0, NULL);
        const char *code = json_string_value (json_object_get (body, "error"));
        const char *message = json_string_value (json_object_get (body, "message"));
        snprintf (self->message, sizeof self->message, "%s: %s", code ? code : "ERROR",
                  message ? message : reply.body);
        self->refresh_failed = true;
        json_decref (body);
    }
    cli_mgmt_reply_free (&reply);
    if (self->pending == 0) {
        self->refreshed_at = zclock_mono ();
        if (!self->refresh_failed) self->message[0] = 0;
        self->next_refresh = self->sent_at + self->options->interval_ms;
    }
}

//  Reads the keys typed; true if one of them quits.
static bool read_keys (void)
{
    char keys[64];
    ssize_t size = read (STDIN_FILENO, keys, sizeof keys);
    if (size == 0) return true; //  the terminal is gone
    for (ssize_t i = 0; i < size; i++)
        if (keys[i] == 'q' || keys[i] == 'Q') return true;
    return false;
}

int cli_top (int argc, char **argv)
{
    options_t options = {0};
    int rc = parse_options (argc, argv, &options);
    if (rc) return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (!isatty (STDIN_FILENO) || !isatty (STDOUT_FILENO)) {
        fprintf (stderr, "pyfleet top: needs a terminal (use 'pyfleet status' or 'workers' "
                         "in scripts)\n");
        return CLI_EXIT_USAGE;
    }
    top_t self = {.options = &options};
    //  The socket first: creating it installs CZMQ's SIGINT/SIGTERM handler,
    //  which turns those signals into zsys_interrupted and a clean way out.
    self.mgmt = cli_mgmt_new (options.mgmt);
    if (!self.mgmt) return CLI_EXIT_USAGE;
    if (terminal_enter ()) {
        fprintf (stderr, "pyfleet top: cannot set up the terminal: %s\n", strerror (errno));
        cli_mgmt_destroy (&self.mgmt);
        return CLI_EXIT_FAILURE;
    }
    snprintf (self.message, sizeof self.message, "asking %s ...", options.mgmt);
    int exit_code = CLI_EXIT_OK;
    bool quit = false;
    render (&self);
    start_refresh (&self);
    while (!quit && !zsys_interrupted) {
        int64_t now = zclock_mono ();
        if (self.pending && now - self.sent_at >= options.timeout_ms) {
            refresh_timed_out (&self);
            render (&self);
        }
        if (!self.pending && now >= self.next_refresh) start_refresh (&self);
        int64_t wait =
            self.pending ? self.sent_at + options.timeout_ms - now : self.next_refresh - now;
        zmq_pollitem_t items[] = {{cli_mgmt_handle (self.mgmt), 0, ZMQ_POLLIN, 0},
                                  {NULL, STDIN_FILENO, ZMQ_POLLIN, 0}};
        int ready = zmq_poll (items, 2, wait > 0 ? (long)wait : 0);
        if (ready < 0) {
            if (zmq_errno () == EINTR) continue;
            exit_code = CLI_EXIT_FAILURE;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) quit = read_keys ();
        if (!quit && (items[0].revents & ZMQ_POLLIN)) {
            //  Take every answer that is ready before drawing once.
            bool was_pending = self.pending > 0;
            do
                take_answer (&self);
            while (zsock_events (cli_mgmt_handle (self.mgmt)) & ZMQ_POLLIN);
            if (was_pending && self.pending == 0) render (&self);
        }
    }
    terminal_leave ();
    if (exit_code) fprintf (stderr, "pyfleet top: poll failed: %s\n", zmq_strerror (zmq_errno ()));
    json_decref (self.status);
    json_decref (self.workers);
    cli_mgmt_destroy (&self.mgmt);
    return exit_code;
}
