/*  pf_agent — the worker agent: one DEALER to the broker, N Python bridges.

    Spawns and supervises the bridges (all in parallel; ready means the
    bridge's ready frame arrived), runs each request the broker sends on the
    bridge the broker named, enforces the request's deadline (stack dump,
    then kill and replace), respawns dead bridges with exponential backoff,
    heartbeats with the broker and reconnects to it with backoff. */
#ifndef PF_AGENT_H_INCLUDED
#define PF_AGENT_H_INCLUDED

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *broker;          //  broker endpoint
    const char *service;         //  service this agent serves
    int bridges;                 //  number of bridges (1..1024)
    const char *python;          //  interpreter
    const char *python_path;     //  directory of the pyfleet_bridge package
    const char **modules;        //  user command modules (paths or names), NULL-terminated
    uint32_t heartbeat_ms;       //  broker heartbeat interval (1000)
    uint32_t liveness;           //  missed heartbeats before the broker is presumed gone (3)
    uint32_t beat_ms;            //  bridge beat interval (1000)
    uint32_t startup_timeout_ms; //  bridge start to ready frame (30000)
    uint32_t dump_grace_ms;      //  after SIGUSR1 before SIGKILL on a deadline (200)
    uint32_t stop_grace_ms;      //  on shutdown: in-flight requests, then bridge exit (2000)
    size_t max_frame;            //  largest bridge frame (64 MiB)
} pf_agent_config_t;

void pf_agent_config_defaults (pf_agent_config_t *config);

//  Runs the agent until *interrupted becomes non-zero, then stops it
//  gracefully. Returns the process exit status (0 on a clean stop).
int pf_agent_run (const pf_agent_config_t *config, volatile sig_atomic_t *interrupted);

#endif
