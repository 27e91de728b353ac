/*  pf_bridge — spawning, feeding, reading and reaping one Python bridge.

    Spawn follows libuv's src/unix/process.c: every pipe is created
    close-on-exec, signals are blocked across fork so no parent handler runs
    in the child, the child resets dispositions and mask before exec, and an
    extra close-on-exec "error pipe" tells the parent whether exec worked: it
    reads EOF when exec succeeded (the pipe closed itself) or the child's
    errno when it did not. Everything the child needs (argv, envp) is built
    before fork, so the child only makes async-signal-safe calls.

    The process must ignore SIGPIPE: writes to a dead bridge then fail with
    EPIPE, which pf_bridge_send/flush report as -1. Spawn from a thread that
    lives as long as the bridge should: PR_SET_PDEATHSIG fires when the
    forking *thread* exits. */
#define _GNU_SOURCE
#include "pf_bridge.h"
#include "pf_frame.h"
#include "pf_log.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

//  Stderr lines are cut at this many bytes and marked.
#define LINE_LIMIT 4096
#define CUT_MARK   " [cut]"

//  Bytes one pf_bridge_read / pf_bridge_drain_stderr call takes at most, so a
//  bridge flooding a pipe cannot keep the agent's loop in one call: the poll
//  loop is level-triggered and comes back for the rest.
#define READ_BUDGET (1024 * 1024)

//  Capacity asked for the request and reply pipes (pf_bridge_pipe_bytes).
#define PIPE_BYTES (256 * 1024)

struct _pf_bridge_t {
    pid_t pid;
    int index;
    int fd_in;  //  our write end of the child's stdin
    int fd_out; //  our read end of the child's protocol output
    int fd_err; //  our read end of the child's stderr
    bool reaped;
    int status;
    bool out_eof;
    bool in_broken; //  a write failed: the child's stdin is gone
    size_t max_frame;
    pf_frame_reader_t *reader;
    pf_frame_writer_t *writer;
    char line[LINE_LIMIT + sizeof CUT_MARK]; //  stderr line being collected
    size_t line_size;
    bool cutting; //  dropping the rest of a cut line until its newline
};

//  What a child that failed before or at exec reports on the error pipe.
typedef struct {
    int stage; //  one of the CHILD_ values
    int error; //  errno
} child_failure_t;

enum { CHILD_SETUP = 1, CHILD_EXEC = 2 };

static void s_set_err (char *err, size_t errlen, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void s_set_err (char *err, size_t errlen, const char *format, ...)
{
    if (!err || !errlen) return;
    va_list args;
    va_start (args, format);
    vsnprintf (err, errlen, format, args);
    va_end (args);
}

static void s_close (int *fd_p)
{
    if (*fd_p >= 0) {
        close (*fd_p);
        *fd_p = -1;
    }
}

//  A close-on-exec pipe whose ends are both above 2: if our own stdin/out/err
//  were closed, pipe2 would hand out 0..2, and the child's dup2 onto the same
//  number would be a no-op that leaves close-on-exec set.
static int s_pipe (int fds[2])
{
    if (pipe2 (fds, O_CLOEXEC)) return -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] > 2) continue;
        int moved = fcntl (fds[i], F_DUPFD_CLOEXEC, 3);
        if (moved < 0) {
            close (fds[0]);
            close (fds[1]);
            return -1;
        }
        close (fds[i]);
        fds[i] = moved;
    }
    return 0;
}

static int s_set_nonblocking (int fd)
{
    int flags = fcntl (fd, F_GETFL);
    return flags < 0 ? -1 : fcntl (fd, F_SETFL, flags | O_NONBLOCK);
}

static bool s_env_has_key (const char *entry, const char *key, size_t key_size)
{
    return strncmp (entry, key, key_size) == 0 && entry[key_size] == '=';
}

static size_t s_env_key_size (const char *entry)
{
    const char *equals = strchr (entry, '=');
    return equals ? (size_t)(equals - entry) : strlen (entry);
}

//  True if `entry`'s key is set by one of options->env (which then wins).
static bool s_env_overridden (const char *entry, const char *const *extra)
{
    size_t key_size = s_env_key_size (entry);
    for (; extra && *extra; extra++)
        if (s_env_has_key (*extra, entry, key_size)) return true;
    return false;
}

