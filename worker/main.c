/*  pyfleet-worker — the agent on each host: options, config file, signals, run.

    Every option is a key that can come from a ZPL file (`--config FILE`,
    keys under a `worker` section, named like the long flags) or from a flag;
    flags override the file (for a repeatable key such as `module`, the
    flags' values replace the file's). Every value is checked before the
    agent starts, and a bad one is refused with a message naming the key. */
#include "pf_agent.h"
#include "pf_log.h"
#include "pf_parse.h"
#include "pf_setup.h"
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t interrupted = 0;

static void on_signal (int sig)
{
    (void) sig;
    interrupted = 1;
}

static void usage (FILE *out)
{
    fprintf (out,
             "usage: pyfleet-worker [options]\n"
             "  --config FILE          ZPL file with these keys under 'worker'; flags override it\n"
             "  --broker EP            broker endpoint (default tcp://127.0.0.1:5555)\n"
             "  --service NAME         service served (default 'default')\n"
             "  --bridges N            Python bridges to run (default 2)\n"
             "  --module FILE|NAME     command module for the bridges (repeatable)\n"
             "  --python PATH          interpreter (default $PYFLEET_PYTHON or " PF_DEFAULT_PYTHON ")\n"
             "  --python-path DIR      directory of the pyfleet_bridge package\n"
             "  --setup 'CMD [JSON]'   call every new bridge runs before it is ready (repeatable)\n"
             "  --env KEY=VALUE        bridge environment; overrides OMP/OPENBLAS/MKL_NUM_THREADS=1 (repeatable)\n"
             "  --max-requests N       recycle a bridge after N requests (default 0: never)\n"
             "  --max-age SECONDS      recycle a bridge after this age (default 0: never)\n"
             "  --max-rss MB           recycle a bridge above this RSS (default 0: never)\n"
             "  --jitter PERCENT       per-bridge jitter of the request and age limits (default 10)\n"
             "  --max-recycling K      bridges recycling at once (default 1)\n"
             "  --prespawn PERCENT     start a replacement at this %% of the request limit, or\n"
             "                         when a limit is 2 startups (>= 300 ms) away (default 80)\n"
             "  --drain-cap SECONDS    longest a recycled bridge keeps its sessions (default 60)\n"
             "  --pipeline N           most requests in a bridge's pipe at once: about 1 ms of its\n"
             "                         usual work, at least 2, 1..64 (default 8)\n"
             "  --hold MS              a request waiting behind one that has run this long (or 4x\n"
             "                         the bridge's average, up to 4x MS) goes back to the broker\n"
             "                         to run elsewhere; bridges averaging MS or more get one\n"
             "                         request at a time (default 10)\n"
             "  --heartbeat MS         heartbeat interval with the broker (default 1000)\n"
             "  --liveness N           missed heartbeats before the broker is gone (default 3)\n"
             "  --beat MS              bridge beat interval (default 1000)\n"
             "  --wedged-beats N       missed beats before a bridge is wedged and killed (default 3)\n"
             "  --startup-timeout MS   bridge start to ready (default 30000)\n"
             "  --dump-grace MS        after the stack dump before the kill (default 200)\n"
             "  --stop-grace MS        each step of a graceful stop (default 2000)\n"
             "  --log-level LEVEL      debug, info, warn or error (default info)\n");
}

enum { LIST_MODULE, LIST_SETUP, LIST_ENV, LIST_COUNT };

typedef struct {
    pf_agent_config_t config;
    int log_level;
    const char **lists[LIST_COUNT];
    int list_size[LIST_COUNT];
    bool list_from_flags[LIST_COUNT];
} options_t;

static void list_add (options_t *options, int list, const char *value, bool from_flag)
{
    if (from_flag && !options->list_from_flags[list]) {
        //  The first flag for a list replaces what the file said.
        options->list_from_flags[list] = true;
        options->list_size[list] = 0;
    }
    int size = options->list_size[list];
    const char **grown = realloc (options->lists[list], (size_t) (size + 2) * sizeof (char *));
    if (!grown)
        return;
    grown[size] = value;
    grown[size + 1] = NULL;
    options->lists[list] = grown;
    options->list_size[list] = size + 1;
}

