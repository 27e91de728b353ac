/*  cli.h — what the pyfleet command-line tool's files share: subcommand entry
    points, the exit-code table, and small helpers. */
#ifndef PF_CLI_H_INCLUDED
#define PF_CLI_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

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

//  ---------------------------------------------------------------------------
//  Management endpoint (docs/MANAGEMENT.md, PFM1), shared by mgmt.c and top.c

#define CLI_DEFAULT_MGMT            "tcp://127.0.0.1:5556"
#define CLI_DEFAULT_EVENTS          "tcp://127.0.0.1:5557"
#define CLI_DEFAULT_MGMT_TIMEOUT_MS 2000

typedef struct cli_mgmt_t cli_mgmt_t;

//  One answer: ok is false for ERROR; body is NUL-terminated (caller of
//  cli_mgmt_reply_free releases it).
typedef struct {
    bool ok;
    char *body;
    size_t size;
} cli_mgmt_reply_t;

//  A DEALER connected to endpoint; NULL (after a message on stderr) if the
//  endpoint is not valid.
cli_mgmt_t *cli_mgmt_new (const char *endpoint);
void cli_mgmt_destroy (cli_mgmt_t **self_p);

//  Sends one request; args_json NULL means {}. 0 or -1.
int cli_mgmt_send (cli_mgmt_t *self, const char *command, const char *args_json);

//  The libzmq socket, to poll for answers next to other file descriptors.
void *cli_mgmt_handle (cli_mgmt_t *self);

//  Reads one answer that is ready (after a poll). 0, or -1 if it is not a
//  PFM1 reply (cli_mgmt_error says why).
int cli_mgmt_recv (cli_mgmt_t *self, cli_mgmt_reply_t *reply);

//  Forgets requests in flight: a new socket, so a late answer to a request
//  that timed out is never taken for the next one's. 0 or -1.
int cli_mgmt_reset (cli_mgmt_t *self);

//  Sends and waits up to timeout_ms. 0 with the reply, else -1 with the
//  exit code (TIMEOUT, malformed reply, interrupted) and cli_mgmt_error set.
int cli_mgmt_call (cli_mgmt_t *self, const char *command, const char *args_json,
                   uint32_t timeout_ms, cli_mgmt_reply_t *reply, int *exit_code_p);

const char *cli_mgmt_error (cli_mgmt_t *self);
void cli_mgmt_reply_free (cli_mgmt_reply_t *reply);

//  An aligned text table. align has one letter per column: 'l' or 'r'.
typedef struct cli_table_t cli_table_t;
cli_table_t *cli_table_new (const char *align, const char *const *headers);
void cli_table_destroy (cli_table_t **self_p);
//  Appends a row of as many cells as columns; a NULL cell (a missing value)
//  prints as "-", an empty one (does not apply) as blanks.
int cli_table_add (cli_table_t *self, const char *const *cells);
size_t cli_table_rows (cli_table_t *self); //  including the header
//  Row i (0 is the header) padded to the column widths; the caller frees.
char *cli_table_line (cli_table_t *self, size_t row);
void cli_table_print (cli_table_t *self, FILE *stream);

//  Formatting of JSON values for tables; each writes into buffer and returns
//  it. A missing or mistyped value gives "-", never a crash.
const char *cli_format_value (json_t *value, char *buffer, size_t size);
const char *cli_format_seconds (json_t *seconds, char *buffer, size_t size);
const char *cli_format_ms (json_t *ms, char *buffer, size_t size);
const char *cli_format_us (json_t *us, char *buffer, size_t size);
const char *cli_format_kb (json_t *kb, char *buffer, size_t size);

//  Management subcommands, argv[0] being the subcommand's name.
int cli_mgmt_command (int argc, char **argv);
int cli_top (int argc, char **argv);
int cli_watch (int argc, char **argv);

#endif
