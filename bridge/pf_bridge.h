/*  pf_bridge — the handle on one Python bridge process.

    Spawns `PYTHON -m pyfleet_bridge ARGS...` with three pipes: requests go to
    its fd 0, reply frames come back on its fd 1 (the runtime keeps a private
    dup of it for the protocol), and its stderr on a third pipe. Every fd is
    non-blocking and close-on-exec on our side, so the handle fits in a poll
    loop (zloop/zpoller on the raw fds). Frames are a 4-byte big-endian length
    then that many bytes; a length above max_frame is a protocol fault and is
    never allocated.

    Containment: the child runs in its own process group and gets
    PR_SET_PDEATHSIG(SIGKILL), so it dies with its parent. An exec failure
    (bad interpreter path...) is reported by pf_bridge_spawn through an error
    pipe, not lost. The child gets no fds but 0..2 (inherited ones are closed).

    The calling process must ignore SIGPIPE (signal (SIGPIPE, SIG_IGN)): a
    write to a dead bridge then fails with EPIPE and pf_bridge_send/flush
    return -1, instead of the signal killing the agent. */
#ifndef PF_BRIDGE_H_INCLUDED
#define PF_BRIDGE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct _pf_bridge_t pf_bridge_t;

typedef struct {
    const char *python;       //  interpreter path (required)
    const char *python_path;  //  directory holding the pyfleet_bridge package; prepended to PYTHONPATH (may be NULL)
    const char *const *args;  //  extra arguments after "-m pyfleet_bridge", NULL-terminated (may be NULL)
    const char *const *env;   //  extra "KEY=VALUE" entries set in the child, NULL-terminated (may be NULL)
    size_t max_frame;         //  0 means 64 MiB
    int index;                //  slot number, for log prefixes
    size_t pipe_bytes;        //  capacity asked for the request and reply pipes; 0: the system's
} pf_bridge_options_t;

//  The pipe capacity for `bridges` bridges (pipe_bytes above): 256 KiB while
//  their request and reply pipes take at most a quarter of the user's pipe
//  budget (fs/pipe-user-pages-soft; past it the kernel gives every new pipe
//  of the user 2 pages), else 0.
size_t pf_bridge_pipe_bytes (int bridges);

//  Spawns a bridge. Returns NULL on failure, with the reason (including an
//  exec failure in the child: "exec /no/such/python: No such file or
//  directory") written to err; a failed child is reaped before returning.
//  env entries must be KEY=VALUE; later entries override earlier ones and
//  the inherited environment, PYTHONUNBUFFERED=1 is always set.
pf_bridge_t *pf_bridge_spawn (const pf_bridge_options_t *options, char *err, size_t errlen);

//  Kills the process group with SIGKILL if the child is still running, reaps
//  it, closes every fd, frees, nulls *self_p. Safe on NULL.
void pf_bridge_destroy (pf_bridge_t **self_p);

pid_t pf_bridge_pid (pf_bridge_t *self);
int pf_bridge_index (pf_bridge_t *self);

//  Fds to poll: in (writable, poll only while pf_bridge_send_pending), out
//  (readable, protocol frames), err (readable, stderr text). -1 once closed.
int pf_bridge_fd_in (pf_bridge_t *self);
int pf_bridge_fd_out (pf_bridge_t *self);
int pf_bridge_fd_err (pf_bridge_t *self);

//  Queues one frame (the length prefix is added) and writes as much as the
//  pipe takes without blocking. Returns 0, or -1 if the pipe is broken or the
//  frame is larger than max_frame.
int pf_bridge_send (pf_bridge_t *self, const void *data, size_t size);

//  Queues one frame without writing it: pf_bridge_flush (or the next send)
//  writes everything queued at once. Returns 0 or -1, as pf_bridge_send.
int pf_bridge_queue (pf_bridge_t *self, const void *data, size_t size);

//  True while queued output is waiting for the pipe.
bool pf_bridge_send_pending (pf_bridge_t *self);

//  Writes queued output when fd_in is writable. 0, or -1 on a broken pipe.
int pf_bridge_flush (pf_bridge_t *self);

//  Reads what fd_out has without blocking. Returns 0 on success (complete
//  frames, if any, are then available from pf_bridge_recv), -1 on EOF or a
//  read error, -2 on a protocol fault (length above max_frame; sticky).
//  Frames completed before the EOF or fault stay available. Takes at most
//  1 MiB per call so one chatty bridge cannot hold the loop: call again
//  while fd_out polls readable. fd_out stays open after EOF (stop polling
//  it); destroy closes it.
int pf_bridge_read (pf_bridge_t *self);

//  Pops the next complete frame: returns a malloc'd buffer the caller frees
//  and sets *size_p, or NULL when no complete frame is buffered.
uint8_t *pf_bridge_recv (pf_bridge_t *self, size_t *size_p);

//  Reads what the stderr pipe has without blocking and calls line_fn for each
//  complete line (without the newline; lines longer than 4 KiB are cut to
//  4096 bytes plus " [cut]", the rest dropped up to the next newline). The
//  line is only valid during the call. A final line without newline is
//  delivered at EOF. Takes at most 1 MiB per call (never blocks, even on a
//  flood). Returns 0, or -1 once the pipe reached EOF (the fd is then closed).
typedef void(pf_bridge_line_fn) (void *arg, pf_bridge_t *bridge, const char *line);
int pf_bridge_drain_stderr (pf_bridge_t *self, pf_bridge_line_fn *line_fn, void *arg);

//  Closes the child's stdin (it exits on EOF).
void pf_bridge_close_stdin (pf_bridge_t *self);

//  Sends sig to the child process / to its whole process group. 0 or -1.
int pf_bridge_signal (pf_bridge_t *self, int sig);
int pf_bridge_signal_group (pf_bridge_t *self, int sig);

//  Non-blocking reap. Returns 1 if the child has exited (its wait status in
//  *status_p, which may be NULL), 0 if it is still running. Once reaped,
//  stays reaped; signal/signal_group/rss_kb then fail (the pid may be reused).
//  If someone else reaped it (ECHILD), it counts as reaped with status 0.
int pf_bridge_reap (pf_bridge_t *self, int *status_p);

//  Marks the child reaped when the caller reaped it elsewhere (waitpid(-1)).
void pf_bridge_set_reaped (pf_bridge_t *self, int status);

//  Resident set size of the child in KiB, read from /proc/PID/status; -1 on error.
long pf_bridge_rss_kb (pf_bridge_t *self);

#endif