typedef struct {
    const char *key;
    long long min, max;
    uint32_t *field;
} number_option_t;

//  Applies one key = value. Returns 0, -1 for a bad value (with why), -2
//  for an unknown key.
static int apply (options_t *options, const char *key, const char *value, bool from_flag,
                  char *why, size_t whylen)
{
    pf_agent_config_t *config = &options->config;
    number_option_t numbers[] = {
        {"heartbeat", 10, 3600000, &config->heartbeat_ms},
        {"liveness", 1, 1000, &config->liveness},
        {"beat", 10, 60000, &config->beat_ms},
        {"wedged-beats", 2, 1000, &config->wedged_beats},
        {"startup-timeout", 100, 3600000, &config->startup_timeout_ms},
        {"dump-grace", 0, 60000, &config->dump_grace_ms},
        {"stop-grace", 0, 600000, &config->stop_grace_ms},
        {"max-requests", 0, 1000000000, &config->max_requests},
        {"max-age", 0, 100000000, &config->max_age_s},
        {"max-rss", 0, 100000000, &config->max_rss_mb},
        {"jitter", 0, 50, &config->jitter_pct},
        {"max-recycling", 1, 64, &config->max_recycling},
        {"prespawn", 0, 100, &config->prespawn_pct},
        {"drain-cap", 0, 100000000, &config->drain_cap_s},
        {"pipeline", 1, 64, &config->pipeline},
        {"hold", 0, 3600000, &config->hold_ms},
    };
    long long number;
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (streq (key, numbers[i].key)) {
            if (pf_parse_number (value, numbers[i].min, numbers[i].max, &number) != 0) {
                snprintf (why, whylen, "expected an integer from %lld to %lld", numbers[i].min,
                          numbers[i].max);
                return -1;
            }
            *numbers[i].field = (uint32_t) number;
            return 0;
        }
    if (streq (key, "bridges")) {
        if (pf_parse_number (value, 1, 1024, &number) != 0) {
            snprintf (why, whylen, "expected an integer from 1 to 1024");
            return -1;
        }
        config->bridges = (int) number;
    }
    else if (streq (key, "broker") || streq (key, "python") || streq (key, "python-path")) {
        if (!*value) {
            snprintf (why, whylen, "must not be empty");
            return -1;
        }
        if (streq (key, "broker"))
            config->broker = value;
        else if (streq (key, "python"))
            config->python = value;
        else
            config->python_path = value;
    }
    else if (streq (key, "service")) {
        if (!*value || strlen (value) > 255) {
            snprintf (why, whylen, "expected 1 to 255 bytes");
            return -1;
        }
        config->service = value;
    }
    else if (streq (key, "module"))
        list_add (options, LIST_MODULE, value, from_flag);
    else if (streq (key, "setup")) {
        pf_setup_t *check = pf_setup_new ();
        int rc = pf_setup_add_text (check, value, why, whylen);
        pf_setup_destroy (&check);
        if (rc != 0)
            return -1;
        list_add (options, LIST_SETUP, value, from_flag);
    }
    else if (streq (key, "env")) {
        const char *equals = strchr (value, '=');
        if (!equals || equals == value) {
            snprintf (why, whylen, "expected KEY=VALUE");
            return -1;
        }
        list_add (options, LIST_ENV, value, from_flag);
    }
    else if (streq (key, "log-level")) {
        options->log_level = pf_log_level_parse (value);
        if (options->log_level < 0) {
            snprintf (why, whylen, "expected debug, info, warn or error");
            return -1;
        }
    }
    else
        return -2;
    return 0;
}

