/*  test_bridge — the bridge handle against real processes.

    Each test writes its own tiny fake `pyfleet_bridge` package (pure Python,
    no msgpack) into a temporary directory and runs it with /usr/bin/python3,
    so these tests exercise spawn, pipes, signals and reaping without the
    real runtime. Waits are on events (poll on pipes, SIGCHLD) with bounded
    timeouts; every test ends with no child left unreaped. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "pf_bridge.h"

#define PYTHON "/usr/bin/python3"

//  Generous for valgrind; a passing run takes a fraction of it.
#define TIMEOUT_MS 20000

//  --------------------------------------------------------------------------
//  Fake packages

static const char *ECHO_MAIN = "import sys\n"
                               "inp, out = sys.stdin.buffer, sys.stdout.buffer\n"
                               "while True:\n"
                               "    header = inp.read(4)\n"
                               "    if len(header) < 4:\n"
                               "        break\n"
                               "    body = inp.read(int.from_bytes(header, 'big'))\n"
                               "    out.write(header + body)\n"
                               "    out.flush()\n";

//  Reads stdin to EOF, says so, then sleeps on regardless.
static const char *IGNORE_EOF_MAIN = "import os, sys, time\n"
                                     "sys.stdin.buffer.read()\n"
                                     "print('eof seen', file=sys.stderr, flush=True)\n"
                                     "while True:\n"
                                     "    time.sleep(60)\n";

static char s_dir[64];

//  Writes <tmp>/pyfleet_bridge/{__init__,__main__}.py into s_dir.
static void s_fake_package (const char *main_source)
{
    strcpy (s_dir, "/tmp/pf_test_bridge_XXXXXX");
    assert_non_null (mkdtemp (s_dir));
    char path[128];
    snprintf (path, sizeof path, "%s/pyfleet_bridge", s_dir);
    assert_int_equal (mkdir (path, 0700), 0);
    snprintf (path, sizeof path, "%s/pyfleet_bridge/__init__.py", s_dir);
    FILE *file = fopen (path, "w");
    assert_non_null (file);
    fclose (file);
    snprintf (path, sizeof path, "%s/pyfleet_bridge/__main__.py", s_dir);
    file = fopen (path, "w");
    assert_non_null (file);
    fputs (main_source, file);
    fclose (file);
}

static void s_remove_fake_package (void)
{
    char path[160];
    const char *files[] = {"__init__.py", "__main__.py"};
    for (int i = 0; i < 2; i++) {
        snprintf (path, sizeof path, "%s/pyfleet_bridge/%s", s_dir, files[i]);
        unlink (path);
    }
    //  Python may have written a __pycache__; remove it too.
    snprintf (path, sizeof path, "rm -rf '%s'", s_dir);
    assert_int_equal (system (path), 0);
}

static pf_bridge_t *s_spawn_with (const char *const *args, const char *const *env)
{
    pf_bridge_options_t options = {
        .python = PYTHON, .python_path = s_dir, .args = args, .env = env, .index = 3};
    char err[256] = "";
    pf_bridge_t *bridge = pf_bridge_spawn (&options, err, sizeof err);
    if (!bridge) fail_msg ("spawn failed: %s", err);
    return bridge;
}

static pf_bridge_t *s_spawn (void)
{
    return s_spawn_with (NULL, NULL);
}

//  --------------------------------------------------------------------------
//  Bounded waits

static long s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  SIGCHLD is blocked and read from this signalfd, so waiting for a child
//  is a poll on an event rather than a sleep. (pidfd_open would be simpler,
//  but valgrind does not know that syscall.)
static int s_sigchld_fd = -1;

//  Calls check(arg) until it returns true, waking on each SIGCHLD; false
//  when timeout_ms passes first.
static bool s_wait_for (bool (*check) (void *), void *arg, int timeout_ms)
{
    long deadline = s_now_ms () + timeout_ms;
    while (!check (arg)) {
        long left = deadline - s_now_ms ();
        if (left <= 0) return false;
        struct pollfd item = {.fd = s_sigchld_fd, .events = POLLIN};
        poll (&item, 1, (int)left);
        struct signalfd_siginfo info;
        while (read (s_sigchld_fd, &info, sizeof info) > 0)
            ;
    }
    return true;
}

typedef struct {
    pid_t pid;
    pf_bridge_t *bridge;
    int status;
} exit_wait_t;

static bool s_child_reaped (void *arg)
{
    exit_wait_t *wait = arg;
    return waitpid (wait->pid, &wait->status, WNOHANG) == wait->pid;
}

static bool s_bridge_reaped (void *arg)
{
    exit_wait_t *wait = arg;
    return pf_bridge_reap (wait->bridge, &wait->status) == 1;
}

//  Waits until pid (a child of ours) exits and reaps it; returns its status.
static int s_wait_child (pid_t pid, int timeout_ms)
{
    exit_wait_t wait = {.pid = pid};
    if (!s_wait_for (s_child_reaped, &wait, timeout_ms)) {
        kill (pid, SIGKILL);
        waitpid (pid, NULL, 0);
        fail_msg ("process %d still running after %d ms", (int)pid, timeout_ms);
    }
    return wait.status;
}

//  Waits until the bridge's process exits and reaps it through the handle.
static int s_wait_bridge_exit (pf_bridge_t *bridge)
{
    exit_wait_t wait = {.bridge = bridge};
    if (!s_wait_for (s_bridge_reaped, &wait, TIMEOUT_MS))
        fail_msg ("bridge %d still running", (int)pf_bridge_pid (bridge));
    return wait.status;
}

static void s_assert_no_children (void)
{
    errno = 0;
    assert_int_equal (waitpid (-1, NULL, WNOHANG), -1);
    assert_int_equal (errno, ECHILD);
}

//  Collected stderr lines.
typedef struct {
    char *lines[64];
    int count;
} lines_t;

static void s_collect_line (void *arg, pf_bridge_t *bridge, const char *line)
{
    lines_t *lines = arg;
    assert_int_equal (pf_bridge_index (bridge), 3);
    if (lines->count < 64) lines->lines[lines->count++] = strdup (line);
}

static void s_free_lines (lines_t *lines)
{
    for (int i = 0; i < lines->count; i++)
        free (lines->lines[i]);
    lines->count = 0;
}

//  Drains stderr until `text` is a collected line, or until EOF when text is NULL.
static void s_wait_stderr (pf_bridge_t *bridge, lines_t *lines, const char *text)
{
    long deadline = s_now_ms () + TIMEOUT_MS;
    while (true) {
        for (int i = 0; text && i < lines->count; i++)
            if (strcmp (lines->lines[i], text) == 0) return;
        long left = deadline - s_now_ms ();
        if (left <= 0) fail_msg ("no stderr line '%s' in time", text ? text : "(EOF)");
        struct pollfd item = {.fd = pf_bridge_fd_err (bridge), .events = POLLIN};
        assert_true (poll (&item, 1, (int)left) >= 0);
        if (pf_bridge_drain_stderr (bridge, s_collect_line, lines) == -1) {
            if (!text) return;
            fail_msg ("stderr closed before '%s'", text);
        }
    }
}

//  --------------------------------------------------------------------------
//  Tests

static void frames_of_one_byte_to_one_mebibyte_round_trip_through_an_echo_bridge (void **state)
{
    (void)state;
    s_fake_package (ECHO_MAIN);
    pf_bridge_t *bridge = s_spawn ();
    const size_t sizes[] = {1, 2, 3, 100, 4095, 4096, 4097, 65535, 65536, 65537, 300000, 1048576};
    const size_t count = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < count; i++) {
        uint8_t *payload = malloc (sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            payload[j] = (uint8_t)(i + j * 13);
        assert_int_equal (pf_bridge_send (bridge, payload, sizes[i]), 0);
        free (payload);
    }
    //  1.7 MB queued against a 64 KB pipe: the rest goes out as the echo reads.
    assert_true (pf_bridge_send_pending (bridge));

    size_t received = 0;
    long deadline = s_now_ms () + TIMEOUT_MS;
    while (received < count) {
        long left = deadline - s_now_ms ();
        assert_true (left > 0);
        struct pollfd items[2] = {
            {.fd = pf_bridge_fd_out (bridge), .events = POLLIN},
            {.fd = pf_bridge_fd_in (bridge),
             .events = pf_bridge_send_pending (bridge) ? POLLOUT : 0},
        };
        assert_true (poll (items, 2, (int)left) >= 0);
        if (items[1].revents) assert_int_equal (pf_bridge_flush (bridge), 0);
        if (items[0].revents) assert_int_equal (pf_bridge_read (bridge), 0);
        size_t size;
        uint8_t *frame;
        while ((frame = pf_bridge_recv (bridge, &size))) {
            assert_true (received < count);
            assert_int_equal (size, sizes[received]);
            for (size_t j = 0; j < size; j++)
                if (frame[j] != (uint8_t)(received + j * 13))
                    fail_msg ("frame %zu differs at byte %zu", received, j);
            free (frame);
            received++;
        }
    }
    assert_false (pf_bridge_send_pending (bridge));
    pf_bridge_destroy (&bridge);
    assert_null (bridge);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static unsigned long long s_pipe_pages_soft (void)
{
    unsigned long long pages = 16384;
    FILE *file = fopen ("/proc/sys/fs/pipe-user-pages-soft", "r");
    if (file) {
        assert_int_equal (fscanf (file, "%llu", &pages), 1);
        fclose (file);
    }
    return pages;
}

static void pipes_grow_to_what_is_asked_within_a_quarter_of_the_pipe_budget (void **state)
{
    (void)state;
    unsigned long long soft = s_pipe_pages_soft ();
    //  Two 256 KiB pipes per bridge against a quarter of the budget.
    unsigned long long fits = soft ? soft * (unsigned long long) sysconf (_SC_PAGESIZE) / 4 / (2 * 256 * 1024) : 1000000;
    assert_int_equal (pf_bridge_pipe_bytes (1), fits >= 1 ? 256 * 1024 : 0);
    assert_int_equal (pf_bridge_pipe_bytes ((int) (fits < 100000 ? fits : 100000)),
                      fits >= 1 ? 256 * 1024 : 0);
    if (soft)
        assert_int_equal (pf_bridge_pipe_bytes ((int) fits + 1), 0);

    s_fake_package (ECHO_MAIN);
    pf_bridge_options_t options = {
        .python = PYTHON, .python_path = s_dir, .pipe_bytes = 256 * 1024};
    char err[256] = "";
    pf_bridge_t *bridge = pf_bridge_spawn (&options, err, sizeof err);
    if (!bridge) fail_msg ("spawn failed: %s", err);
    assert_int_equal (fcntl (pf_bridge_fd_in (bridge), F_GETPIPE_SZ), 256 * 1024);
    assert_int_equal (fcntl (pf_bridge_fd_out (bridge), F_GETPIPE_SZ), 256 * 1024);
    pf_bridge_destroy (&bridge);
    bridge = s_spawn (); //  pipe_bytes 0: the system's default
    assert_int_equal (fcntl (pf_bridge_fd_in (bridge), F_GETPIPE_SZ), 65536);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void send_above_max_frame_is_refused (void **state)
{
    (void)state;
    s_fake_package (ECHO_MAIN);
    pf_bridge_options_t options = {.python = PYTHON, .python_path = s_dir, .max_frame = 1000};
    char err[256];
    pf_bridge_t *bridge = pf_bridge_spawn (&options, err, sizeof err);
    assert_non_null (bridge);
    uint8_t payload[1001] = {0};
    assert_int_equal (pf_bridge_send (bridge, payload, 1001), -1);
    assert_int_equal (pf_bridge_send (bridge, payload, 1000), 0);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void exec_failure_returns_null_with_a_message_naming_the_path (void **state)
{
    (void)state;
    pf_bridge_options_t options = {.python = "/no/such/python", .python_path = "/tmp"};
    char err[256] = "";
    assert_null (pf_bridge_spawn (&options, err, sizeof err));
    assert_string_equal (err, "exec /no/such/python: No such file or directory");
    s_assert_no_children (); //  the failed child was reaped

    //  A file that exists without execute permission (even root needs an x bit).
    char plain[] = "/tmp/pf_test_bridge_plain_XXXXXX";
    int fd = mkstemp (plain);
    assert_true (fd >= 0);
    close (fd);
    assert_int_equal (chmod (plain, 0644), 0);
    options.python = plain;
    assert_null (pf_bridge_spawn (&options, err, sizeof err));
    char expected[128];
    snprintf (expected, sizeof expected, "exec %s: Permission denied", plain);
    assert_string_equal (err, expected);
    unlink (plain);
    s_assert_no_children ();

    options.python = NULL;
    assert_null (pf_bridge_spawn (&options, err, sizeof err));
    assert_non_null (strstr (err, "python"));

    const char *bad_env[] = {"NO_EQUALS_SIGN", NULL};
    options.python = PYTHON;
    options.env = bad_env;
    assert_null (pf_bridge_spawn (&options, err, sizeof err));
    assert_non_null (strstr (err, "NO_EQUALS_SIGN"));
    s_assert_no_children ();
}

static void child_runs_in_its_own_process_group (void **state)
{
    (void)state;
    s_fake_package (IGNORE_EOF_MAIN);
    pf_bridge_t *bridge = s_spawn ();
    pid_t pid = pf_bridge_pid (bridge);
    assert_true (pid > 0);
    assert_int_equal (getpgid (pid), pid);
    assert_true (getpgid (0) != pid);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void child_gets_python_path_unbuffered_env_args_and_an_empty_signal_mask (void **state)
{
    (void)state;
    s_fake_package ("import os, sys\n"
                    "e = os.environ\n"
                    "print('path=' + e.get('PYTHONPATH', '-'), file=sys.stderr)\n"
                    "print('unbuffered=' + e.get('PYTHONUNBUFFERED', '-'), file=sys.stderr)\n"
                    "print('extra=' + e.get('PF_TEST_EXTRA', '-'), file=sys.stderr)\n"
                    "print('args=' + ','.join(sys.argv[1:]), file=sys.stderr)\n"
                    "blocked = [l for l in open('/proc/self/status') if l.startswith('SigBlk')]\n"
                    "print('mask=' + blocked[0].split()[1], file=sys.stderr)\n"
                    "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                    "print('fds=' + ','.join(map(str, fds)), file=sys.stderr)\n");
    char *old_path = getenv ("PYTHONPATH") ? strdup (getenv ("PYTHONPATH")) : NULL;
    setenv ("PYTHONPATH", "/old/path", 1);
    sigset_t usr2, saved;
    sigemptyset (&usr2);
    sigaddset (&usr2, SIGUSR2);
    sigprocmask (SIG_BLOCK, &usr2, &saved);

    const char *args[] = {"--module", "m1", NULL};
    const char *env[] = {"PF_TEST_EXTRA=first", "PF_TEST_EXTRA=second", NULL};
    pf_bridge_t *bridge = s_spawn_with (args, env);
    sigprocmask (SIG_SETMASK, &saved, NULL);
    if (old_path)
        setenv ("PYTHONPATH", old_path, 1);
    else
        unsetenv ("PYTHONPATH");
    free (old_path);

    lines_t lines = {0};
    s_wait_stderr (bridge, &lines, NULL);
    char expected_path[128];
    snprintf (expected_path, sizeof expected_path, "path=%s:/old/path", s_dir);
    assert_true (lines.count >= 6);
    assert_string_equal (lines.lines[0], expected_path);
    assert_string_equal (lines.lines[1], "unbuffered=1");
    assert_string_equal (lines.lines[2], "extra=second");
    assert_string_equal (lines.lines[3], "args=--module,m1");
    assert_string_equal (lines.lines[4], "mask=0000000000000000");
    assert_string_equal (lines.lines[5], "fds=0,1,2,3"); //  3: listdir's own
    s_free_lines (&lines);
    int status = s_wait_bridge_exit (bridge);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void stderr_lines_keep_their_prefixes_and_a_long_line_is_cut (void **state)
{
    (void)state;
    s_fake_package ("import sys\n"
                    "err = sys.stderr\n"
                    "err.write('  indented: first\\n')\n"
                    "err.write('[tag] second\\n\\n')\n"
                    "err.write('x' * (1024 * 1024) + 'TAIL\\n')\n"
                    "err.write('y' * 4096 + '\\n')\n"
                    "err.write('after the cut\\n')\n"
                    "err.write('no newline at the end')\n");
    pf_bridge_t *bridge = s_spawn ();
    lines_t lines = {0};
    s_wait_stderr (bridge, &lines, NULL);
    assert_int_equal (lines.count, 7);
    assert_string_equal (lines.lines[0], "  indented: first");
    assert_string_equal (lines.lines[1], "[tag] second");
    assert_string_equal (lines.lines[2], "");
    assert_int_equal (strlen (lines.lines[3]), 4096 + strlen (" [cut]"));
    assert_int_equal (strspn (lines.lines[3], "x"), 4096);
    assert_string_equal (lines.lines[3] + 4096, " [cut]");
    assert_int_equal (strlen (lines.lines[4]), 4096); //  exactly the limit: not cut
    assert_int_equal (strspn (lines.lines[4], "y"), 4096);
    assert_string_equal (lines.lines[5], "after the cut");
    assert_string_equal (lines.lines[6], "no newline at the end");
    s_free_lines (&lines);
    assert_int_equal (pf_bridge_fd_err (bridge), -1);
    assert_int_equal (pf_bridge_drain_stderr (bridge, s_collect_line, &lines), -1);
    s_wait_bridge_exit (bridge);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

typedef struct {
    FILE *log;
    size_t count;
} line_log_t;

//  Logs each line as the agent would (to /dev/null here): a reader doing
//  real work per line is slower than `yes` writing.
static void s_log_line (void *arg, pf_bridge_t *bridge, const char *line)
{
    line_log_t *log = arg;
    fprintf (log->log, "bridge %d: %s\n", pf_bridge_index (bridge), line);
    log->count++;
}

static void drain_stderr_returns_while_a_bridge_floods_it (void **state)
{
    (void)state;
    //  Three `yes` in the bridge's group write "flood\n" faster than any
    //  reader splits lines: a drain that read until EAGAIN would never return.
    s_fake_package ("import os\n"
                    "os.dup2(2, 1)\n"
                    "os.execvp('sh', ['sh', '-c', 'yes flood & yes flood & yes flood & wait'])\n");
    pf_bridge_t *bridge = s_spawn ();
    line_log_t log = {.log = fopen ("/dev/null", "w")};
    assert_non_null (log.log);
    long deadline = s_now_ms () + TIMEOUT_MS;
    for (int drains = 0; drains < 5; drains++) {
        assert_true (s_now_ms () < deadline);
        struct pollfd item = {.fd = pf_bridge_fd_err (bridge), .events = POLLIN};
        assert_int_equal (poll (&item, 1, TIMEOUT_MS), 1);
        log.count = 0;
        assert_int_equal (pf_bridge_drain_stderr (bridge, s_log_line, &log), 0);
        //  One call takes at most its budget (1 MiB) plus one read.
        assert_true (log.count <= (1024 * 1024 + 16 * 1024) / 6 + 1);
    }
    fclose (log.log);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void eof_on_stdin_makes_the_child_exit_and_reap_returns_one (void **state)
{
    (void)state;
    s_fake_package (ECHO_MAIN);
    pf_bridge_t *bridge = s_spawn ();
    int status = -1;
    assert_int_equal (pf_bridge_reap (bridge, &status), 0);
    pf_bridge_close_stdin (bridge);
    assert_int_equal (pf_bridge_fd_in (bridge), -1);
    assert_int_equal (pf_bridge_send (bridge, "x", 1), -1);
    //  The child's exit closes its stdout: read sees EOF.
    struct pollfd item = {.fd = pf_bridge_fd_out (bridge), .events = POLLIN};
    assert_int_equal (poll (&item, 1, TIMEOUT_MS), 1);
    assert_int_equal (pf_bridge_read (bridge), -1);
    status = s_wait_bridge_exit (bridge);
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 0);
    //  Stays reaped, with the same status.
    int again = -1;
    assert_int_equal (pf_bridge_reap (bridge, &again), 1);
    assert_int_equal (again, status);
    assert_int_equal (pf_bridge_signal (bridge, SIGTERM), -1);
    assert_int_equal (pf_bridge_signal_group (bridge, SIGTERM), -1);
    assert_int_equal (pf_bridge_rss_kb (bridge), -1);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void destroy_kills_a_child_that_ignores_eof_and_its_process_group (void **state)
{
    (void)state;
    s_fake_package ("import os, sys, time\n"
                    "child = os.fork()\n"
                    "if child == 0:\n"
                    "    while True:\n"
                    "        time.sleep(60)\n"
                    "print('grandchild %d' % child, file=sys.stderr, flush=True)\n"
                    "sys.stdin.buffer.read()\n"
                    "print('eof seen', file=sys.stderr, flush=True)\n"
                    "while True:\n"
                    "    time.sleep(60)\n");
    //  The grandchild is orphaned when the bridge dies: as a subreaper we
    //  inherit it and can prove it got SIGKILL too.
    assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 1), 0);
    pf_bridge_t *bridge = s_spawn ();
    pf_bridge_close_stdin (bridge);
    lines_t lines = {0};
    s_wait_stderr (bridge, &lines, "eof seen");
    int grandchild = 0;
    assert_int_equal (sscanf (lines.lines[0], "grandchild %d", &grandchild), 1);
    s_free_lines (&lines);
    assert_int_equal (pf_bridge_reap (bridge, NULL), 0); //  alive despite EOF
    long rss = pf_bridge_rss_kb (bridge);
    assert_true (rss > 1000 && rss < 1000000); //  a python3: some MB

    pid_t pid = pf_bridge_pid (bridge);
    pf_bridge_destroy (&bridge);
    errno = 0;
    assert_int_equal (kill (pid, 0), -1); //  dead and reaped already
    assert_int_equal (errno, ESRCH);

    int status = s_wait_child (grandchild, TIMEOUT_MS);
    assert_true (WIFSIGNALED (status));
    assert_int_equal (WTERMSIG (status), SIGKILL);
    assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 0), 0);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void signal_reaches_the_child_and_reap_reports_it (void **state)
{
    (void)state;
    s_fake_package (IGNORE_EOF_MAIN);
    pf_bridge_t *bridge = s_spawn ();
    assert_int_equal (pf_bridge_signal (bridge, SIGTERM), 0);
    int status = s_wait_bridge_exit (bridge);
    assert_true (WIFSIGNALED (status));
    assert_int_equal (WTERMSIG (status), SIGTERM);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void send_to_a_child_that_closed_stdin_fails_without_killing_us (void **state)
{
    (void)state;
    s_fake_package ("import os, sys, time\n"
                    "os.close(0)\n"
                    "print('closed', file=sys.stderr, flush=True)\n"
                    "while True:\n"
                    "    time.sleep(60)\n");
    pf_bridge_t *bridge = s_spawn ();
    lines_t lines = {0};
    s_wait_stderr (bridge, &lines, "closed");
    s_free_lines (&lines);
    assert_int_equal (pf_bridge_send (bridge, "hello", 5), -1); //  EPIPE, not SIGPIPE
    assert_false (pf_bridge_send_pending (bridge));
    assert_int_equal (pf_bridge_send (bridge, "again", 5), -1);
    assert_int_equal (pf_bridge_flush (bridge), -1);
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

static void a_length_of_0xffffffff_from_the_child_is_a_protocol_fault (void **state)
{
    (void)state;
    s_fake_package ("import sys, time\n"
                    "out = sys.stdout.buffer\n"
                    "out.write(b'\\x00\\x00\\x00\\x02ok' + b'\\xff\\xff\\xff\\xff' + b'z' * 100)\n"
                    "out.flush()\n"
                    "while True:\n"
                    "    time.sleep(60)\n");
    pf_bridge_t *bridge = s_spawn ();
    long deadline = s_now_ms () + TIMEOUT_MS;
    int rc = 0;
    while (rc == 0) {
        long left = deadline - s_now_ms ();
        assert_true (left > 0);
        struct pollfd item = {.fd = pf_bridge_fd_out (bridge), .events = POLLIN};
        assert_true (poll (&item, 1, (int)left) >= 0);
        rc = pf_bridge_read (bridge);
    }
    assert_int_equal (rc, -2);
    assert_int_equal (pf_bridge_read (bridge), -2); //  sticky
    //  The good frame before the fault is still delivered.
    size_t size = 0;
    uint8_t *frame = pf_bridge_recv (bridge, &size);
    assert_non_null (frame);
    assert_int_equal (size, 2);
    assert_memory_equal (frame, "ok", 2);
    free (frame);
    assert_null (pf_bridge_recv (bridge, &size));
    pf_bridge_destroy (&bridge);
    s_assert_no_children ();
    s_remove_fake_package ();
}

//  An intermediate process spawns a bridge, reports its pid and is killed
//  with SIGKILL: the bridge must follow it through PR_SET_PDEATHSIG.
static void bridge_dies_when_its_parent_is_killed (void **state)
{
    (void)state;
    s_fake_package (IGNORE_EOF_MAIN);
    assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 1), 0);
    int report[2];
    assert_int_equal (pipe2 (report, O_CLOEXEC), 0);
    pid_t middle = fork ();
    assert_true (middle >= 0);
    if (middle == 0) {
        pf_bridge_options_t options = {.python = PYTHON, .python_path = s_dir};
        char err[256];
        pf_bridge_t *bridge = pf_bridge_spawn (&options, err, sizeof err);
        pid_t pid = bridge ? pf_bridge_pid (bridge) : -1;
        if (write (report[1], &pid, sizeof pid) != sizeof pid) _exit (1);
        while (true)
            pause ();
    }
    close (report[1]);
    struct pollfd item = {.fd = report[0], .events = POLLIN};
    assert_int_equal (poll (&item, 1, TIMEOUT_MS), 1);
    pid_t bridge_pid = -1;
    assert_int_equal (read (report[0], &bridge_pid, sizeof bridge_pid), sizeof bridge_pid);
    close (report[0]);
    assert_true (bridge_pid > 0);
    assert_int_equal (kill (bridge_pid, 0), 0);

    kill (middle, SIGKILL);
    int status = s_wait_child (middle, TIMEOUT_MS);
    assert_int_equal (WTERMSIG (status), SIGKILL);
    //  Orphaned to us (the subreaper); it must be dead within 2 s.
    status = s_wait_child (bridge_pid, 2000);
    assert_true (WIFSIGNALED (status));
    assert_int_equal (WTERMSIG (status), SIGKILL);
    assert_int_equal (prctl (PR_SET_CHILD_SUBREAPER, 0), 0);
    s_assert_no_children ();
    s_remove_fake_package ();
}

int main (void)
{
    //  As the agent does: a dead bridge's pipe must give EPIPE, not SIGPIPE.
    signal (SIGPIPE, SIG_IGN);
    sigset_t sigchld;
    sigemptyset (&sigchld);
    sigaddset (&sigchld, SIGCHLD);
    sigprocmask (SIG_BLOCK, &sigchld, NULL);
    s_sigchld_fd = signalfd (-1, &sigchld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s_sigchld_fd < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (frames_of_one_byte_to_one_mebibyte_round_trip_through_an_echo_bridge),
        cmocka_unit_test (pipes_grow_to_what_is_asked_within_a_quarter_of_the_pipe_budget),
        cmocka_unit_test (send_above_max_frame_is_refused),
        cmocka_unit_test (exec_failure_returns_null_with_a_message_naming_the_path),
        cmocka_unit_test (child_runs_in_its_own_process_group),
        cmocka_unit_test (child_gets_python_path_unbuffered_env_args_and_an_empty_signal_mask),
        cmocka_unit_test (stderr_lines_keep_their_prefixes_and_a_long_line_is_cut),
        cmocka_unit_test (drain_stderr_returns_while_a_bridge_floods_it),
        cmocka_unit_test (eof_on_stdin_makes_the_child_exit_and_reap_returns_one),
        cmocka_unit_test (destroy_kills_a_child_that_ignores_eof_and_its_process_group),
        cmocka_unit_test (signal_reaches_the_child_and_reap_reports_it),
        cmocka_unit_test (send_to_a_child_that_closed_stdin_fails_without_killing_us),
        cmocka_unit_test (a_length_of_0xffffffff_from_the_child_is_a_protocol_fault),
        cmocka_unit_test (bridge_dies_when_its_parent_is_killed),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    close (s_sigchld_fd);
    return failed;
}
