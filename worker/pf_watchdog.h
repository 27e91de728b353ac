/*  pf_watchdog — kills the bridges' process groups if the agent dies.

    PR_SET_PDEATHSIG kills a bridge when the agent dies, even on kill -9, but
    not what the bridge forked: a grandchild is not the agent's child and is
    reparented away from a dead subreaper. So at start the agent forks this
    tiny watchdog, which holds the read end of a pipe on which the agent
    registers each bridge's process group. When the pipe reaches EOF (the
    agent exited, however it died) the watchdog SIGKILLs every group still
    registered and exits. Groups are unregistered once their bridge is reaped
    and its group killed, so a reused pid is never signalled. */
#ifndef PF_WATCHDOG_H_INCLUDED
#define PF_WATCHDOG_H_INCLUDED

#include <sys/types.h>

//  Forks the watchdog (call before any thread or socket exists). Returns 0
//  and fills *pid_p and *fd_p (the close-on-exec write end), or -1.
int pf_watchdog_start (pid_t *pid_p, int *fd_p);

//  Registers / unregisters a process group. 0 or -1 (the watchdog is gone).
int pf_watchdog_add (int fd, pid_t pgid);
int pf_watchdog_remove (int fd, pid_t pgid);

#endif
