/*  pf_log — one small logging module for every daemon.
    Lines go to stderr (systemd collects them) as
    "2026-11-27T09:00:00.123Z LEVEL component: message". */
#ifndef PF_LOG_H_INCLUDED
#define PF_LOG_H_INCLUDED

typedef enum { PF_LOG_DEBUG = 0, PF_LOG_INFO, PF_LOG_WARN, PF_LOG_ERROR } pf_log_level_t;

//  Sets the component name printed on each line and the lowest level printed.
void pf_log_init (const char *component, pf_log_level_t level);

//  Names the calling thread's lines instead (pyfleet-broker's local worker).
void pf_log_thread (const char *component);

//  Parses "debug", "info", "warn", "error"; -1 if none of them.
int pf_log_level_parse (const char *name);

void pf_log (pf_log_level_t level, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

#define pf_debug(...) pf_log (PF_LOG_DEBUG, __VA_ARGS__)
#define pf_info(...)  pf_log (PF_LOG_INFO, __VA_ARGS__)
#define pf_warn(...)  pf_log (PF_LOG_WARN, __VA_ARGS__)
#define pf_error(...) pf_log (PF_LOG_ERROR, __VA_ARGS__)

#endif
