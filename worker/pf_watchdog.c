/*  pf_watchdog — see pf_watchdog.h. The child uses only async-signal-safe
    calls (read, kill, _exit), so forking it is safe in any process. */
#define _GNU_SOURCE
#include "pf_watchdog.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_GROUPS 4096

static void watchdog_main (int fd)
{
    static pid_t groups[MAX_GROUPS];
    int count = 0;
    //  Only EOF on the pipe ends it: a Ctrl-C for the agent's group must not
    //  take the watchdog down before it did its job.
    signal (SIGINT, SIG_IGN);
    signal (SIGTERM, SIG_IGN);
    signal (SIGHUP, SIG_IGN);
    for (int other = 3; other < 1024; other++)
        if (other != fd)
            close (other);
    while (1) {
        int32_t record;
        ssize_t got = read (fd, &record, sizeof record);
        if (got < 0 && errno == EINTR)
            continue;
        if (got != (ssize_t) sizeof record)
            break;
        if (record > 0 && count < MAX_GROUPS)
            groups[count++] = (pid_t) record;
        else if (record < 0)
            for (int i = 0; i < count; i++)
                if (groups[i] == (pid_t) -record) {
                    groups[i] = groups[--count];
                    break;
                }
    }
    for (int i = 0; i < count; i++)
        kill (-groups[i], SIGKILL);
    _exit (0);
}

int pf_watchdog_start (pid_t *pid_p, int *fd_p)
{
    int fds[2];
    if (pipe2 (fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork ();
    if (pid < 0) {
        close (fds[0]);
        close (fds[1]);
        return -1;
    }
    if (pid == 0) {
        close (fds[1]);
        watchdog_main (fds[0]);
    }
    close (fds[0]);
    *pid_p = pid;
    *fd_p = fds[1];
    return 0;
}

static int put (int fd, int32_t record)
{
    if (fd < 0)
        return -1;
    ssize_t rc;
    while ((rc = write (fd, &record, sizeof record)) < 0 && errno == EINTR) {
    }
    return rc == (ssize_t) sizeof record ? 0 : -1;
}

int pf_watchdog_add (int fd, pid_t pgid)
{
    return put (fd, (int32_t) pgid);
}

int pf_watchdog_remove (int fd, pid_t pgid)
{
    return put (fd, -(int32_t) pgid);
}