//  The child's environment: ours, with PYTHONPATH prefixed by python_path,
//  PYTHONUNBUFFERED=1, then options->env on top. *owned_p is the one string
//  allocated here (the new PYTHONPATH entry), freed with the array.
static char **s_build_env (const pf_bridge_options_t *options, char **owned_p, char *err,
                           size_t errlen)
{
    *owned_p = NULL;
    size_t extra_count = 0;
    for (const char *const *extra = options->env; extra && *extra; extra++) {
        const char *equals = strchr (*extra, '=');
        if (!equals || equals == *extra) {
            s_set_err (err, errlen, "bad env entry '%s' (want KEY=VALUE)", *extra);
            return NULL;
        }
        extra_count++;
    }
    size_t environ_count = 0;
    while (environ && environ[environ_count])
        environ_count++;
    char **envp = calloc (environ_count + extra_count + 3, sizeof *envp);
    if (!envp) {
        s_set_err (err, errlen, "out of memory");
        return NULL;
    }
    const char *old_path = getenv ("PYTHONPATH");
    bool set_path = options->python_path && *options->python_path;
    if (set_path) {
        size_t size = strlen ("PYTHONPATH=") + strlen (options->python_path) +
                      (old_path && *old_path ? 1 + strlen (old_path) : 0) + 1;
        *owned_p = malloc (size);
        if (!*owned_p) {
            free (envp);
            s_set_err (err, errlen, "out of memory");
            return NULL;
        }
        snprintf (*owned_p, size, "PYTHONPATH=%s%s%s", options->python_path,
                  old_path && *old_path ? ":" : "", old_path && *old_path ? old_path : "");
    }
    size_t count = 0;
    for (size_t i = 0; i < environ_count; i++) {
        const char *entry = environ[i];
        if ((set_path && s_env_has_key (entry, "PYTHONPATH", 10)) ||
            s_env_has_key (entry, "PYTHONUNBUFFERED", 16) || s_env_overridden (entry, options->env))
            continue;
        envp[count++] = environ[i];
    }
    if (*owned_p && !s_env_overridden (*owned_p, options->env)) envp[count++] = *owned_p;
    if (!s_env_overridden ("PYTHONUNBUFFERED=1", options->env))
        envp[count++] = (char *)"PYTHONUNBUFFERED=1";
    for (size_t i = 0; i < extra_count; i++)
        //  Of two entries with one key, the later wins (as with setenv).
        if (!s_env_overridden (options->env[i], options->env + i + 1))
            envp[count++] = (char *)options->env[i];
    envp[count] = NULL;
    return envp;
}

static char **s_build_argv (const pf_bridge_options_t *options)
{
    size_t arg_count = 0;
    while (options->args && options->args[arg_count])
        arg_count++;
    char **argv = calloc (arg_count + 4, sizeof *argv);
    if (!argv) return NULL;
    argv[0] = (char *)options->python;
    argv[1] = (char *)"-m";
    argv[2] = (char *)"pyfleet_bridge";
    for (size_t i = 0; i < arg_count; i++)
        argv[3 + i] = (char *)options->args[i];
    return argv;
}

