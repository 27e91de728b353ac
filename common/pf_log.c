/*  pf_log — timestamped, levelled lines on stderr.
    One fprintf per line so that lines from several processes sharing a
    terminal or journal do not interleave mid-line. */
#include "pf_log.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static const char *component = "pyfleet";
static _Thread_local const char *thread_component; //  overrides it in one thread
static pf_log_level_t threshold = PF_LOG_INFO;
static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void pf_log_init (const char *name, pf_log_level_t level)
{
    component = name;
    threshold = level;
}

void pf_log_thread (const char *name)
{
    thread_component = name;
}

int pf_log_level_parse (const char *name)
{
    for (int level = PF_LOG_DEBUG; level <= PF_LOG_ERROR; level++)
        if (strcasecmp (name, level_names[level]) == 0)
            return level;
    return -1;
}

void pf_log (pf_log_level_t level, const char *format, ...)
{
    if (level < threshold)
        return;
    struct timeval now;
    gettimeofday (&now, NULL);
    struct tm tm;
    gmtime_r (&now.tv_sec, &tm);
    char stamp[32];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    char text[4096];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    fprintf (stderr, "%s.%03dZ %s %s: %s\n", stamp, (int) (now.tv_usec / 1000), level_names[level],
             thread_component ? thread_component : component, text);
}
