/*  pf_agent — the worker agent: one DEALER to the broker, N Python bridges.

    Spawns and supervises the bridges (all in parallel; ready means the
    bridge's ready frame arrived and its setup calls ran), runs each request
    the broker sends on the bridge the broker named, in order, with about
    1 ms of the bridge's work waiting in its pipe (requests stuck behind a
    long one go back to the broker, released from the pipe by SIGUSR2),
    enforces each request's deadline (stack dump, then kill and replace), tells busy, wedged and
    dead bridges apart by their beats, recycles bridges by request count,
    age and RSS (spawn before retire), respawns dead bridges with
    exponential backoff, tracks the sessions each bridge holds, heartbeats
    with the broker and reconnects to it with backoff.

    Slots: the agent has bridges + 2 * max_recycling slot indices. `bridges`
    of them hold the active bridges; the spare ones hold the replacements
    of bridges being recycled (started ahead of the limit, so a replacement
    is ready before the bridge it replaces stops taking work) and the old
    bridges while they stop. The broker addresses a bridge by (slot index,
    generation) and only sends work to bridges listed in HEARTBEAT. */
#ifndef PF_AGENT_H_INCLUDED
#define PF_AGENT_H_INCLUDED

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *broker;          //  broker endpoint
    const char *service;         //  service this agent serves
    int bridges;                 //  number of active bridges (1..1024)
    const char *python;          //  interpreter
    const char *python_path;     //  directory of the pyfleet_bridge package
    const char **modules;        //  user command modules (paths or names), NULL-terminated
    const char **env;            //  extra KEY=VALUE for bridges, override the defaults; NULL-terminated
    const char **setup;          //  setup calls "COMMAND [JSON args]", NULL-terminated
    uint32_t heartbeat_ms;       //  broker heartbeat interval (1000)
    uint32_t liveness;           //  missed heartbeats before the broker is presumed gone (3)
    uint32_t beat_ms;            //  bridge beat interval (1000)
    uint32_t wedged_beats;       //  beats missed before a bridge is wedged (3)
    uint32_t startup_timeout_ms; //  bridge start to ready, setup included (30000)
    uint32_t dump_grace_ms;      //  after SIGUSR1 before SIGKILL on a deadline (200)
    uint32_t stop_grace_ms;      //  on stop: in-flight requests, then each stop step (2000)
    uint32_t max_requests;       //  recycle after this many requests (0 = never)
    uint32_t max_age_s;          //  recycle after this age (0 = never)
    uint32_t max_rss_mb;         //  recycle above this RSS (0 = never)
    uint32_t jitter_pct;         //  per-bridge jitter of the request and age limits (10)
    uint32_t max_recycling;      //  bridges recycling at once (1)
    uint32_t prespawn_pct;       //  replacement starts at this % of the request limit (80)
    uint32_t drain_cap_s;        //  longest a recycled bridge keeps its sessions (60)
    uint32_t pipeline;           //  most requests in one bridge's pipe at once (8)
    uint32_t hold_ms;            //  requests waiting behind one running this long go back (10)
    size_t max_frame;            //  largest bridge frame (64 MiB)
    const char *curve_cert;      //  CurveZMQ: this agent's certificate (FILE, FILE_secret), or NULL
    const char *broker_key;      //  ... and the broker's public key (Z85 or its certificate file)
} pf_agent_config_t;

void pf_agent_config_defaults (pf_agent_config_t *config);

//  Runs the agent until *interrupted becomes non-zero, then stops it
//  gracefully. Returns the process exit status (0 on a clean stop, 2 on a
//  bad setup call in the configuration).
int pf_agent_run (const pf_agent_config_t *config, volatile sig_atomic_t *interrupted);

//  Wakes the running agent's loop so it sees *interrupted at once (from
//  another thread, or a signal handler). One agent per process: it reaps
//  any child (waitpid -1) and is the process's child subreaper.
void pf_agent_wake (void);

#endif
