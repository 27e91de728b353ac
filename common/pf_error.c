/*  pf_error — names for the shared error codes. */
#include "pf_error.h"
#include <string.h>

static const char *names[PF_ERROR_COUNT] = {
    "OK",           "BAD_REQUEST",    "UNKNOWN_SERVICE", "UNKNOWN_COMMAND", "BUSY",
    "TIMEOUT",      "CANCELLED",      "SESSION_LOST",    "WORKER_LOST",     "BRIDGE_CRASHED",
    "PYTHON_ERROR", "TOO_LARGE",      "UNAUTHORIZED",    "SHUTTING_DOWN",   "INTERNAL",
};

const char *pf_error_name (int code)
{
    if (code < 0 || code >= PF_ERROR_COUNT)
        return "UNKNOWN_ERROR";
    return names[code];
}

int pf_error_from_name (const char *name)
{
    if (!name)
        return -1;
    for (int code = 0; code < PF_ERROR_COUNT; code++)
        if (strcmp (names[code], name) == 0)
            return code;
    return -1;
}