//  Runs in the child between fork and exec: async-signal-safe calls only.
static void s_child (const pf_bridge_options_t *options, pid_t parent, int in, int out, int errfd,
                     int report, char **argv, char **envp)
{
    child_failure_t failure = {CHILD_SETUP, 0};
    //  Own process group, so the agent can signal the bridge and everything
    //  it started at once. The parent also calls setpgid to close the race.
    if (setpgid (0, 0)) goto fail;
    //  Die with the parent. If it already died before prctl, getppid shows
    //  the new parent (init or a subreaper) and the signal would never come.
    if (prctl (PR_SET_PDEATHSIG, SIGKILL) || getppid () != parent) _exit (127);

    struct sigaction dfl;
    memset (&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction (sig, &dfl, NULL); //  EINVAL for the libc-reserved ones: fine
    sigset_t none;
    sigemptyset (&none);
    if (sigprocmask (SIG_SETMASK, &none, NULL)) goto fail;

    //  dup2 clears close-on-exec on 0..2; every other fd of ours closes at exec.
    if (dup2 (in, 0) < 0 || dup2 (out, 1) < 0 || dup2 (errfd, 2) < 0) goto fail;
    //  Fds our process inherited without close-on-exec (from a supervisor,
    //  a shell) must not leak into every bridge. Only the report pipe stays
    //  open until exec. ENOSYS on old kernels: accept the leak.
    if (report > 3) close_range (3, (unsigned)report - 1, 0);
    close_range ((unsigned)report + 1, ~0u, 0);
    execvpe (options->python, argv, envp);
    failure.stage = CHILD_EXEC;
fail:
    failure.error = errno;
    ssize_t ignored = write (report, &failure, sizeof failure);
    (void)ignored;
    _exit (127);
}

size_t pf_bridge_pipe_bytes (int bridges)
{
    unsigned long long soft_pages = 16384; //  the kernel's default
    FILE *file = fopen ("/proc/sys/fs/pipe-user-pages-soft", "r");
    if (file) {
        if (fscanf (file, "%llu", &soft_pages) != 1) soft_pages = 16384;
        fclose (file);
    }
    unsigned long long wanted = 2ULL * (unsigned long long)bridges * PIPE_BYTES;
    unsigned long long budget = soft_pages * (unsigned long long)sysconf (_SC_PAGESIZE);
    return soft_pages == 0 || wanted <= budget / 4 ? PIPE_BYTES : 0;
}

pf_bridge_t *pf_bridge_spawn (const pf_bridge_options_t *options, char *err, size_t errlen)
{
    s_set_err (err, errlen, "%s", "");
    if (!options || !options->python || !*options->python) {
        s_set_err (err, errlen, "no python interpreter given");
        return NULL;
    }
    pf_bridge_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_err (err, errlen, "out of memory");
        return NULL;
    }
    self->fd_in = self->fd_out = self->fd_err = -1;
    self->pid = -1;
    self->index = options->index;
    self->max_frame = options->max_frame ? options->max_frame : PF_FRAME_DEFAULT_MAX;
    self->reader = pf_frame_reader_new (self->max_frame);
    self->writer = pf_frame_writer_new ();

    char *owned_env = NULL;
    char **envp = NULL;
    char **argv = s_build_argv (options);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, report[2] = {-1, -1};
    if (!self->reader || !self->writer || !argv) {
        s_set_err (err, errlen, "out of memory");
        goto failed;
    }
    envp = s_build_env (options, &owned_env, err, errlen);
    if (!envp) goto failed;
    if (s_pipe (in) || s_pipe (out) || s_pipe (errp) || s_pipe (report)) {
        s_set_err (err, errlen, "pipe: %s", strerror (errno));
        goto failed;
    }
    if (s_set_nonblocking (in[1]) || s_set_nonblocking (out[0]) || s_set_nonblocking (errp[0])) {
        s_set_err (err, errlen, "fcntl: %s", strerror (errno));
        goto failed;
    }
    //  Larger pipes: a 100 KiB frame crosses in one write, not two plus a
    //  wake-up each way. Best effort: a pipe the kernel refuses to grow
    //  keeps its 64 KiB.
    if (options->pipe_bytes) {
        fcntl (in[1], F_SETPIPE_SZ, (int)options->pipe_bytes);
        fcntl (out[0], F_SETPIPE_SZ, (int)options->pipe_bytes);
    }

    sigset_t all, saved;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &saved);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0) s_child (options, parent, in[0], out[1], errp[1], report[1], argv, envp);
    int fork_errno = errno;
    pthread_sigmask (SIG_SETMASK, &saved, NULL);
    if (pid < 0) {
        s_set_err (err, errlen, "fork: %s", strerror (fork_errno));
        goto failed;
    }
    self->pid = pid;
    //  Same call as in the child: whichever runs first wins the race; EACCES
    //  (child already exec'd) or ESRCH (already gone) mean it is settled.
    setpgid (pid, pid);
    s_close (&in[0]);
    s_close (&out[1]);
    s_close (&errp[1]);
    s_close (&report[1]);

    child_failure_t failure;
    ssize_t got;
    do
        got = read (report[0], &failure, sizeof failure);
    while (got < 0 && errno == EINTR);
    s_close (&report[0]);
    if (got != 0) {
        if (got != (ssize_t)sizeof failure)
            s_set_err (err, errlen, "spawn %s: child failed before exec", options->python);
        else if (failure.stage == CHILD_EXEC)
            s_set_err (err, errlen, "exec %s: %s", options->python, strerror (failure.error));
        else
            s_set_err (err, errlen, "spawn %s: child setup: %s", options->python,
                       strerror (failure.error));
        int status;
        while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
            ;
        self->reaped = true;
        goto failed;
    }
    self->fd_in = in[1];
    self->fd_out = out[0];
    self->fd_err = errp[0];
    free (argv);
    free (envp);
    free (owned_env);
    return self;

