/*  pf_bridge_msg — the msgpack maps exchanged with a Python bridge.

    Agent -> bridge:  {id: u64, cmd: str, args: <raw msgpack>, session: str|nil}
    Bridge -> agent:
      reply     {id, ok: true, result: any}
      error     {id, ok: false, error: {code: str, type: str, message: str, traceback: str}}
      ready     {id: 0, event: "ready", pid, commands: [str], version: str}
      beat      {event: "beat", busy: id|nil, elapsed_ms, rss_kb}
    `code` is a pf_error name (PYTHON_ERROR, UNKNOWN_COMMAND, BAD_REQUEST...);
    a missing or unknown code reads as PYTHON_ERROR. Unknown keys are ignored. */
#ifndef PF_BRIDGE_MSG_H_INCLUDED
#define PF_BRIDGE_MSG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { PF_BRIDGE_MSG_REPLY = 1, PF_BRIDGE_MSG_READY, PF_BRIDGE_MSG_BEAT } pf_bridge_msg_kind_t;

typedef struct {
    int kind;             //  pf_bridge_msg_kind_t
    uint64_t id;          //  reply: request id
    bool ok;              //  reply: true for a result, false for an error
    const uint8_t *result; //  ok reply: the result's msgpack bytes, inside the decoded
                            //  frame (valid while it is; a static nil if absent)
    size_t result_size;
    int code;             //  error reply: pf_error_t
    char *error_type;     //  error reply: Python exception type (malloc'd, may be NULL)
    char *error_message;  //  error reply (malloc'd, never NULL for an error)
    uint8_t *detail;      //  error reply: the error map re-encoded as msgpack (malloc'd)
    size_t detail_size;
    uint32_t pid;         //  ready
    char *version;        //  ready (malloc'd, may be NULL)
    bool busy;            //  beat: busy on busy_id
    uint64_t busy_id;
    uint64_t elapsed_ms;  //  beat
    uint64_t rss_kb;      //  beat
} pf_bridge_msg_t;

//  Encodes a request. args/args_size is raw msgpack copied verbatim (size 0
//  encodes nil); session NULL or "" encodes nil. deadline_ms > 0 adds a
//  "deadline" key (CLOCK_MONOTONIC milliseconds, zclock_mono's clock): the
//  bridge answers TIMEOUT without starting a request it reads after that
//  time (it may wait in the pipe behind another one). releasable adds
//  "releasable": true: on SIGUSR2 the bridge gives it back unstarted (BUSY)
//  if it still waits in the pipe. Returns a malloc'd buffer and sets
//  *size_p, or NULL on allocation failure.
uint8_t *pf_bridge_msg_request (uint64_t id, const char *cmd, const void *args, size_t args_size,
                                const char *session, int64_t deadline_ms, bool releasable,
                                size_t *size_p);

//  True if args/args_size is exactly one msgpack object (or empty). The
//  request copies args verbatim, so the agent checks a client's args with
//  this first: bad args would otherwise corrupt the whole request map and
//  read as a bridge fault instead of the client's BAD_REQUEST.
bool pf_bridge_msg_args_valid (const void *args, size_t size);

//  Decodes one frame from a bridge. Returns 0, or -1 if the bytes are not
//  msgpack or not one of the maps above (a fatal bridge fault), with a reason
//  in err. self is reset first; free with pf_bridge_msg_reset.
int pf_bridge_msg_decode (pf_bridge_msg_t *self, const uint8_t *data, size_t size, char *err,
                          size_t errlen);

void pf_bridge_msg_reset (pf_bridge_msg_t *self);

#endif
