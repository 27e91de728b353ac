/*  pf_error — the one table of error codes used by every pyfleet layer.
    The numeric values travel on the wire (2-byte big-endian) and are stable:
    new codes are appended, never renumbered. */
#ifndef PF_ERROR_H_INCLUDED
#define PF_ERROR_H_INCLUDED

typedef enum {
    PF_OK = 0,
    PF_BAD_REQUEST = 1,
    PF_UNKNOWN_SERVICE = 2,
    PF_UNKNOWN_COMMAND = 3,
    PF_BUSY = 4,
    PF_TIMEOUT = 5,
    PF_CANCELLED = 6,
    PF_SESSION_LOST = 7,
    PF_WORKER_LOST = 8,
    PF_BRIDGE_CRASHED = 9,
    PF_PYTHON_ERROR = 10,
    PF_TOO_LARGE = 11,
    PF_UNAUTHORIZED = 12,
    PF_SHUTTING_DOWN = 13,
    PF_INTERNAL = 14,
    PF_ERROR_COUNT
} pf_error_t;

//  Name of a code ("TIMEOUT"); "UNKNOWN_ERROR" for a value outside the table.
const char *pf_error_name (int code);

//  Code for a name, exact match; -1 if the name is not in the table.
int pf_error_from_name (const char *name);

#endif
