/*  cli.h — what the pyfleet command-line tool's files share: subcommand entry
    points, the exit-code table, and small helpers. */
#ifndef PF_CLI_H_INCLUDED
#define PF_CLI_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Exit codes. Every error class has its own so scripts can branch on it;
//  the table is printed by `pyfleet --help` and documented in docs/CLIENT.md.
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,       //  local failure: out of memory, unreadable reply
    CLI_EXIT_USAGE = 2,         //  bad command line, invalid JSON arguments
    CLI_EXIT_TIMEOUT = 3,       //  TIMEOUT
    CLI_EXIT_BUSY = 4,          //  BUSY
    CLI_EXIT_PYTHON = 5,        //  PYTHON_ERROR
    CLI_EXIT_NOT_FOUND = 6,     //  UNKNOWN_SERVICE, UNKNOWN_COMMAND
    CLI_EXIT_SESSION = 7,       //  SESSION_LOST
    CLI_EXIT_WORKER = 8,        //  WORKER_LOST, BRIDGE_CRASHED
    CLI_EXIT_CANCELLED = 9,     //  CANCELLED, SHUTTING_DOWN, interrupted
    CLI_EXIT_REJECTED = 10,     //  BAD_REQUEST, TOO_LARGE (from the broker)
    CLI_EXIT_UNAUTHORIZED = 11, //  UNAUTHORIZED
    CLI_EXIT_INTERNAL = 12,     //  INTERNAL, or a code this tool does not know
};

//  The text of the exit-code table, for --help.
extern const char *cli_exit_code_help;

//  Exit code for a pf_error_t value.
int cli_exit_code (int error_code);

//  Parses a decimal integer in [min, max]; 0 on success, -1 if not.
int cli_parse_integer (const char *text, uint64_t min, uint64_t max, uint64_t *value_p);

//  `pyfleet call ...` with argv[0] == "call". Returns the exit code.
int cli_call (int argc, char **argv);

#endif