failed:
    for (int i = 0; i < 2; i++) {
        s_close (&in[i]);
        s_close (&out[i]);
        s_close (&errp[i]);
        s_close (&report[i]);
    }
    free (argv);
    free (envp);
    free (owned_env);
    pf_bridge_destroy (&self);
    return NULL;
}

void pf_bridge_destroy (pf_bridge_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_bridge_t *self = *self_p;
    if (self->pid > 0 && !self->reaped) {
        //  Group first (the bridge's own children), then the pid in case it
        //  left the group. It is then dead, so the blocking wait is short.
        kill (-self->pid, SIGKILL);
        kill (self->pid, SIGKILL);
        int status;
        while (waitpid (self->pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    s_close (&self->fd_in);
    s_close (&self->fd_out);
    s_close (&self->fd_err);
    pf_frame_reader_destroy (&self->reader);
    pf_frame_writer_destroy (&self->writer);
    free (self);
    *self_p = NULL;
}

pid_t pf_bridge_pid (pf_bridge_t *self)
{
    return self ? self->pid : -1;
}

int pf_bridge_index (pf_bridge_t *self)
{
    return self ? self->index : -1;
}

int pf_bridge_fd_in (pf_bridge_t *self)
{
    return self ? self->fd_in : -1;
}

int pf_bridge_fd_out (pf_bridge_t *self)
{
    return self ? self->fd_out : -1;
}

int pf_bridge_fd_err (pf_bridge_t *self)
{
    return self ? self->fd_err : -1;
}

int pf_bridge_queue (pf_bridge_t *self, const void *data, size_t size)
{
    if (!self || self->fd_in < 0 || self->in_broken || size > self->max_frame) return -1;
    return pf_frame_writer_push (self->writer, data, size);
}

int pf_bridge_send (pf_bridge_t *self, const void *data, size_t size)
{
    if (pf_bridge_queue (self, data, size)) return -1;
    return pf_bridge_flush (self);
}

bool pf_bridge_send_pending (pf_bridge_t *self)
{
    return self && self->fd_in >= 0 && !self->in_broken && pf_frame_writer_pending (self->writer);
}

int pf_bridge_flush (pf_bridge_t *self)
{
    if (!self || self->fd_in < 0 || self->in_broken) return -1;
    if (pf_frame_writer_flush (self->writer, self->fd_in) == 0) return 0;
    //  EPIPE (the child closed stdin or died) or worse: nothing queued can
    //  ever be delivered, so drop it and fail every later send.
    self->in_broken = true;
    pf_frame_writer_clear (self->writer);
    return -1;
}

int pf_bridge_read (pf_bridge_t *self)
{
    if (!self) return -1;
    if (pf_frame_reader_failed (self->reader)) return -2;
    if (self->fd_out < 0 || self->out_eof) return -1;
    uint8_t buffer[64 * 1024];
    for (size_t taken = 0; taken < READ_BUDGET;) {
        ssize_t got = read (self->fd_out, buffer, sizeof buffer);
        if (got > 0) {
            taken += (size_t)got;
            if (pf_frame_reader_feed (self->reader, buffer, (size_t)got)) {
                pf_warn ("bridge %d (pid %d): protocol fault, frame length %llu above max %zu",
                         self->index, (int)self->pid,
                         (unsigned long long)pf_frame_reader_bad_length (self->reader),
                         self->max_frame);
                return -2;
            }
            //  A short read emptied the pipe: poll says when there is more
            //  (one read per wake-up instead of two, the second for EAGAIN).
            if ((size_t)got < sizeof buffer) return 0;
        } else if (got == 0) {
            self->out_eof = true;
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        else if (errno != EINTR)
            return -1;
    }
    return 0;
}

uint8_t *pf_bridge_recv (pf_bridge_t *self, size_t *size_p)
{
    return self ? pf_frame_reader_pop (self->reader, size_p) : NULL;
}

static void s_deliver_line (pf_bridge_t *self, pf_bridge_line_fn *line_fn, void *arg)
{
    self->line[self->line_size] = 0;
    if (line_fn) line_fn (arg, self, self->line);
    self->line_size = 0;
}

//  Splits stderr bytes into lines. A line reaching LINE_LIMIT is delivered
//  at once with the cut mark (so memory stays bounded and the log sees it
//  now), and the rest of it is dropped up to its newline.
static void s_split_lines (pf_bridge_t *self, const char *data, size_t size,
                           pf_bridge_line_fn *line_fn, void *arg)
{
    while (size > 0) {
        const char *newline = memchr (data, '\n', size);
        size_t segment = newline ? (size_t)(newline - data) : size;
        if (!self->cutting) {
            size_t room = LINE_LIMIT - self->line_size;
            if (segment <= room) {
                memcpy (self->line + self->line_size, data, segment);
                self->line_size += segment;
            } else {
                memcpy (self->line + self->line_size, data, room);
                memcpy (self->line + LINE_LIMIT, CUT_MARK, strlen (CUT_MARK));
                self->line_size = LINE_LIMIT + strlen (CUT_MARK);
                s_deliver_line (self, line_fn, arg);
                self->cutting = true;
            }
        }
        if (newline) {
            if (self->cutting)
                self->cutting = false;
            else
                s_deliver_line (self, line_fn, arg);
            segment++;
        }
        data += segment;
        size -= segment;
    }
}

int pf_bridge_drain_stderr (pf_bridge_t *self, pf_bridge_line_fn *line_fn, void *arg)
{
    if (!self || self->fd_err < 0) return -1;
    char buffer[16 * 1024];
    for (size_t taken = 0; taken < READ_BUDGET;) {
        ssize_t got = read (self->fd_err, buffer, sizeof buffer);
        if (got > 0) {
            taken += (size_t)got;
            s_split_lines (self, buffer, (size_t)got, line_fn, arg);
            continue;
        }
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        //  EOF (or a read error, which ends the stream the same way): the
        //  last line may lack its newline.
        if (self->line_size > 0 && !self->cutting) s_deliver_line (self, line_fn, arg);
        self->line_size = 0;
        self->cutting = false;
        s_close (&self->fd_err);
        return -1;
    }
    return 0;
}

void pf_bridge_close_stdin (pf_bridge_t *self)
{
    if (!self) return;
    s_close (&self->fd_in);
    pf_frame_writer_clear (self->writer);
}

int pf_bridge_signal (pf_bridge_t *self, int sig)
{
    //  Once reaped, the pid may belong to someone else.
    if (!self || self->pid <= 0 || self->reaped) {
        errno = ESRCH;
        return -1;
    }
    return kill (self->pid, sig);
}

int pf_bridge_signal_group (pf_bridge_t *self, int sig)
{
    if (!self || self->pid <= 0 || self->reaped) {
        errno = ESRCH;
        return -1;
    }
    return kill (-self->pid, sig);
}

int pf_bridge_reap (pf_bridge_t *self, int *status_p)
{
    if (!self) return 0;
    while (!self->reaped) {
        int status;
        pid_t got = waitpid (self->pid, &status, WNOHANG);
        if (got == 0) return 0;
        if (got == self->pid) {
            self->reaped = true;
            self->status = status;
        } else if (errno == ECHILD) {
            //  Someone reaped it without telling us (or SIGCHLD is ignored):
            //  it is gone, and its pid must not be signalled any more.
            pf_warn ("bridge %d (pid %d) was reaped elsewhere", self->index, (int)self->pid);
            self->reaped = true;
            self->status = 0;
        } else if (errno != EINTR)
            return 0;
    }
    if (status_p) *status_p = self->status;
    return 1;
}

void pf_bridge_set_reaped (pf_bridge_t *self, int status)
{
    if (!self) return;
    self->reaped = true;
    self->status = status;
}

long pf_bridge_rss_kb (pf_bridge_t *self)
{
    if (!self || self->pid <= 0 || self->reaped) return -1;
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int)self->pid);
    FILE *file = fopen (path, "re");
    if (!file) return -1;
    long rss = -1;
    char line[256];
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "VmRSS: %ld kB", &rss) == 1) break;
    fclose (file);
    return rss;
}