//  Reads `worker/KEY = VALUE` entries. The tree stays alive (values point
//  into it) until the agent stops.
static int load_config (options_t *options, const char *path, zconfig_t **tree_p)
{
    if (!zsys_file_exists (path)) {
        fprintf (stderr, "pyfleet-worker: config file '%s' not found\n", path);
        return -1;
    }
    zconfig_t *tree = zconfig_load (path);
    if (!tree) {
        fprintf (stderr, "pyfleet-worker: config file '%s' is not valid ZPL\n", path);
        return -1;
    }
    *tree_p = tree;
    for (zconfig_t *section = zconfig_child (tree); section; section = zconfig_next (section)) {
        if (!streq (zconfig_name (section), "worker")) {
            fprintf (stderr, "pyfleet-worker: %s: unknown section '%s' (expected 'worker')\n",
                     path, zconfig_name (section));
            return -1;
        }
        for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
            const char *key = zconfig_name (item);
            const char *value = zconfig_value (item) ? zconfig_value (item) : "";
            char why[256] = "";
            int rc = apply (options, key, value, false, why, sizeof why);
            if (rc == -2) {
                fprintf (stderr, "pyfleet-worker: %s: unknown key 'worker/%s'\n", path, key);
                return -1;
            }
            if (rc != 0) {
                fprintf (stderr, "pyfleet-worker: %s: invalid value '%s' for key 'worker/%s': %s\n",
                         path, value, key, why);
                return -1;
            }
        }
    }
    return 0;
}

static int run (int argc, char *argv[], options_t *options, zconfig_t **tree_p)
{
    static struct option flags[] = {{"config", required_argument, 0, 0},
                                    {"broker", required_argument, 0, 0},
                                    {"service", required_argument, 0, 0},
                                    {"bridges", required_argument, 0, 0},
                                    {"module", required_argument, 0, 0},
                                    {"python", required_argument, 0, 0},
                                    {"python-path", required_argument, 0, 0},
                                    {"setup", required_argument, 0, 0},
                                    {"env", required_argument, 0, 0},
                                    {"max-requests", required_argument, 0, 0},
                                    {"max-age", required_argument, 0, 0},
                                    {"max-rss", required_argument, 0, 0},
                                    {"jitter", required_argument, 0, 0},
                                    {"max-recycling", required_argument, 0, 0},
                                    {"prespawn", required_argument, 0, 0},
                                    {"drain-cap", required_argument, 0, 0},
                                    {"pipeline", required_argument, 0, 0},
                                    {"hold", required_argument, 0, 0},
                                    {"heartbeat", required_argument, 0, 0},
                                    {"liveness", required_argument, 0, 0},
                                    {"beat", required_argument, 0, 0},
                                    {"wedged-beats", required_argument, 0, 0},
                                    {"startup-timeout", required_argument, 0, 0},
                                    {"dump-grace", required_argument, 0, 0},
                                    {"stop-grace", required_argument, 0, 0},
                                    {"log-level", required_argument, 0, 0},
                                    {"help", no_argument, 0, 'H'},
                                    {0, 0, 0, 0}};
    //  Pass 1: the config file, so that flags (pass 2) override it.
    int option, index = 0;
    opterr = 0;
    while ((option = getopt_long (argc, argv, "", flags, &index)) != -1)
        if (option == 0 && streq (flags[index].name, "config")
            && load_config (options, optarg, tree_p) != 0)
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
        if (apply (options, flags[index].name, optarg, true, why, sizeof why) != 0) {
            fprintf (stderr, "pyfleet-worker: invalid value '%s' for --%s: %s\n", optarg,
                     flags[index].name, why);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "pyfleet-worker: unexpected argument '%s'\n", argv[optind]);
        usage (stderr);
        return 2;
    }
    options->config.modules = options->lists[LIST_MODULE];
    options->config.setup = options->lists[LIST_SETUP];
    options->config.env = options->lists[LIST_ENV];
    pf_log_init ("worker", options->log_level);

    //  Our own handlers, not CZMQ's, and without SA_RESTART so a signal
    //  interrupts the poll at once.
    zsys_handler_set (NULL);
    struct sigaction action = {.sa_handler = on_signal};
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    return pf_agent_run (&options->config, &interrupted);
}

int main (int argc, char *argv[])
{
    options_t options = {0};
    pf_agent_config_defaults (&options.config);
    if (getenv ("PYFLEET_PYTHON") && *getenv ("PYFLEET_PYTHON"))
        options.config.python = getenv ("PYFLEET_PYTHON");
    options.log_level = PF_LOG_INFO;
    zconfig_t *tree = NULL;
    int rc = run (argc, argv, &options, &tree);
    for (int i = 0; i < LIST_COUNT; i++)
        free (options.lists[i]);
    zconfig_destroy (&tree);
    return rc;
}
