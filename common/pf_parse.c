/*  pf_parse — strict parsing of command-line and config values. */
#include "pf_parse.h"
#include <errno.h>
#include <stdlib.h>

int pf_parse_number (const char *text, long long min, long long max, long long *value)
{
    char *end;
    errno = 0;
    long long number = strtoll (text, &end, 10);
    if (errno || end == text || *end || number < min || number > max)
        return -1;
    *value = number;
    return 0;
}
