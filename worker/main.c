/*  pyfleet-worker — the agent on each host: command line, signals, run. */
#include "pf_agent.h"
#include "pf_log.h"
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
             "  --broker EP            broker endpoint (default tcp://127.0.0.1:5555)\n"
             "  --service NAME         service served (default 'default')\n"
             "  --bridges N            Python bridges to run (default 2)\n"
             "  --module FILE|NAME     command module for the bridges (repeatable)\n"
             "  --python PATH          interpreter (default $PYFLEET_PYTHON or " PF_DEFAULT_PYTHON ")\n"
             "  --python-path DIR      directory of the pyfleet_bridge package\n"
             "  --heartbeat MS         heartbeat interval with the broker (default 1000)\n"
             "  --liveness N           missed heartbeats before the broker is gone (default 3)\n"
             "  --startup-timeout MS   bridge start to ready (default 30000)\n"
             "  --log-level LEVEL      debug, info, warn or error (default info)\n");
}

static int parse_number (const char *text, long long min, long long max, long long *value)
{
    char *end;
    errno = 0;
    long long number = strtoll (text, &end, 10);
    if (errno || end == text || *end || number < min || number > max)
        return -1;
    *value = number;
    return 0;
}

int main (int argc, char *argv[])
{
    pf_agent_config_t config;
    pf_agent_config_defaults (&config);
    if (getenv ("PYFLEET_PYTHON") && *getenv ("PYFLEET_PYTHON"))
        config.python = getenv ("PYFLEET_PYTHON");
    int log_level = PF_LOG_INFO;
    const char **modules = calloc ((size_t) argc + 1, sizeof (char *));
    int module_count = 0;

    static struct option options[] = {
        {"broker", required_argument, 0, 'b'},
        {"service", required_argument, 0, 's'},
        {"bridges", required_argument, 0, 'n'},
        {"module", required_argument, 0, 'm'},
        {"python", required_argument, 0, 'p'},
        {"python-path", required_argument, 0, 'P'},
        {"heartbeat", required_argument, 0, 'h'},
        {"liveness", required_argument, 0, 'l'},
        {"startup-timeout", required_argument, 0, 'S'},
        {"log-level", required_argument, 0, 'L'},
        {"help", no_argument, 0, 'H'},
        {0, 0, 0, 0}};
    int option, index = 0;
    while ((option = getopt_long (argc, argv, "", options, &index)) != -1) {
        long long value = 0;
        int rc = 0;
        switch (option) {
        case 'b':
            config.broker = optarg;
            break;
        case 's':
            config.service = optarg;
            rc = *optarg && strlen (optarg) <= 255 ? 0 : -1;
            break;
        case 'n':
            rc = parse_number (optarg, 1, 1024, &value);
            config.bridges = (int) value;
            break;
        case 'm':
            modules[module_count++] = optarg;
            break;
        case 'p':
            config.python = optarg;
            break;
        case 'P':
            config.python_path = optarg;
            break;
        case 'h':
            rc = parse_number (optarg, 10, 3600000, &value);
            config.heartbeat_ms = (uint32_t) value;
            break;
        case 'l':
            rc = parse_number (optarg, 1, 1000, &value);
            config.liveness = (uint32_t) value;
            break;
        case 'S':
            rc = parse_number (optarg, 100, 3600000, &value);
            config.startup_timeout_ms = (uint32_t) value;
            break;
        case 'L':
            log_level = pf_log_level_parse (optarg);
            rc = log_level < 0 ? -1 : 0;
            break;
        case 'H':
            usage (stdout);
            free (modules);
            return 0;
        default:
            usage (stderr);
            free (modules);
            return 2;
        }
        if (rc != 0) {
            fprintf (stderr, "pyfleet-worker: invalid value '%s' for --%s\n", optarg,
                     options[index].name);
            free (modules);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "pyfleet-worker: unexpected argument '%s'\n", argv[optind]);
        usage (stderr);
        free (modules);
        return 2;
    }
    config.modules = modules;
    pf_log_init ("worker", log_level);

    //  Our own handlers, not CZMQ's, and without SA_RESTART so a signal
    //  interrupts the poll at once.
    zsys_handler_set (NULL);
    struct sigaction action = {.sa_handler = on_signal};
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    int rc = pf_agent_run (&config, &interrupted);
    free (modules);
    return rc;
}
