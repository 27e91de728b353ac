/*  pyfleet-worker — the agent on each host: options (pf_options: a ZPL file
    given by --config, overridden by flags), signals, run. */
#include "pf_log.h"
#include "pf_options.h"
#include <czmq.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>

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
             "  --curve-cert FILE      connect with CurveZMQ as this certificate (FILE and\n"
             "                         FILE_secret, from `pyfleet keygen`); needs --broker-key\n"
             "  --broker-key KEY|FILE  the broker's public key: 40 Z85 characters or its\n"
             "                         certificate file\n"
             "  --log-level LEVEL      debug, info, warn or error (default info)\n");
}

static int run (int argc, char *argv[], pf_worker_options_t *options)
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
                                    {"curve-cert", required_argument, 0, 0},
                                    {"broker-key", required_argument, 0, 0},
                                    {"help", no_argument, 0, 'H'},
                                    {0, 0, 0, 0}};
    //  Pass 1: the config file, so that flags (pass 2) override it.
    int option, index = 0;
    opterr = 0;
    while ((option = getopt_long (argc, argv, "", flags, &index)) != -1)
        if (option == 0 && streq (flags[index].name, "config")
            && pf_worker_options_load (options, optarg, "pyfleet-worker") != 0)
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
        if (pf_worker_options_apply (options, flags[index].name, optarg, true, why, sizeof why) != 0) {
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
    pf_worker_options_finish (options);
    if (!options->config.curve_cert != !options->config.broker_key) {
        fprintf (stderr, "pyfleet-worker: --%s needs --%s\n",
                 options->config.curve_cert ? "curve-cert" : "broker-key",
                 options->config.curve_cert ? "broker-key" : "curve-cert");
        return 2;
    }
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
    pf_worker_options_t options;
    pf_worker_options_init (&options);
    int rc = run (argc, argv, &options);
    pf_worker_options_free (&options);
    return rc;
}
