/*  pyfleet — the command-line client: entry point, subcommand dispatch, help
    and the exit-code table. Each subcommand lives in its own file (call.c). */
#include "cli.h"
#include "pf_curve.h"
#include "pf_error.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_exit_code_help =
    "Exit codes:\n"
    "   0  success\n"
    "   1  local failure (out of memory, a reply that cannot be read)\n"
    "   2  usage error, invalid JSON arguments, invalid endpoint\n"
    "   3  TIMEOUT\n"
    "   4  BUSY\n"
    "   5  PYTHON_ERROR (the command raised; type and traceback on stderr)\n"
    "   6  UNKNOWN_SERVICE, UNKNOWN_COMMAND\n"
    "   7  SESSION_LOST\n"
    "   8  WORKER_LOST, BRIDGE_CRASHED\n"
    "   9  CANCELLED, SHUTTING_DOWN, interrupted (Ctrl-C)\n"
    "  10  BAD_REQUEST, TOO_LARGE (refused by the broker)\n"
    "  11  UNAUTHORIZED\n"
    "  12  INTERNAL, or an error code this tool does not know\n";

static void print_usage (FILE *stream)
{
    fprintf (stream,
             "Usage: pyfleet COMMAND [OPTIONS] ...\n"
             "\n"
             "Commands:\n"
             "  call     send one request (or many, as a load generator) to a broker\n"
             "\n"
             "  status | workers | sessions | services\n"
             "           the fleet as the broker's management endpoint sees it (--json)\n"
             "  metrics  Prometheus text exposition\n"
             "  drain AGENT | recycle AGENT[/BRIDGE] | end-session SERVICE SESSION\n"
             "           operator actions\n"
             "  top      live full-screen view of agents and bridges (q quits)\n"
             "  watch    stream the broker's events, one line each (--json)\n"
             "  keygen PATH [NAME]\n"
             "           write a new CurveZMQ certificate to PATH (public) and\n"
             "           PATH_secret (0600) and print its public key\n"
             "  help     show this help\n"
             "\n"
             "Run 'pyfleet COMMAND --help' for a command's options.\n"
             "The broker endpoint comes from --broker, else $PYFLEET_BROKER,\n"
             "else tcp://127.0.0.1:5555; the management endpoint from --mgmt, else\n"
             "$PYFLEET_MGMT, else tcp://127.0.0.1:5556; events from --events, else\n"
             "$PYFLEET_EVENTS, else tcp://127.0.0.1:5557 (docs/MANAGEMENT.md).\n"
             "\n"
             "%s",
             cli_exit_code_help);
}

int cli_exit_code (int error_code)
{
    switch (error_code) {
    case PF_OK:
        return CLI_EXIT_OK;
    case PF_TIMEOUT:
        return CLI_EXIT_TIMEOUT;
    case PF_BUSY:
        return CLI_EXIT_BUSY;
    case PF_PYTHON_ERROR:
        return CLI_EXIT_PYTHON;
    case PF_UNKNOWN_SERVICE:
    case PF_UNKNOWN_COMMAND:
        return CLI_EXIT_NOT_FOUND;
    case PF_SESSION_LOST:
        return CLI_EXIT_SESSION;
    case PF_WORKER_LOST:
    case PF_BRIDGE_CRASHED:
        return CLI_EXIT_WORKER;
    case PF_CANCELLED:
    case PF_SHUTTING_DOWN:
        return CLI_EXIT_CANCELLED;
    case PF_BAD_REQUEST:
    case PF_TOO_LARGE:
        return CLI_EXIT_REJECTED;
    case PF_UNAUTHORIZED:
        return CLI_EXIT_UNAUTHORIZED;
    default:
        return CLI_EXIT_INTERNAL;
    }
}

int cli_parse_integer (const char *text, uint64_t min, uint64_t max, uint64_t *value_p)
{
    if (!text || *text < '0' || *text > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end || value < min || value > max) return -1;
    *value_p = value;
    return 0;
}

//  `pyfleet keygen PATH [NAME]`: a certificate for a broker, an agent or a
//  client (docs/SECURITY.md); the public file is what the other side gets.
static int keygen (int argc, char **argv)
{
    if (argc < 2 || argc > 3 || argv[1][0] == '-') {
        fprintf (argc == 2 && strcmp (argv[1], "--help") == 0 ? stdout : stderr,
                 "Usage: pyfleet keygen PATH [NAME]\n"
                 "Writes a new CurveZMQ certificate: PATH holds the public key (give it to\n"
                 "the broker's --curve-allow directory, or as a --broker-key), PATH_secret\n"
                 "both keys, mode 0600. NAME goes into its metadata. Prints the public key.\n"
                 "An existing file is never replaced.\n");
        return argc == 2 && strcmp (argv[1], "--help") == 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    char why[PATH_MAX + 128];
    if (pf_curve_keygen (argv[1], argc == 3 ? argv[2] : NULL, why, sizeof why) != 0) {
        fprintf (stderr, "pyfleet keygen: %s\n", why);
        return CLI_EXIT_FAILURE;
    }
    char key[PF_CURVE_KEY_LEN + 1];
    if (pf_curve_public_key (argv[1], key, why, sizeof why) != 0) {
        fprintf (stderr, "pyfleet keygen: %s\n", why);
        return CLI_EXIT_FAILURE;
    }
    printf ("%s\n", key);
    return CLI_EXIT_OK;
}

int main (int argc, char **argv)
{
    if (argc < 2) {
        print_usage (stderr);
        return CLI_EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp (command, "--help") == 0 || strcmp (command, "-h") == 0 ||
        strcmp (command, "help") == 0) {
        print_usage (stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp (command, "call") == 0) return cli_call (argc - 1, argv + 1);
    static const char *const mgmt_commands[] = {"status",  "workers", "sessions", "services",
                                                "metrics", "drain",   "recycle",  "end-session"};
    for (size_t i = 0; i < sizeof mgmt_commands / sizeof mgmt_commands[0]; i++)
        if (strcmp (command, mgmt_commands[i]) == 0) return cli_mgmt_command (argc - 1, argv + 1);
    if (strcmp (command, "top") == 0) return cli_top (argc - 1, argv + 1);
    if (strcmp (command, "watch") == 0) return cli_watch (argc - 1, argv + 1);
    if (strcmp (command, "keygen") == 0) return keygen (argc - 1, argv + 1);
    fprintf (stderr, "pyfleet: unknown command '%s'\n\n", command);
    print_usage (stderr);
    return CLI_EXIT_USAGE;
}
