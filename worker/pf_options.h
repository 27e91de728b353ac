/*  pf_options — the worker's options: every key can come from a ZPL file
    (keys under a `worker` section, named like pyfleet-worker's long flags)
    or from a flag; flags override the file (for a repeatable key such as
    `module`, the flags' values replace the file's). Every value is checked
    before an agent starts, and a bad one is refused with a message naming
    the key. pyfleet-worker and pyfleet-broker --local-worker read them. */
#ifndef PF_OPTIONS_H_INCLUDED
#define PF_OPTIONS_H_INCLUDED

#include "pf_agent.h"
#include <czmq.h>
#include <stdbool.h>

enum { PF_LIST_MODULE, PF_LIST_SETUP, PF_LIST_ENV, PF_LIST_COUNT };

typedef struct {
    pf_agent_config_t config;
    int log_level;
    const char **lists[PF_LIST_COUNT];
    int list_size[PF_LIST_COUNT];
    bool list_from_flags[PF_LIST_COUNT];
    zconfig_t *tree; //  the file's values point into it
} pf_worker_options_t;

//  The agent's defaults; the interpreter from $PYFLEET_PYTHON if set.
void pf_worker_options_init (pf_worker_options_t *options);

//  Applies one key = value (from a flag or from the file). Returns 0, -1
//  for a bad value (with why), -2 for an unknown key.
int pf_worker_options_apply (pf_worker_options_t *options, const char *key, const char *value,
                             bool from_flag, char *why, size_t whylen);

//  Reads the `worker/KEY = VALUE` entries of a ZPL file. On an error prints
//  "PROGRAM: ..." naming the file and the key to stderr and returns -1.
int pf_worker_options_load (pf_worker_options_t *options, const char *path, const char *program);

//  Points the agent's lists (modules, setup calls, environment) at the
//  values gathered; call once all keys are applied.
void pf_worker_options_finish (pf_worker_options_t *options);

void pf_worker_options_free (pf_worker_options_t *options);

#endif
