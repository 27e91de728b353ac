/*  pf_setup — the setup calls every new bridge replays before it is ready.

    A setup call is a command name and its msgpack args. The list starts
    with the calls from the configuration ("COMMAND {json args}") and grows
    with every broadcast request that succeeds, so per-process state such as
    a configured LM survives every respawn and recycle. Adding a call that
    is already in the list (same command, same args) moves it to the end
    instead of repeating it: a broadcast that reaches N bridges is one call. */
#ifndef PF_SETUP_H_INCLUDED
#define PF_SETUP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define PF_SETUP_MAX_CALLS 256

typedef struct _pf_setup_t pf_setup_t;

pf_setup_t *pf_setup_new (void);
void pf_setup_destroy (pf_setup_t **self_p);

//  Appends a call (args copied, msgpack, may be empty for nil). 0, or -1 if
//  the command is empty or longer than 255 bytes, or the list is full.
int pf_setup_add (pf_setup_t *self, const char *command, const void *args, size_t args_size);

//  Parses "COMMAND" or "COMMAND JSON" (JSON args converted to msgpack) and
//  appends it. 0, or -1 with a reason in err.
int pf_setup_add_text (pf_setup_t *self, const char *text, char *err, size_t errlen);

size_t pf_setup_count (pf_setup_t *self);
//  The index-th call (NULL if out of range); args points into the list.
const char *pf_setup_get (pf_setup_t *self, size_t index, const uint8_t **args_p,
                          size_t *args_size_p);

//  Converts one JSON value (objects, arrays, strings with escapes, numbers,
//  true/false/null; nothing after it but spaces) to msgpack. Returns a
//  malloc'd buffer and its size, or NULL with a reason (and byte offset) in err.
uint8_t *pf_setup_json_to_msgpack (const char *json, size_t *size_p, char *err, size_t errlen);

#endif
