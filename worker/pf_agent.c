/*  pf_agent — bridge supervision and the agent side of PFW2.

    One poll loop watches the broker socket, a self-pipe woken by SIGCHLD, and
    each bridge's three pipes. The agent is a child subreaper, so a bridge's
    grandchildren are reaped here too; each bridge runs in its own process
    group, which is what gets killed, so a grandchild holding a pipe open
    cannot keep a dead bridge looking alive. A watchdog process (pf_watchdog)
    kills those groups if the agent itself is killed.

    Lifecycle of one slot's bridge:
      spawning -> starting -> ready <-> busy -> draining -> stopping -> dead
    starting covers the wait for the ready frame and the setup replay;
    draining is a recycled bridge whose replacement is ready: it takes only
    requests of the sessions it holds, until they end or the drain cap.

    Recycling, spawn before retire: a bridge expected to reach its request
    or age limit within two (slow) startup times, at least 300 ms, or at
    --prespawn percent of its request limit, gets a replacement started in
    a spare slot. The replacement waits ready but unlisted ("standby")
    until the old bridge hits its limit; then the two swap in one roster
    change, so capacity does not dip and no request waits for a Python
    start. When replacements cannot keep up (K = 1 and limits hit faster
    than Python starts), a bridge past its limit stops taking work while
    another fresh bridge serves, and keeps serving only when none does, so
    capacity never drops to zero. At most
    max_recycling bridges have a replacement or are draining at once; a
    stopping bridge (stdin closed, exiting) no longer counts, since its
    replacement already serves in its place. */
#define _GNU_SOURCE
#include "pf_agent.h"
#include "pf_batch.h"
#include "pf_bridge.h"
#include "pf_bridge_msg.h"
#include "pf_curve.h"
#include "pf_error.h"
#include "pf_log.h"
#include "pf_paths.h"
#include "pf_policy.h"
#include "pf_proto.h"
#include "pf_setup.h"
#include "pf_watchdog.h"
#include <czmq.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define RESPAWN_MIN_MS      100
#define RESPAWN_MAX_MS      30000
#define RECONNECT_MIN_MS    1000
#define RECONNECT_MAX_MS    32000
#define SESSION_END_TIMEOUT 10000
#define PRESPAWN_LEAD_MIN_MS 300

typedef enum {
    BRIDGE_SPAWNING, //  waiting for its (re)spawn time
    BRIDGE_STARTING, //  process running; no ready frame yet, or setup calls running
    BRIDGE_READY,
    BRIDGE_BUSY,
    BRIDGE_DRAINING,
    BRIDGE_STOPPING,
    BRIDGE_DEAD,
} bridge_state_t;

static const char *state_names[] = {"spawning", "starting", "ready", "busy",
                                    "draining", "stopping", "dead"};

typedef enum { INTERNAL_NONE, INTERNAL_SETUP, INTERNAL_SESSION_END } internal_t;

//  Requests one bridge may hold at once: running, in its pipe, waiting here.
#define JOBS_MAX 64

//  A bridge's pipe holds about this much of its usual work (slot_depth).
#define PIPE_BUDGET_US 1000

//  One broker request given to a bridge.
typedef struct {
    uint64_t request_id; //  the broker's
    uint64_t local_id;   //  on the bridge pipe
    int64_t deadline;    //  zclock_mono ms; the bridge frame carries it too
    uint8_t *frame;      //  the encoded bridge request while it waits here
    size_t frame_size;
    bool session;        //  belongs to a session: only this bridge may run it
    bool broadcast;      //  a success joins the setup replay: command and args kept
    bool releasable;     //  neither: may go back to the broker to run elsewhere
    bool answered;       //  its answer went out already (timed out or handed back)
    char command[PF_MAX_NAME + 1];
    uint8_t *args;
    size_t args_size;
} job_t;

typedef struct {
    int index;
    uint32_t generation;
    bridge_state_t state;
    int64_t state_since;
    pf_bridge_t *handle;
    pid_t pgid;       //  registered with the watchdog while non-zero
    bool in_use;      //  holds a bridge (or will): active or retiring
    bool retiring;    //  swapped out for its replacement: draining or stopping
    int replacement;  //  the slot preparing this bridge's replacement, or -1
    int standby_for;  //  this slot is the replacement being prepared for slot N, or -1
    bool due;         //  reached a limit, waiting for its replacement
    int64_t due_since;
    char due_reason[128];
    int64_t respawn_at;
    uint32_t backoff_ms;
    int64_t spawned_at;
    int64_t ready_since; //  a standby replacement: when it got ready
    bool got_ready;   //  the ready frame arrived (beats flow from then on)
    bool out_eof;     //  its output pipe closed: the exit status comes with the reap
    int64_t last_beat;
    uint64_t rss_kb;  //  from its last beat, for the broker's WORKERS view
    bool suspect;     //  beats late: not listed, gets no work
    bool rss_exempt;  //  fresh bridge above --max-rss: reported, not recycled for RSS
    pf_policy_limits_t limits;
    //  The broker requests it holds, oldest first (a ring): the first
    //  `written` are in its pipe, the oldest of them running; the rest wait
    //  here. See "Requests in flight" below.
    job_t jobs[JOBS_MAX];
    uint32_t job_first, job_count, written;
    int64_t head_since_us; //  when the oldest job could start (written, or its predecessor done)
    int64_t kill_at;       //  set once the running job's stack dump was asked for
    uint64_t release_for;  //  local id of the running job SIGUSR2 was sent behind
    //  The agent's own call (setup replay, session_end).
    internal_t internal;
    uint64_t internal_id;
    int64_t internal_deadline;
    size_t setup_next;
    uint64_t requests;
    uint64_t service_us; //  moving average of its time per request
    bool long_requests;  //  its requests average --hold or more (until under half of it):
                         //  one at a time, else a window and a pipelined pipe
    zhashx_t *sessions;  //  session ids it has served
    zlist_t *ends;       //  session ids to end when idle
    int64_t drain_until;
    int64_t stop_at;
    int stop_step;
} slot_t;

typedef struct {
    const pf_agent_config_t *config;
    char agent_id[PF_MAX_NAME + 1];
    char host[PF_MAX_NAME + 1];
    zsock_t *dealer;
    pf_outbox_t *outbox; //  what goes to the broker this loop turn, one BATCH
    int64_t broker_expiry;
    int64_t last_sent;
    int64_t reconnect_at; //  0 while connected
    uint32_t reconnect_ms;
    bool roster_changed;  //  the serving bridges changed since the last HEARTBEAT
    int slot_count;       //  bridges + max_recycling
    slot_t *slots;
    uint64_t next_local_id;
    const char **bridge_args;
    const char **bridge_env;
    char beat_env[64];
    pf_setup_t *setup;
    pf_policy_t policy;
    int watchdog_fd;
    pid_t watchdog_pid;
    int last_capacity;
    uint64_t recycles;
    int64_t startup_ms; //  spawn to ready: the slowest recent one, decaying; 0 = none yet
    bool stopping;
    bool drained; //  the broker said DISCONNECT "drain": leave
    size_t pipe_bytes; //  of each bridge's request and reply pipes (pf_bridge_pipe_bytes)
    zcert_t *cert;     //  CurveZMQ: ours, with the broker's key below; NULL = off
    char broker_key[PF_CURVE_KEY_LEN + 1];
} agent_t;

//  SIGCHLD (and pf_agent_wake) write here to wake the loop. Made once and
//  kept for the life of the process: a SIGCHLD after the agent stopped
//  (pyfleet-broker goes on without its local worker) must not write into a
//  descriptor number since reused.
static int sigchld_pipe[2] = {-1, -1};

static void on_sigchld (int sig)
{
    (void) sig;
    int saved = errno;
    if (write (sigchld_pipe[1], "c", 1) < 0) {
        //  Pipe full: a wake-up is already pending.
    }
    errno = saved;
}

void pf_agent_wake (void)
{
    if (sigchld_pipe[1] >= 0)
        on_sigchld (SIGCHLD);
}

void pf_agent_config_defaults (pf_agent_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->broker = "tcp://127.0.0.1:5555";
    config->service = "default";
    config->bridges = 2;
    config->python = PF_DEFAULT_PYTHON;
    config->python_path = pf_default_python_path ();
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->beat_ms = 1000;
    config->wedged_beats = 3;
    config->startup_timeout_ms = 30000;
    config->dump_grace_ms = 200;
    config->stop_grace_ms = 2000;
    config->jitter_pct = 10;
    config->max_recycling = 1;
    config->prespawn_pct = 80;
    config->drain_cap_s = 60;
    config->pipeline = 8;
    config->hold_ms = 10;
    config->max_frame = PF_DEFAULT_MAX_BODY;
}

//  --------------------------------------------------------------------------
//  Broker side

static void send_msg (agent_t *self, pf_msg_t *msg)
{
    if (!self->dealer)
        return;
    //  The DEALER queues to a connected broker; never wait on a gone one.
    //  Small messages wait in the outbox until the loop is about to poll.
    pf_outbox_send (self->outbox, self->dealer, NULL, msg, ZMQ_DONTWAIT);
    self->last_sent = zclock_mono ();
}

//  Sends what the outbox holds (NULL dealer: drops it, the connection is
//  going).
static void broker_flush (agent_t *self)
{
    pf_outbox_flush (self->outbox, self->dealer);
}

static bool slot_has_sessions (slot_t *slot)
{
    return slot->sessions && zhashx_size (slot->sessions) > 0;
}

//  The state a bridge is listed under in HEARTBEAT, or NULL if it does not
//  serve. A draining bridge is listed only while it holds sessions, so the
//  broker sends it only those sessions' requests.
static bool slot_fresh (slot_t *slot)
{
    return slot->handle && !slot->suspect && !slot->due && !slot->retiring
        && slot->standby_for < 0 && (slot->state == BRIDGE_READY || slot->state == BRIDGE_BUSY);
}

static const char *slot_listed_as (agent_t *self, slot_t *slot, int64_t now)
{
    //  A standby replacement is not listed until it swaps in.
    if (!slot->handle || slot->suspect || self->stopping || slot->standby_for >= 0)
        return NULL;
    if (slot->state == BRIDGE_READY || slot->state == BRIDGE_BUSY) {
        //  A bridge past its limit takes work only while no fresh bridge
        //  can: the limit holds under load, and capacity never drops to 0.
        if (slot->due || slot->retiring)
            for (int i = 0; i < self->slot_count; i++)
                if (slot_fresh (&self->slots[i]))
                    return NULL;
        return state_names[slot->state];
    }
    if (slot->state == BRIDGE_DRAINING && slot_has_sessions (slot) && now < slot->drain_until)
        return "draining";
    return NULL;
}

//  The serving bridges as msgpack [[index, generation, state, {pid, rss_kb}], ...].
static zframe_t *roster_frame (agent_t *self, int *ready_p)
{
    int64_t now = zclock_mono ();
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    uint32_t serving = 0;
    int ready = 0;
    for (int i = 0; i < self->slot_count; i++) {
        const char *state = slot_listed_as (self, &self->slots[i], now);
        serving += state != NULL;
        ready += state && self->slots[i].state != BRIDGE_DRAINING;
    }
    msgpack_pack_array (&packer, serving);
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        const char *state = slot_listed_as (self, slot, now);
        if (!state)
            continue;
        msgpack_pack_array (&packer, 4);
        msgpack_pack_uint32 (&packer, (uint32_t) slot->index);
        msgpack_pack_uint32 (&packer, slot->generation);
        msgpack_pack_str_with_body (&packer, state, strlen (state));
        msgpack_pack_map (&packer, 3);
        msgpack_pack_str_with_body (&packer, "pid", 3);
        msgpack_pack_uint32 (&packer, (uint32_t) pf_bridge_pid (slot->handle));
        msgpack_pack_str_with_body (&packer, "rss_kb", 6);
        msgpack_pack_uint64 (&packer, slot->rss_kb);
        //  Requests the broker may send it at once: one while they are long.
        msgpack_pack_str_with_body (&packer, "window", 6);
        msgpack_pack_uint32 (&packer, slot->long_requests ? 1 : JOBS_MAX);
    }
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    *ready_p = ready;
    return frame;
}

static void send_heartbeat (agent_t *self)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_HEARTBEAT;
    int ready;
    msg.bridges = roster_frame (self, &ready);
    if (ready != self->last_capacity) {
        //  Tests and operators watch this line: capacity never silently hits 0.
        pf_log (ready == 0 ? PF_LOG_WARN : PF_LOG_INFO, "capacity: %d of %d bridges serving",
                ready, self->config->bridges);
        self->last_capacity = ready;
    }
    send_msg (self, &msg);
    pf_msg_reset (&msg);
    self->roster_changed = false;
}

//  Every live session as msgpack [[session, bridge, generation], ...].
static zframe_t *sessions_frame (agent_t *self)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    size_t count = 0;
    for (int i = 0; i < self->slot_count; i++)
        if (self->slots[i].handle && self->slots[i].sessions)
            count += zhashx_size (self->slots[i].sessions);
    msgpack_pack_array (&packer, count);
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        if (!slot->handle || !slot->sessions)
            continue;
        for (void *item = zhashx_first (slot->sessions); item; item = zhashx_next (slot->sessions)) {
            const char *session = (const char *) zhashx_cursor (slot->sessions);
            msgpack_pack_array (&packer, 3);
            msgpack_pack_str_with_body (&packer, session, strlen (session));
            msgpack_pack_uint32 (&packer, (uint32_t) slot->index);
            msgpack_pack_uint32 (&packer, slot->generation);
        }
    }
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return frame;
}

static void send_ready (agent_t *self)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_READY;
    snprintf (msg.agent_id, sizeof msg.agent_id, "%s", self->agent_id);
    snprintf (msg.host, sizeof msg.host, "%s", self->host);
    msg.pid = (uint32_t) getpid ();
    snprintf (msg.service, sizeof msg.service, "%s", self->config->service);
    msg.capacity = (uint32_t) self->slot_count;
    msg.sessions = sessions_frame (self);
    send_msg (self, &msg);
    pf_msg_reset (&msg);
    send_heartbeat (self);
}

static void send_session_lost (agent_t *self, slot_t *slot, const char *session)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_SESSION_LOST;
    snprintf (msg.session, sizeof msg.session, "%s", session);
    msg.bridge = (uint32_t) slot->index;
    msg.generation = slot->generation;
    send_msg (self, &msg);
    pf_msg_reset (&msg);
    pf_info ("bridge %d gen %u: session '%s' lost", slot->index, slot->generation, session);
}

static void send_reply (agent_t *self, slot_t *slot, uint64_t request_id, pf_bridge_msg_t *reply)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.request_id = request_id;
    msg.bridge = (uint32_t) slot->index;
    msg.generation = slot->generation;
    if (reply->ok) {
        msg.command = PF_W_REPLY;
        msg.body = zframe_new (reply->result, reply->result_size);
    }
    else {
        msg.command = PF_W_ERROR;
        msg.code = (uint16_t) reply->code;
        msg.message = strndup (reply->error_message ? reply->error_message : "",
                               PF_MAX_MESSAGE);
        msg.detail = zframe_new (reply->detail, reply->detail_size);
    }
    send_msg (self, &msg);
    pf_msg_reset (&msg);
}

static void send_error (agent_t *self, uint64_t request_id, slot_t *slot, int code,
                        const char *message)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_ERROR;
    msg.request_id = request_id;
    msg.bridge = slot ? (uint32_t) slot->index : PF_BRIDGE_ANY;
    msg.generation = slot ? slot->generation : 0;
    msg.code = (uint16_t) code;
    msg.message = strdup (message);
    pf_debug ("request %llu: %s (%s)", (unsigned long long) request_id, pf_error_name (code),
              message);
    send_msg (self, &msg);
    pf_msg_reset (&msg);
}

static void broker_connect (agent_t *self, int64_t now)
{
    pf_outbox_flush (self->outbox, NULL);
    zsock_destroy (&self->dealer);
    self->dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
    if (self->cert) pf_curve_client_apply (self->dealer, self->cert, self->broker_key);
    if (zsock_connect (self->dealer, "%s", self->config->broker) < 0) {
        pf_error ("cannot connect to %s: %s", self->config->broker, zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->dealer);
        self->reconnect_at = now + self->reconnect_ms;
        return;
    }
    self->reconnect_at = 0;
    self->broker_expiry = now + (int64_t) self->config->heartbeat_ms * self->config->liveness;
    send_ready (self);
}

//  The broker is gone or told us to start over: a new socket after a
//  backoff, so a restarted broker sees a fresh peer and a READY.
static void broker_lost (agent_t *self, const char *why, int64_t now)
{
    //  A refused CurveZMQ handshake looks the same from here: say what to check.
    pf_warn ("broker connection lost (%s)%s%s%s; reconnecting in %u ms", why,
             self->cert ? " (CurveZMQ: is key " : "", self->cert ? zcert_public_txt (self->cert) : "",
             self->cert ? " admitted by the broker, and --broker-key its key?)" : "",
             self->reconnect_ms);
    pf_outbox_flush (self->outbox, NULL);
    zsock_destroy (&self->dealer);
    self->reconnect_at = now + self->reconnect_ms;
    self->reconnect_ms = self->reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
                                                                   : self->reconnect_ms * 2;
}

//  --------------------------------------------------------------------------
//  Bridges

static void slot_set_state (slot_t *slot, bridge_state_t state, const char *reason, int64_t now)
{
    //  ready <-> busy happens on every request: logged only at debug level.
    bool routine = (slot->state == BRIDGE_READY && state == BRIDGE_BUSY)
                || (slot->state == BRIDGE_BUSY && state == BRIDGE_READY);
    pf_log (routine ? PF_LOG_DEBUG : PF_LOG_INFO, "bridge %d gen %u: %s -> %s after %lld ms (%s)",
            slot->index, slot->generation, state_names[slot->state], state_names[state],
            (long long) (now - slot->state_since), reason);
    slot->state = state;
    slot->state_since = now;
}

static void on_stderr_line (void *arg, pf_bridge_t *bridge, const char *line)
{
    (void) arg;
    pf_info ("bridge %d pid %d: %s", pf_bridge_index (bridge), (int) pf_bridge_pid (bridge), line);
}

static double random01 (void)
{
    return (double) (random () % 1000000) / 1000000.0;
}

static void slot_spawn (agent_t *self, slot_t *slot, int64_t now)
{
    pf_bridge_options_t options = {
        .python = self->config->python,
        .python_path = self->config->python_path,
        .args = self->bridge_args,
        .env = self->bridge_env,
        .max_frame = self->config->max_frame,
        .index = slot->index,
        .pipe_bytes = self->pipe_bytes,
    };
    char err[512];
    slot->generation++;
    slot->got_ready = false;
    slot->out_eof = false;
    slot->suspect = false;
    slot->rss_exempt = false;
    slot->due = false;
    slot->due_since = 0;
    slot->service_us = 0;
    slot->long_requests = false;
    slot->requests = 0;
    slot->setup_next = 0;
    slot->internal = INTERNAL_NONE;
    slot->spawned_at = now;
    pf_policy_limits (&self->policy, random01 (), random01 (), &slot->limits);
    slot->handle = pf_bridge_spawn (&options, err, sizeof err);
    if (!slot->handle) {
        pf_error ("bridge %d: spawn failed: %s", slot->index, err);
        slot->respawn_at = now + slot->backoff_ms;
        slot->backoff_ms = slot->backoff_ms * 2 > RESPAWN_MAX_MS ? RESPAWN_MAX_MS
                                                                 : slot->backoff_ms * 2;
        slot_set_state (slot, BRIDGE_SPAWNING, "spawn failed", now);
        return;
    }
    slot->pgid = pf_bridge_pid (slot->handle);
    pf_watchdog_add (self->watchdog_fd, slot->pgid);
    slot_set_state (slot, BRIDGE_STARTING, "spawned", now);
    pf_info ("bridge %d gen %u: spawned pid %d", slot->index, slot->generation,
             (int) slot->pgid);
}

//  --------------------------------------------------------------------------
//  Requests in flight
//
//  The broker may give a bridge several requests at once (its --window).
//  The agent writes at most --pipeline of them into the bridge's pipe, so
//  the bridge reads its next request the moment it answers one, and keeps
//  the rest here. The bridge runs them in order: the oldest job written is
//  the one running, a later one has not started (and the bridge answers
//  TIMEOUT without starting one it reads after its deadline). So every
//  failure stays exact: a crash fails the running request and hands the
//  others back to the broker as not started (BUSY), a job waiting past its
//  deadline is answered TIMEOUT at once, and a job waiting here behind one
//  that has run --hold ms goes back to the broker, so a long request holds
//  at most the --pipeline - 1 requests already in the pipe.

static job_t *slot_job (slot_t *slot, uint32_t position)
{
    return &slot->jobs[(slot->job_first + position) % JOBS_MAX];
}

static void job_clear (job_t *job)
{
    free (job->frame);
    free (job->args);
    memset (job, 0, sizeof *job);
}

//  The job the bridge runs (or is about to read), or NULL.
static job_t *slot_running (slot_t *slot)
{
    return slot->written ? slot_job (slot, 0) : NULL;
}

//  How long the running job may run before the jobs waiting here go back:
//  four times the bridge's average, within --hold .. 4 x --hold (a request
//  of about --hold must not send the others on a round trip every time).
static int64_t slot_hold_us (agent_t *self, slot_t *slot)
{
    int64_t hold = (int64_t) self->config->hold_ms * 1000;
    int64_t usual = 4 * (int64_t) slot->service_us;
    return usual < hold ? hold : usual > 4 * hold ? 4 * hold : usual;
}

//  How many jobs the bridge's pipe may hold: about PIPE_BUDGET_US of its
//  usual work (at least 2, so it never waits for us between two requests;
//  at most --pipeline); one at a time while its requests are long. A
//  request in the pipe cannot be taken back, so this bounds what waits
//  behind an unexpectedly long request.
static uint32_t slot_depth (agent_t *self, slot_t *slot)
{
    if (slot->long_requests)
        return 1;
    uint64_t depth = PIPE_BUDGET_US / (slot->service_us ? slot->service_us : 1);
    return depth < 2 ? (self->config->pipeline < 2 ? self->config->pipeline : 2)
         : depth > self->config->pipeline ? self->config->pipeline
                                          : (uint32_t) depth;
}

//  The oldest job is done: the next one in the pipe starts now (now_us).
static void slot_pop_job (slot_t *slot, int64_t now_us)
{
    job_clear (slot_job (slot, 0));
    slot->job_first = (slot->job_first + 1) % JOBS_MAX;
    slot->job_count--;
    slot->written--;
    slot->kill_at = 0;
    slot->head_since_us = now_us;
}

//  Removes a job that waits here (never written); later ones move up.
static void slot_remove_job (slot_t *slot, uint32_t position)
{
    job_clear (slot_job (slot, position));
    for (uint32_t i = position; i + 1 < slot->job_count; i++)
        *slot_job (slot, i) = *slot_job (slot, i + 1);
    memset (slot_job (slot, slot->job_count - 1), 0, sizeof (job_t));
    slot->job_count--;
}

//  Answers every job of a bridge that is gone or stopping: the running one
//  with code (it may have run), the others with waiting_code (they never
//  started), and forgets them.
static void slot_fail_jobs (agent_t *self, slot_t *slot, int code, const char *reason,
                            int waiting_code, const char *waiting_reason)
{
    for (uint32_t i = 0; i < slot->job_count; i++) {
        job_t *job = slot_job (slot, i);
        if (!job->answered) {
            bool running = i == 0 && slot->written > 0;
            send_error (self, job->request_id, slot, running ? code : waiting_code,
                        running ? reason : waiting_reason);
        }
        job_clear (job);
    }
    slot->job_first = slot->job_count = slot->written = 0;
    slot->kill_at = 0;
}

//  A bridge is gone (exit, crash, protocol fault, kill). Answers its
//  request, reports its sessions lost, frees the process and its group, and
//  schedules the replacement: at once if it had been serving, with doubling
//  backoff if it died before it was ready (a broken environment must not
//  spin). A retiring bridge is not replaced: its replacement exists.
static void slot_lost (agent_t *self, slot_t *slot, int code, const char *reason, int64_t now)
{
    slot_fail_jobs (self, slot, code, reason, PF_BUSY,
                    "bridge lost before it could start; not started");
    slot->internal = INTERNAL_NONE;
    if (slot->sessions) {
        if (!self->stopping)
            for (void *item = zhashx_first (slot->sessions); item;
                 item = zhashx_next (slot->sessions))
                send_session_lost (self, slot, (const char *) zhashx_cursor (slot->sessions));
        zhashx_purge (slot->sessions);
    }
    char *session;
    while ((session = (char *) zlist_pop (slot->ends)))
        free (session);
    bool was_ready = slot->got_ready;
    if (slot->handle) {
        //  Whatever it wrote last (a traceback, a stack dump) belongs in the log.
        pf_bridge_drain_stderr (slot->handle, on_stderr_line, self);
        pf_bridge_destroy (&slot->handle);
    }
    if (slot->pgid > 0) {
        //  What the bridge forked is still in its group: it goes too. The
        //  pgid cannot be reused while any member lives, so this is safe.
        kill (-slot->pgid, SIGKILL);
        pf_watchdog_remove (self->watchdog_fd, slot->pgid);
        slot->pgid = 0;
    }
    self->roster_changed = true;
    slot->suspect = false;
    slot_set_state (slot, BRIDGE_DEAD, reason, now);
    if (self->stopping || slot->retiring) {
        slot->in_use = false;
        slot->retiring = false;
        slot->replacement = -1;
        return;
    }
    if (slot->replacement >= 0) {
        //  Its replacement was already on the way: it takes this bridge's
        //  place now, sooner than a start from scratch.
        slot_t *spare = &self->slots[slot->replacement];
        spare->standby_for = -1;
        slot->replacement = -1;
        slot->in_use = false;
        pf_info ("bridge %d: its replacement in slot %d takes its place", slot->index,
                 spare->index);
        return;
    }
    if (was_ready)
        slot->backoff_ms = RESPAWN_MIN_MS;
    slot->respawn_at = now + (was_ready ? 0 : slot->backoff_ms);
    char why[64];
    snprintf (why, sizeof why, "respawn in %lld ms", (long long) (slot->respawn_at - now));
    if (!was_ready)
        slot->backoff_ms = slot->backoff_ms * 2 > RESPAWN_MAX_MS ? RESPAWN_MAX_MS
                                                                 : slot->backoff_ms * 2;
    slot_set_state (slot, BRIDGE_SPAWNING, why, now);
}

static void slot_kill (agent_t *self, slot_t *slot, int code, const char *reason, int64_t now)
{
    if (slot->handle)
        pf_bridge_signal_group (slot->handle, SIGKILL);
    slot_lost (self, slot, code, reason, now);
}

static void describe_status (int status, char *text, size_t size)
{
    if (WIFEXITED (status))
        snprintf (text, size, "bridge exited with status %d", WEXITSTATUS (status));
    else if (WIFSIGNALED (status))
        snprintf (text, size, "bridge killed by signal %d (%s)", WTERMSIG (status),
                  strsignal (WTERMSIG (status)));
    else
        snprintf (text, size, "bridge ended (wait status %d)", status);
}

//  Sends one of the agent's own calls to the bridge.
static int slot_send_internal (agent_t *self, slot_t *slot, internal_t kind, const char *command,
                               const void *args, size_t args_size, int64_t deadline)
{
    uint64_t local_id = ++self->next_local_id;
    size_t size;
    uint8_t *frame =
        pf_bridge_msg_request (local_id, command, args, args_size, NULL, 0, false, &size);
    int rc = frame ? pf_bridge_send (slot->handle, frame, size) : -1;
    free (frame);
    if (rc != 0)
        return -1;
    slot->internal = kind;
    slot->internal_id = local_id;
    slot->internal_deadline = deadline;
    return 0;
}

static void slot_after_work (agent_t *self, slot_t *slot, int64_t now);
static void slot_swap (agent_t *self, slot_t *old, int64_t now);

//  Setup replay: the next setup call, or ready when none is left.
static void slot_setup_next (agent_t *self, slot_t *slot, int64_t now)
{
    const uint8_t *args;
    size_t args_size;
    const char *command = pf_setup_get (self->setup, slot->setup_next, &args, &args_size);
    if (command) {
        int64_t deadline = slot->state_since + self->config->startup_timeout_ms;
        if (slot_send_internal (self, slot, INTERNAL_SETUP, command, args, args_size, deadline)
            != 0)
            slot_kill (self, slot, PF_BRIDGE_CRASHED, "setup call could not be sent", now);
        return;
    }
    char reason[64];
    snprintf (reason, sizeof reason, "ready frame%s",
              pf_setup_count (self->setup) ? ", setup replayed" : "");
    slot_set_state (slot, BRIDGE_READY, reason, now);
    slot->backoff_ms = RESPAWN_MIN_MS;
    self->roster_changed = true;
    long rss_kb = pf_bridge_rss_kb (slot->handle);
    if (slot->limits.max_rss_kb && rss_kb > 0 && (uint64_t) rss_kb > slot->limits.max_rss_kb) {
        //  Recycling it would only start another one just as big: a loop.
        slot->rss_exempt = true;
        pf_error ("bridge %d gen %u: RSS %ld KiB at start is already above --max-rss %llu KiB; "
                  "NOT recycling it for memory (raise --max-rss)",
                  slot->index, slot->generation, rss_kb,
                  (unsigned long long) slot->limits.max_rss_kb);
    }
    //  A slow start counts at once, fast ones bring the estimate down
    //  slowly: a late replacement is what costs (a wait at the limit).
    int64_t took = now - slot->spawned_at;
    self->startup_ms = took > self->startup_ms ? took : (7 * self->startup_ms + took) / 8;
    if (slot->standby_for >= 0) {
        slot_t *old = &self->slots[slot->standby_for];
        pf_info ("bridge %d gen %u: standby to replace bridge %d (%llu requests done)",
                 slot->index, slot->generation, old->index, (unsigned long long) old->requests);
        slot->ready_since = now;
        if (old->due)
            slot_swap (self, old, now);
    }
}

//  Starts a stop: stdin EOF now, SIGTERM and SIGKILL after a grace each.
static void slot_stop (agent_t *self, slot_t *slot, const char *reason, int64_t now)
{
    if (slot->sessions)
        for (void *item = zhashx_first (slot->sessions); item; item = zhashx_next (slot->sessions))
            send_session_lost (self, slot, (const char *) zhashx_cursor (slot->sessions));
    zhashx_purge (slot->sessions);
    pf_bridge_close_stdin (slot->handle);
    slot->stop_at = now + self->config->stop_grace_ms;
    slot->stop_step = 0;
    self->roster_changed = true;
    slot_set_state (slot, BRIDGE_STOPPING, reason, now);
}

//  Writes waiting jobs into the bridge's pipe, up to slot_depth (a job in
//  the pipe cannot be taken back; one waiting here can). Nothing goes in
//  while an agent call runs or a session end waits: those run when the
//  pipe is empty, so a bridge that is never idle still ends its sessions.
static void slot_pump (agent_t *self, slot_t *slot, int64_t now)
{
    if (!slot->handle || slot->internal != INTERNAL_NONE || zlist_size (slot->ends))
        return;
    uint32_t depth = slot_depth (self, slot);
    while (slot->written < slot->job_count && slot->written < depth) {
        job_t *job = slot_job (slot, slot->written);
        if (job->answered) {
            slot_remove_job (slot, slot->written);
            continue;
        }
        //  Written by flush_bridges before the loop waits again, together
        //  with the others queued meanwhile.
        if (pf_bridge_queue (slot->handle, job->frame, job->frame_size) != 0) {
            slot_kill (self, slot, PF_BRIDGE_CRASHED, "bridge stdin broken", now);
            return;
        }
        free (job->frame);
        job->frame = NULL;
        if (slot->written++ == 0)
            slot->head_since_us = zclock_usecs ();
        if (slot->state == BRIDGE_READY)
            slot_set_state (slot, BRIDGE_BUSY, job->command, now);
    }
}

//  The bridge finished a piece of work: feed it what waits (a session end
//  once its pipe is empty, else the next requests), or finish draining.
static void slot_after_work (agent_t *self, slot_t *slot, int64_t now)
{
    if (!slot->handle || slot->internal != INTERNAL_NONE)
        return;
    if (slot->written == 0 && (slot->state == BRIDGE_READY || slot->state == BRIDGE_DRAINING)
        && zlist_size (slot->ends)) {
        char *session = (char *) zlist_pop (slot->ends);
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        msgpack_packer packer;
        msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&packer, 1);
        msgpack_pack_str_with_body (&packer, "session", 7);
        msgpack_pack_str_with_body (&packer, session, strlen (session));
        int rc = slot_send_internal (self, slot, INTERNAL_SESSION_END, "session_end", buffer.data,
                                     buffer.size, now + SESSION_END_TIMEOUT);
        msgpack_sbuffer_destroy (&buffer);
        pf_debug ("bridge %d gen %u: ending session '%s'", slot->index, slot->generation, session);
        free (session);
        if (rc != 0)
            slot_kill (self, slot, PF_BRIDGE_CRASHED, "bridge stdin broken", now);
        else if (slot->state == BRIDGE_READY)
            slot_set_state (slot, BRIDGE_BUSY, "session_end", now);
        return;
    }
    slot_pump (self, slot, now);
    if (slot->handle && slot->job_count == 0 && slot->state == BRIDGE_DRAINING
        && (!slot_has_sessions (slot) || now >= slot->drain_until))
        slot_stop (self, slot,
                   slot_has_sessions (slot) ? "drain cap passed; sessions lost" : "drained", now);
}

//  Marks a bridge due for recycling and starts its replacement
//  (spawn before retire).
static void slot_make_due (agent_t *self, slot_t *slot, int64_t now)
{
    slot->due = true;
    slot->due_since = now;
    self->roster_changed = true;
    pf_info ("bridge %d gen %u: due for recycling: %s", slot->index, slot->generation,
             slot->due_reason);
    slot_swap (self, slot, now);
}

//  Recycling policy, checked on beats and after each request.
static void slot_check_due (agent_t *self, slot_t *slot, int64_t now)
{
    if (slot->due || slot->retiring || !slot->in_use || slot->standby_for >= 0 || self->stopping
        || (slot->state != BRIDGE_READY && slot->state != BRIDGE_BUSY))
        return;
    pf_policy_limits_t limits = slot->limits;
    if (slot->rss_exempt)
        limits.max_rss_kb = 0;
    long rss_kb = limits.max_rss_kb ? pf_bridge_rss_kb (slot->handle) : -1;
    if (pf_policy_due (&limits, slot->requests, (uint64_t) (now - slot->spawned_at), rss_kb,
                       slot->due_reason, sizeof slot->due_reason))
        slot_make_due (self, slot, now);
}

//  An operator asked (RECYCLE): one bridge, or every serving bridge.
static void handle_recycle (agent_t *self, pf_msg_t *msg, int64_t now)
{
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        bool chosen = msg->bridge == PF_BRIDGE_ANY || (uint32_t) slot->index == msg->bridge;
        if (!chosen || slot->due || slot->retiring || !slot->in_use || slot->standby_for >= 0
            || (slot->state != BRIDGE_READY && slot->state != BRIDGE_BUSY))
            continue;
        snprintf (slot->due_reason, sizeof slot->due_reason, "operator asked");
        slot_make_due (self, slot, now);
    }
}

//  A standby replacement that is ready, preferably the one started for
//  this bridge; any will do, they are all alike.
static slot_t *standby_ready (agent_t *self, slot_t *old)
{
    slot_t *found = NULL;
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *spare = &self->slots[i];
        if (spare->standby_for >= 0 && spare->handle && spare->state == BRIDGE_READY
            && !spare->suspect && (!found || spare->standby_for == old->index))
            found = spare;
    }
    return found;
}

//  Spawn before retire: a bridge at its limit and a ready replacement swap
//  in one roster change; the old bridge drains (only its sessions) and stops.
static void slot_swap (agent_t *self, slot_t *old, int64_t now)
{
    if (!old->due || old->retiring || !old->handle
        || (old->state != BRIDGE_READY && old->state != BRIDGE_BUSY))
        return;
    slot_t *spare = standby_ready (self, old);
    if (!spare)
        return;
    if (spare->standby_for != old->index) {
        //  The bridge it was started for is not due yet: it gets the one
        //  started for this bridge, if any, or another later.
        slot_t *other = &self->slots[spare->standby_for];
        other->replacement = old->replacement;
        if (old->replacement >= 0)
            self->slots[old->replacement].standby_for = other->index;
    }
    spare->standby_for = -1;
    old->replacement = -1;
    old->retiring = true;
    old->drain_until = now + (int64_t) self->config->drain_cap_s * 1000;
    self->recycles++;
    self->roster_changed = true;
    //  One line per recycle; "waited" is how long the old bridge was past
    //  its limit before a replacement was ready (0: ready in advance).
    pf_info ("bridge %d gen %u: recycling (%s) after %llu requests; replacement bridge %d gen %u "
             "ready %lld ms before, waited %lld ms (recycle #%llu)",
             old->index, old->generation, old->due_reason, (unsigned long long) old->requests,
             spare->index, spare->generation,
             (long long) (spare->ready_since <= old->due_since ? old->due_since - spare->ready_since
                                                                : 0),
             (long long) (now - old->due_since), (unsigned long long) self->recycles);
    char why[192];
    snprintf (why, sizeof why, "recycled (%s); bridge %d gen %u serves in its place",
              old->due_reason, spare->index, spare->generation);
    slot_set_state (old, BRIDGE_DRAINING, why, now);
    slot_after_work (self, old, now);
}

//  Bridges with a replacement on the way or draining: at most max_recycling.
static int recycling_count (agent_t *self)
{
    int count = 0;
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        count += slot->in_use && (slot->replacement >= 0 || slot->state == BRIDGE_DRAINING);
    }
    return count;
}

static bool slot_near_limit (agent_t *self, slot_t *slot, int64_t now)
{
    //  Twice the recent slow startup, and never under PRESPAWN_LEAD_MIN_MS:
    //  starts vary threefold on a loaded host (we measured 40 to 250 ms on
    //  2 cores), a late replacement makes requests wait, and an idle
    //  standby kept a little longer costs only its memory.
    int64_t lead = 2 * self->startup_ms;
    uint64_t lead_ms = (uint64_t) (lead > PRESPAWN_LEAD_MIN_MS ? lead : PRESPAWN_LEAD_MIN_MS);
    return pf_policy_prepare (&slot->limits, slot->requests, (uint64_t) (now - slot->spawned_at),
                              slot->service_us, lead_ms, self->config->prespawn_pct);
}

//  Starts replacements: first for bridges past their limit, then for those
//  near it, at most max_recycling at once.
static void recycle_schedule (agent_t *self, int64_t now)
{
    if (self->stopping)
        return;
    int recycling = recycling_count (self);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < self->slot_count; i++) {
            if (recycling >= (int) self->config->max_recycling)
                return;
            slot_t *old = &self->slots[i];
            if (!old->in_use || !old->handle || old->retiring || old->replacement >= 0
                || old->standby_for >= 0
                || (old->state != BRIDGE_READY && old->state != BRIDGE_BUSY))
                continue;
            if (pass == 0 ? !old->due : old->due || !slot_near_limit (self, old, now))
                continue;
            slot_t *spare = NULL;
            for (int k = 0; k < self->slot_count && !spare; k++)
                if (!self->slots[k].in_use)
                    spare = &self->slots[k];
            if (!spare)
                return;
            old->replacement = spare->index;
            spare->in_use = true;
            spare->retiring = false;
            spare->replacement = -1;
            spare->standby_for = old->index;
            spare->backoff_ms = RESPAWN_MIN_MS;
            char why[64];
            snprintf (why, sizeof why, "replacement for bridge %d", old->index);
            slot_set_state (spare, BRIDGE_SPAWNING, why, now);
            recycling++;
            pf_info ("bridge %d gen %u: replacement starts in slot %d (%s; %llu requests done)",
                     old->index, old->generation, spare->index,
                     old->due ? old->due_reason : "near its limit",
                     (unsigned long long) old->requests);
            slot_spawn (self, spare, now);
        }
}

//  A standby replacement is not listed, so a broadcast never reached it,
//  and it replayed an older setup list: it would swap in without the new
//  state. It is replaced by a fresh one that replays the whole list once,
//  like any new bridge (running the calls again on it could double a call
//  that is not idempotent).
static void restart_standbys (agent_t *self, int64_t now)
{
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *spare = &self->slots[i];
        if (spare->standby_for >= 0 && spare->handle && spare->state != BRIDGE_STOPPING)
            slot_stop (self, spare, "setup list changed; a fresh standby replays it", now);
    }
}

static void slot_handle_reply (agent_t *self, slot_t *slot, pf_bridge_msg_t *msg, int64_t now)
{
    if (slot->internal != INTERNAL_NONE && msg->id == slot->internal_id) {
        internal_t kind = slot->internal;
        slot->internal = INTERNAL_NONE;
        if (slot->state == BRIDGE_STOPPING)
            return; //  a standby restarted mid-replay: nothing more to send
        if (kind == INTERNAL_SETUP) {
            const uint8_t *args;
            size_t args_size;
            const char *command = pf_setup_get (self->setup, slot->setup_next, &args, &args_size);
            if (!msg->ok) {
                char reason[512];
                snprintf (reason, sizeof reason, "setup call '%s' failed: %s: %s",
                          command ? command : "?", pf_error_name (msg->code),
                          msg->error_message ? msg->error_message : "");
                pf_error ("bridge %d gen %u: %s", slot->index, slot->generation, reason);
                slot_kill (self, slot, PF_BRIDGE_CRASHED, reason, now);
                return;
            }
            pf_info ("bridge %d gen %u: setup call '%s' done", slot->index, slot->generation,
                     command ? command : "?");
            slot->setup_next++;
            slot_setup_next (self, slot, now);
            return;
        }
        if (!msg->ok)
            pf_warn ("bridge %d gen %u: session_end failed: %s", slot->index, slot->generation,
                     msg->error_message ? msg->error_message : "");
        if (slot->state == BRIDGE_BUSY)
            slot_set_state (slot, BRIDGE_READY, "session ended", now);
        slot_after_work (self, slot, now);
        return;
    }
    uint32_t position = 0;
    while (position < slot->written && slot_job (slot, position)->local_id != msg->id)
        position++;
    if (position == slot->written) {
        pf_warn ("bridge %d: dropped a late reply (id %llu)", slot->index,
                 (unsigned long long) msg->id);
        return;
    }
    job_t *job = slot_job (slot, position);
    if (!msg->ok && msg->code == PF_BUSY) {
        //  Released (SIGUSR2): it waited in the pipe and never started.
        if (!job->answered)
            send_error (self, job->request_id, slot, PF_BUSY,
                        "waited behind a long request; released, not started");
        if (position == 0)
            slot_pop_job (slot, zclock_usecs ());
        else {
            slot_remove_job (slot, position);
            slot->written--;
        }
        if (slot->state == BRIDGE_BUSY && slot->written == 0)
            slot_set_state (slot, BRIDGE_READY, "released", now);
        slot_after_work (self, slot, now);
        return;
    }
    if (position != 0) {
        //  Only a release may overtake the running request.
        slot_kill (self, slot, PF_BRIDGE_CRASHED, "bad bridge output: reply out of order", now);
        return;
    }
    //  TIMEOUT from the bridge itself: read after its deadline, not started.
    bool started = msg->ok || msg->code != PF_TIMEOUT;
    if (!job->answered)
        send_reply (self, slot, job->request_id, msg);
    if (job->broadcast && msg->ok) {
        if (pf_setup_add (self->setup, job->command, job->args, job->args_size) == 0) {
            pf_info ("broadcast '%s' succeeded: added to the setup replay (%zu calls)",
                     job->command, pf_setup_count (self->setup));
            restart_standbys (self, now);
        }
        else
            pf_error ("broadcast '%s': the setup replay list is full", job->command);
    }
    int64_t now_us = zclock_usecs ();
    if (started) {
        slot->requests++;
        uint64_t took_us = (uint64_t) (now_us - slot->head_since_us);
        slot->service_us = slot->service_us ? (7 * slot->service_us + took_us) / 8 : took_us;
        uint64_t hold_us = (uint64_t) self->config->hold_ms * 1000;
        if (slot->long_requests ? slot->service_us < hold_us / 2 : slot->service_us >= hold_us) {
            slot->long_requests = !slot->long_requests;
            self->roster_changed = true; //  the broker learns the bridge's new window
        }
    }
    slot_pop_job (slot, now_us);
    if (slot->state == BRIDGE_BUSY && slot->written == 0)
        slot_set_state (slot, BRIDGE_READY, "reply", now);
    slot_check_due (self, slot, now);
    slot_after_work (self, slot, now);
}

static void slot_handle_frame (agent_t *self, slot_t *slot, uint8_t *data, size_t size,
                               int64_t now)
{
    pf_bridge_msg_t msg;
    char err[256];
    if (pf_bridge_msg_decode (&msg, data, size, err, sizeof err) != 0) {
        char reason[320];
        snprintf (reason, sizeof reason, "bad bridge output: %s", err);
        pf_error ("bridge %d pid %d: %s", slot->index, (int) slot->pgid, reason);
        slot_kill (self, slot, PF_BRIDGE_CRASHED, reason, now);
        return;
    }
    switch (msg.kind) {
    case PF_BRIDGE_MSG_READY:
        if (slot->state == BRIDGE_STARTING && !slot->got_ready) {
            slot->got_ready = true;
            slot->last_beat = now;
            slot_setup_next (self, slot, now);
        }
        break;
    case PF_BRIDGE_MSG_BEAT:
        slot->last_beat = now;
        slot->rss_kb = msg.rss_kb;
        if (slot->suspect) {
            slot->suspect = false;
            self->roster_changed = true;
            pf_info ("bridge %d gen %u: beats are back", slot->index, slot->generation);
        }
        slot_check_due (self, slot, now);
        break;
    case PF_BRIDGE_MSG_REPLY:
        slot_handle_reply (self, slot, &msg, now);
        break;
    }
    pf_bridge_msg_reset (&msg);
}

static void slot_read (agent_t *self, slot_t *slot, int64_t now)
{
    int rc = pf_bridge_read (slot->handle);
    uint8_t *data;
    size_t size;
    while (slot->handle && (data = pf_bridge_recv (slot->handle, &size))) {
        slot_handle_frame (self, slot, data, size, now);
        free (data);
    }
    if (!slot->handle)
        return;
    if (rc == -2) {
        //  Announced length above the limit: never allocated, never resynced.
        pf_error ("bridge %d pid %d: bad bridge output: frame length above the %zu byte limit",
                  slot->index, (int) slot->pgid, self->config->max_frame);
        slot_kill (self, slot, PF_BRIDGE_CRASHED, "bad bridge output: frame length above the limit",
                   now);
    }
    else if (rc == -1)
        //  Closed output means it is exiting: the reap (SIGCHLD) says how,
        //  which the log needs; one that closed it and lives on stops
        //  beating and is killed as wedged.
        slot->out_eof = true;
}

//  --------------------------------------------------------------------------
//  Broker messages

//  Takes a broker request for a bridge: checked and encoded now, written
//  into the pipe when the pipeline has room.
static void slot_add_job (agent_t *self, slot_t *slot, pf_msg_t *msg, int64_t now)
{
    size_t body_size = msg->body ? zframe_size (msg->body) : 0;
    const void *body = msg->body ? zframe_data (msg->body) : NULL;
    if (!pf_bridge_msg_args_valid (body, body_size)) {
        send_error (self, msg->request_id, slot, PF_BAD_REQUEST,
                    "body is not exactly one msgpack object");
        return;
    }
    job_t *job = slot_job (slot, slot->job_count);
    job->request_id = msg->request_id;
    job->local_id = ++self->next_local_id;
    job->deadline = now + (msg->timeout_ms ? msg->timeout_ms : 30000);
    job->session = msg->session[0] != 0;
    job->broadcast = (msg->flags & PF_FLAG_BROADCAST) != 0;
    job->releasable = !job->session && !job->broadcast;
    job->frame = pf_bridge_msg_request (job->local_id, msg->command_name, body, body_size,
                                        msg->session, job->deadline, job->releasable,
                                        &job->frame_size);
    if (!job->frame || job->frame_size > self->config->max_frame) {
        send_error (self, msg->request_id, slot, job->frame ? PF_TOO_LARGE : PF_INTERNAL,
                    job->frame ? "request larger than the bridge frame limit" : "out of memory");
        job_clear (job);
        return;
    }
    memcpy (job->command, msg->command_name, sizeof job->command);
    if (job->broadcast) {
        job->args = malloc (body_size ? body_size : 1);
        if (job->args && body_size)
            memcpy (job->args, body, body_size);
        job->args_size = job->args ? body_size : 0;
    }
    slot->job_count++;
    if (msg->session[0] && zhashx_insert (slot->sessions, msg->session, (void *) 1) == 0)
        pf_debug ("bridge %d gen %u: holds session '%s'", slot->index, slot->generation,
                  msg->session);
    slot_pump (self, slot, now);
}

static void handle_broker_request (agent_t *self, pf_msg_t *msg, int64_t now)
{
    if (self->stopping) {
        send_error (self, msg->request_id, NULL, PF_SHUTTING_DOWN, "agent is stopping");
        return;
    }
    slot_t *slot = NULL;
    if (msg->bridge < (uint32_t) self->slot_count)
        slot = &self->slots[msg->bridge];
    bool accepts = false;
    if (slot && slot->handle && slot->generation == msg->generation && !slot->suspect
        && slot->job_count < JOBS_MAX) {
        if (slot->state == BRIDGE_READY || slot->state == BRIDGE_BUSY)
            accepts = slot_listed_as (self, slot, now) != NULL;
        else if (slot->state == BRIDGE_DRAINING)
            //  A draining bridge takes only the sessions it still holds.
            accepts = msg->session[0] && now < slot->drain_until
                   && zhashx_lookup (slot->sessions, msg->session);
    }
    if (!accepts) {
        //  Our roster moved on since the broker chose: it never started, so
        //  the broker may run it elsewhere. The new roster goes first, so the
        //  broker does not pick the same bridge again.
        if (self->roster_changed)
            send_heartbeat (self);
        send_error (self, msg->request_id, slot, PF_BUSY, "bridge not available; not started");
        return;
    }
    slot_add_job (self, slot, msg, now);
}

//  The client cancelled a request (the broker has answered it): one that
//  waits here never starts; one in a bridge's pipe is released (with the
//  other releasable ones behind the running request, which go back to the
//  broker); the running one finishes, its reply dropped by the broker.
static void handle_cancel (agent_t *self, pf_msg_t *msg)
{
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        for (uint32_t position = 0; position < slot->job_count; position++) {
            job_t *job = slot_job (slot, position);
            if (job->request_id != msg->request_id || job->answered)
                continue;
            if (position >= slot->written) {
                //  The broker keeps it until we answer: say so, and drop it.
                send_error (self, job->request_id, slot, PF_CANCELLED, "cancelled; not started");
                slot_remove_job (slot, position);
            }
            else if (position > 0 && job->releasable) {
                job_t *running = slot_job (slot, 0);
                slot->release_for = running->local_id;
                pf_bridge_signal (slot->handle, SIGUSR2);
            }
            pf_debug ("request %llu: cancelled on bridge %d", (unsigned long long) msg->request_id,
                      slot->index);
            return;
        }
    }
}

static void handle_session_end (agent_t *self, pf_msg_t *msg)
{
    slot_t *slot = NULL;
    if (msg->bridge < (uint32_t) self->slot_count)
        slot = &self->slots[msg->bridge];
    if (!slot || !slot->handle || slot->generation != msg->generation
        || !zhashx_lookup (slot->sessions, msg->session)) {
        pf_debug ("SESSION_END for '%s' on bridge %u gen %u: not held here", msg->session,
                  msg->bridge, msg->generation);
        return;
    }
    zhashx_delete (slot->sessions, msg->session);
    zlist_append (slot->ends, strdup (msg->session));
    slot_after_work (self, slot, zclock_mono ());
}

//  Acts on one message from the broker (alone or out of a BATCH).
static void handle_broker_msg (agent_t *self, pf_msg_t *msg, int64_t now)
{
    switch (msg->command) {
    case PF_W_REQUEST:
        handle_broker_request (self, msg, now);
        break;
    case PF_W_SESSION_END:
        handle_session_end (self, msg);
        break;
    case PF_W_DISCONNECT:
        if (msg->message && streq (msg->message, "drain")) {
            //  An operator drained us: the broker already moved our work
            //  elsewhere; stop gracefully and exit.
            pf_info ("drained by the broker: stopping");
            self->drained = true;
            break;
        }
        broker_lost (self, msg->message ? msg->message : "broker said DISCONNECT", now);
        self->reconnect_at = now; //  a live broker asked: register again at once
        break;
    case PF_W_RECYCLE:
        handle_recycle (self, msg, now);
        break;
    case PF_W_CANCEL:
        handle_cancel (self, msg);
        break;
    default:
        break; //  HEARTBEAT: sign of life only
    }
}

//  Handles one message from the broker; false if none was waiting.
static bool handle_broker (agent_t *self, int64_t now)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    char err[256];
    int rc = pf_msg_recv (&msg, zsock_resolve (self->dealer), ZMQ_DONTWAIT, NULL,
                          self->config->max_frame, err, sizeof err);
    if (rc == -1)
        return false;
    self->broker_expiry = now + (int64_t) self->config->heartbeat_ms * self->config->liveness;
    self->reconnect_ms = RECONNECT_MIN_MS;
    if (rc == PF_OK && msg.proto == PF_PROTO_W && msg.command == PF_W_BATCH) {
        //  Each message of the batch as if it had come alone; a DISCONNECT
        //  among them closes the socket, and the rest go with it.
        pf_msg_t one;
        pf_msg_init (&one);
        size_t offset = 0;
        while (self->dealer && (rc = pf_batch_next (PF_PROTO_W, msg.body, &offset, &one,
                                                     self->config->max_frame, err,
                                                     sizeof err)) != -1) {
            if (rc == PF_OK)
                handle_broker_msg (self, &one, now);
            else
                pf_warn ("malformed message from broker dropped: %s", err);
            pf_msg_reset (&one);
        }
    }
    else if (rc != PF_OK || msg.proto != PF_PROTO_W)
        pf_warn ("malformed message from broker dropped: %s", rc != PF_OK ? err : "not PFW2");
    else
        handle_broker_msg (self, &msg, now);
    pf_msg_reset (&msg);
    return true;
}

//  --------------------------------------------------------------------------
//  Timers and reaping

static void reap_children (agent_t *self, int64_t now)
{
    int status;
    pid_t pid;
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < self->slot_count; i++) {
            slot_t *slot = &self->slots[i];
            if (slot->handle && pf_bridge_pid (slot->handle) == pid) {
                pf_bridge_set_reaped (slot->handle, status);
                //  Read what it managed to write before it went.
                if (!slot->out_eof)
                    slot_read (self, slot, now);
                if (slot->handle) {
                    char reason[128];
                    describe_status (status, reason, sizeof reason);
                    if (slot->state == BRIDGE_STOPPING)
                        snprintf (reason + strlen (reason), sizeof reason - strlen (reason),
                                  " (stopped)");
                    slot_lost (self, slot, PF_BRIDGE_CRASHED, reason, now);
                }
            }
        }
        if (pid == self->watchdog_pid) {
            pf_error ("the watchdog process died (status %d)", status);
            self->watchdog_pid = 0;
        }
        //  Anything else is an orphaned grandchild handed to us as subreaper.
    }
}

//  Jobs that have not started: past their deadline they are answered
//  TIMEOUT; waiting here behind one that has run --hold ms, those the
//  broker may run elsewhere (no session, no broadcast) go back to it.
static void slot_job_timers (agent_t *self, slot_t *slot, int64_t now)
{
    job_t *running = slot_running (slot);
    //  (The clock is read only when something waits behind the running job.)
    bool held_up = running && slot->job_count > 1
                && zclock_usecs () - slot->head_since_us >= slot_hold_us (self, slot);
    bool release = false;
    for (uint32_t i = running ? 1 : 0; i < slot->job_count; i++) {
        job_t *job = slot_job (slot, i);
        if (job->answered)
            continue;
        if (now >= job->deadline) {
            send_error (self, job->request_id, slot, PF_TIMEOUT,
                        "deadline passed before it started");
            job->answered = true;
        }
        else if (held_up && job->releasable && i >= slot->written) {
            send_error (self, job->request_id, slot, PF_BUSY,
                        "bridge busy with a long request; not started");
            job->answered = true;
        }
        else if (held_up && job->releasable)
            release = true; //  in the pipe: only the bridge can give it back
    }
    if (release && slot->release_for != running->local_id) {
        //  The bridge answers BUSY for each releasable request still in
        //  its pipe (never started); the broker then runs it elsewhere.
        slot->release_for = running->local_id;
        pf_debug ("bridge %d gen %u: request %llu runs long; releasing those behind it",
                  slot->index, slot->generation, (unsigned long long) running->request_id);
        pf_bridge_signal (slot->handle, SIGUSR2);
    }
    //  Answered jobs that wait here go now; those in the pipe go when the
    //  bridge skips them.
    for (uint32_t i = slot->job_count; i > slot->written; i--)
        if (slot_job (slot, i - 1)->answered)
            slot_remove_job (slot, i - 1);
}

//  When slot_job_timers has something to do next (INT64_MAX: nothing).
static int64_t slot_job_due (agent_t *self, slot_t *slot, int64_t now)
{
    int64_t due = INT64_MAX;
    job_t *running = slot_running (slot);
    if (running)
        due = slot->kill_at ? slot->kill_at : running->deadline;
    int64_t held_at = 0; //  when those behind the running job go back; 0: not computed yet
    for (uint32_t i = running ? 1 : 0; i < slot->job_count; i++) {
        job_t *job = slot_job (slot, i);
        if (job->answered)
            continue;
        if (job->deadline < due)
            due = job->deadline;
        if (running && job->releasable
            && (i >= slot->written || slot->release_for != running->local_id)) {
            if (!held_at)
                held_at = now + (slot->head_since_us + slot_hold_us (self, slot) - zclock_usecs ())
                                    / 1000 + 1;
            if (held_at < due)
                due = held_at;
        }
    }
    return due;
}

static void slot_timers (agent_t *self, slot_t *slot, int64_t now)
{
    const pf_agent_config_t *config = self->config;
    if (slot->state == BRIDGE_SPAWNING && slot->in_use && now >= slot->respawn_at
        && !self->stopping) {
        slot_spawn (self, slot, now);
        return;
    }
    if (!slot->handle)
        return;
    if (slot->state == BRIDGE_STARTING && now - slot->state_since >= config->startup_timeout_ms) {
        pf_error ("bridge %d: not ready within %u ms", slot->index, config->startup_timeout_ms);
        slot_kill (self, slot, PF_BRIDGE_CRASHED, "startup timeout", now);
        return;
    }
    if (slot->state == BRIDGE_STOPPING) {
        if (now >= slot->stop_at && slot->stop_step < 2) {
            pf_warn ("bridge %d pid %d: still running after stdin EOF; %s", slot->index,
                     (int) slot->pgid, slot->stop_step == 0 ? "SIGTERM" : "SIGKILL");
            pf_bridge_signal_group (slot->handle, slot->stop_step == 0 ? SIGTERM : SIGKILL);
            slot->stop_step++;
            slot->stop_at = now + config->stop_grace_ms;
        }
        return;
    }
    if (slot->got_ready) {
        int64_t silent = now - slot->last_beat;
        if (silent >= (int64_t) config->wedged_beats * config->beat_ms) {
            char reason[160];
            snprintf (reason, sizeof reason, "bridge wedged: no beat for %lld ms%s",
                      (long long) silent, slot->written ? " while busy" : "");
            pf_error ("bridge %d pid %d: %s; killing it", slot->index, (int) slot->pgid, reason);
            slot_kill (self, slot, PF_BRIDGE_CRASHED, reason, now);
            return;
        }
        if (!slot->suspect && silent >= 2 * (int64_t) config->beat_ms) {
            //  Late beats: no new work until they come back or it is wedged.
            slot->suspect = true;
            self->roster_changed = true;
            pf_warn ("bridge %d pid %d: no beat for %lld ms; taking no work", slot->index,
                     (int) slot->pgid, (long long) silent);
        }
    }
    job_t *running = slot_running (slot);
    if (running && now >= running->deadline && !slot->kill_at) {
        if (running->answered)
            //  Timed out while it waited: the bridge skips it at once,
            //  unless it started it just before the deadline.
            slot->kill_at = now + config->dump_grace_ms;
        else {
            //  Ask for the Python stack (faulthandler) before the kill.
            pf_warn ("bridge %d pid %d: request %llu passed its deadline; dumping stack",
                     slot->index, (int) slot->pgid, (unsigned long long) running->request_id);
            pf_bridge_signal (slot->handle, SIGUSR1);
            slot->kill_at = now + config->dump_grace_ms;
        }
    }
    else if (running && slot->kill_at && now >= slot->kill_at) {
        pf_bridge_drain_stderr (slot->handle, on_stderr_line, self);
        slot_kill (self, slot, PF_TIMEOUT, "deadline passed; the bridge was killed", now);
        return;
    }
    slot_job_timers (self, slot, now);
    if (slot->internal != INTERNAL_NONE && slot->state != BRIDGE_STARTING
        && now >= slot->internal_deadline) {
        slot_kill (self, slot, PF_BRIDGE_CRASHED, "session_end did not finish", now);
        return;
    }
    if (slot->state == BRIDGE_DRAINING)
        slot_after_work (self, slot, now);
    else if (slot->state == BRIDGE_READY && self->policy.max_age_ms)
        slot_check_due (self, slot, now);
}

static void run_timers (agent_t *self, int64_t now)
{
    for (int i = 0; i < self->slot_count; i++)
        slot_timers (self, &self->slots[i], now);
    recycle_schedule (self, now);
    if (self->reconnect_at && now >= self->reconnect_at)
        broker_connect (self, now);
    else if (self->dealer && now >= self->broker_expiry)
        broker_lost (self, "no heartbeat from the broker", now);
    if (self->dealer
        && (self->roster_changed || now - self->last_sent >= self->config->heartbeat_ms))
        send_heartbeat (self);
}

static int64_t earliest (int64_t next, int64_t due)
{
    return due < next ? due : next;
}

//  Milliseconds until the next timer is due (at most a beat or a heartbeat).
static int64_t next_timer (agent_t *self, int64_t now)
{
    uint32_t tick = self->config->heartbeat_ms < self->config->beat_ms ? self->config->heartbeat_ms
                                                                         : self->config->beat_ms;
    int64_t next = now + tick / 2 + 1;
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        if (slot->state == BRIDGE_SPAWNING && slot->in_use)
            next = earliest (next, slot->respawn_at);
        next = earliest (next, slot_job_due (self, slot, now));
        if (slot->state == BRIDGE_STOPPING)
            next = earliest (next, slot->stop_at);
    }
    if (self->reconnect_at)
        next = earliest (next, self->reconnect_at);
    return next > now ? next - now : 0;
}

//  --------------------------------------------------------------------------
//  Loop

//  Writes what slot_pump queued for each bridge: one writev per bridge and
//  loop turn, however many requests the turn brought.
static void flush_bridges (agent_t *self)
{
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        if (slot->handle && pf_bridge_send_pending (slot->handle) &&
            pf_bridge_flush (slot->handle) != 0)
            slot_kill (self, slot, PF_BRIDGE_CRASHED, "bridge stdin broken", zclock_mono ());
    }
}

static void poll_once (agent_t *self, int64_t timeout)
{
    flush_bridges (self);
    broker_flush (self);
    int slots = self->slot_count;
    zmq_pollitem_t items[2 + 3 * slots];
    slot_t *owners[2 + 3 * slots];
    int count = 0;
    items[count++] = (zmq_pollitem_t){NULL, sigchld_pipe[0], ZMQ_POLLIN, 0};
    int dealer_item = self->dealer ? count : -1;
    if (self->dealer)
        items[count++] = (zmq_pollitem_t){zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0};
    int first_bridge = count;
    for (int i = 0; i < slots; i++) {
        slot_t *slot = &self->slots[i];
        if (!slot->handle)
            continue;
        int fds[3] = {slot->out_eof ? -1 : pf_bridge_fd_out (slot->handle),
                      pf_bridge_fd_err (slot->handle),
                      pf_bridge_send_pending (slot->handle) ? pf_bridge_fd_in (slot->handle) : -1};
        for (int k = 0; k < 3; k++)
            if (fds[k] >= 0) {
                owners[count] = slot;
                items[count++] = (zmq_pollitem_t){NULL, fds[k], k == 2 ? ZMQ_POLLOUT : ZMQ_POLLIN,
                                                  0};
            }
    }
    if (zmq_poll (items, count, timeout) <= 0)
        return;
    int64_t now = zclock_mono ();
    //  Reap only when SIGCHLD said so: a wait4 on every wake-up was one more
    //  system call per request.
    bool child_exited = items[0].revents & ZMQ_POLLIN;
    if (child_exited) {
        char drain[64];
        while (read (sigchld_pipe[0], drain, sizeof drain) > 0) {
        }
    }
    //  Bridges' output first, so a reply written just before an exit is seen.
    for (int k = first_bridge; k < count; k++) {
        slot_t *slot = owners[k];
        //  An earlier item may have ended this bridge.
        if (!items[k].revents || !slot->handle)
            continue;
        if (items[k].fd == pf_bridge_fd_err (slot->handle))
            pf_bridge_drain_stderr (slot->handle, on_stderr_line, self);
        //  (A writable stdin only wakes us: flush_bridges writes, next turn.)
        else if (items[k].fd == pf_bridge_fd_out (slot->handle) && !slot->out_eof)
            slot_read (self, slot, now);
    }
    if (child_exited)
        reap_children (self, now);
    //  The broker learns of a roster change before we read its next request.
    if (self->dealer && self->roster_changed)
        send_heartbeat (self);
    if (dealer_item > 0 && self->dealer && (items[dealer_item].revents & ZMQ_POLLIN))
        for (int batch = 0; batch < 256 && self->dealer && handle_broker (self, now); batch++) {
        }
}

static bool any_running (agent_t *self)
{
    for (int i = 0; i < self->slot_count; i++)
        if (self->slots[i].job_count)
            return true;
    return false;
}

static bool any_alive (agent_t *self)
{
    for (int i = 0; i < self->slot_count; i++)
        if (self->slots[i].handle)
            return true;
    return false;
}

//  Graceful stop: leave the broker, let running requests finish within the
//  grace, then stdin EOF, SIGTERM, SIGKILL, each after a grace, and reap
//  everything, grandchildren included.
static void stop_gracefully (agent_t *self)
{
    //  An empty roster tells the broker we take no new work; DISCONNECT
    //  would make it fail the requests still running here, so it comes
    //  once they are answered.
    self->stopping = true;
    send_heartbeat (self);
    int64_t until = zclock_mono () + self->config->stop_grace_ms;
    while (any_running (self) && zclock_mono () < until)
        poll_once (self, 50);
    int64_t now = zclock_mono ();
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        slot_fail_jobs (self, slot, PF_TIMEOUT, "agent stopped before it finished",
                        PF_SHUTTING_DOWN, "agent is stopping; not started");
        if (slot->handle && slot->state != BRIDGE_STOPPING) {
            pf_bridge_close_stdin (slot->handle);
            slot_set_state (slot, BRIDGE_STOPPING, "agent stopping", now);
        }
    }
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_DISCONNECT;
    msg.message = strdup ("agent stopping");
    send_msg (self, &msg);
    pf_msg_reset (&msg);
    int signals[] = {SIGTERM, SIGKILL};
    for (int step = 0; step < 2 && any_alive (self); step++) {
        until = zclock_mono () + self->config->stop_grace_ms;
        while (any_alive (self) && zclock_mono () < until)
            poll_once (self, 50);
        for (int i = 0; i < self->slot_count; i++)
            if (self->slots[i].handle)
                pf_bridge_signal_group (self->slots[i].handle, signals[step]);
    }
    now = zclock_mono ();
    for (int i = 0; i < self->slot_count; i++)
        if (self->slots[i].handle)
            slot_lost (self, &self->slots[i], PF_SHUTTING_DOWN, "agent stopped", now);
    //  The watchdog exits on EOF; then every child is reaped, orphaned
    //  grandchildren we adopted as subreaper included (they were SIGKILLed
    //  with their group, so this is short).
    if (self->watchdog_fd >= 0)
        close (self->watchdog_fd);
    self->watchdog_fd = -1;
    until = zclock_mono () + 2000;
    while (zclock_mono () < until) {
        pid_t pid = waitpid (-1, NULL, WNOHANG);
        if (pid < 0)
            break; //  ECHILD: no child left
        if (pid == 0)
            zclock_sleep (10);
    }
}

static int agent_setup (agent_t *self, const pf_agent_config_t *config)
{
    self->config = config;
    self->watchdog_fd = -1;
    self->last_capacity = -1;
    self->outbox = pf_outbox_new ();
    if (!self->outbox)
        return -1;
    //  Each recycle may hold two spare slots: the replacement being
    //  prepared, then the old bridge while it stops.
    self->slot_count = config->bridges + 2 * (int) config->max_recycling;
    self->pipe_bytes = pf_bridge_pipe_bytes (self->slot_count);
    self->setup = pf_setup_new ();
    for (int i = 0; config->setup && config->setup[i]; i++) {
        char err[256];
        if (pf_setup_add_text (self->setup, config->setup[i], err, sizeof err) != 0) {
            pf_error ("setup: %s", err);
            return -1;
        }
    }
    if (!config->curve_cert != !config->broker_key) {
        pf_error ("CurveZMQ needs both curve-cert and broker-key");
        return -1;
    }
    char why[PATH_MAX + 128];
    if (config->curve_cert
        && (!(self->cert = pf_curve_cert_load (config->curve_cert, why, sizeof why))
            || pf_curve_public_key (config->broker_key, self->broker_key, why, sizeof why) != 0)) {
        pf_error ("CurveZMQ: %s", why);
        return -1;
    }
    self->policy.max_requests = config->max_requests;
    self->policy.max_age_ms = (uint64_t) config->max_age_s * 1000;
    self->policy.max_rss_kb = (uint64_t) config->max_rss_mb * 1024;
    self->policy.jitter_pct = config->jitter_pct;

    int modules = 0;
    while (config->modules && config->modules[modules])
        modules++;
    self->bridge_args = calloc (2 * (size_t) modules + 1, sizeof (char *));
    for (int i = 0; i < modules; i++) {
        self->bridge_args[2 * i] = "--module";
        self->bridge_args[2 * i + 1] = config->modules[i];
    }
    //  Many BLAS threads times many bridges is a fork bomb: one each by
    //  default; the configured env comes later, so it overrides.
    int envs = 0;
    while (config->env && config->env[envs])
        envs++;
    self->bridge_env = calloc ((size_t) envs + 5, sizeof (char *));
    snprintf (self->beat_env, sizeof self->beat_env, "PYFLEET_BEAT_MS=%u", config->beat_ms);
    const char *defaults[] = {"OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"};
    int count = 0;
    for (int i = 0; i < 3; i++)
        self->bridge_env[count++] = defaults[i];
    for (int i = 0; i < envs; i++)
        self->bridge_env[count++] = config->env[i];
    self->bridge_env[count++] = self->beat_env;

    self->slots = calloc ((size_t) self->slot_count, sizeof (slot_t));
    for (int i = 0; i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        slot->index = i;
        slot->replacement = -1;
        slot->standby_for = -1;
        slot->backoff_ms = RESPAWN_MIN_MS;
        slot->state = BRIDGE_DEAD;
        slot->state_since = zclock_mono ();
        slot->sessions = zhashx_new ();
        slot->ends = zlist_new ();
    }
    return 0;
}

static void agent_teardown (agent_t *self)
{
    broker_flush (self);
    pf_outbox_destroy (&self->outbox);
    zsock_destroy (&self->dealer);
    zcert_destroy (&self->cert);
    for (int i = 0; self->slots && i < self->slot_count; i++) {
        slot_t *slot = &self->slots[i];
        zhashx_destroy (&slot->sessions);
        char *session;
        while (slot->ends && (session = (char *) zlist_pop (slot->ends)))
            free (session);
        zlist_destroy (&slot->ends);
        for (uint32_t job = 0; job < JOBS_MAX; job++)
            job_clear (&slot->jobs[job]);
    }
    free (self->slots);
    free (self->bridge_args);
    free (self->bridge_env);
    pf_setup_destroy (&self->setup);
    if (self->watchdog_fd >= 0)
        close (self->watchdog_fd);
}

int pf_agent_run (const pf_agent_config_t *config, volatile sig_atomic_t *interrupted)
{
    agent_t self_storage = {0}, *self = &self_storage;
    if (agent_setup (self, config) != 0) {
        agent_teardown (self);
        return 2;
    }
    if (gethostname (self->host, sizeof self->host) != 0)
        strcpy (self->host, "unknown");
    snprintf (self->agent_id, sizeof self->agent_id, "%.200s-%d-%04x", self->host, (int) getpid (),
              (unsigned) (zclock_time () & 0xffff));
    srandom ((unsigned) (getpid () ^ zclock_time ()));

    //  Bridges' grandchildren get reparented to us, not to init, so nothing
    //  a bridge forks escapes supervision while we live; the watchdog covers
    //  our death.
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    if (pf_watchdog_start (&self->watchdog_pid, &self->watchdog_fd) != 0)
        pf_warn ("no watchdog (%s): a kill -9 of the agent may leave grandchildren",
                 strerror (errno));
    if (sigchld_pipe[0] < 0 && pipe2 (sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        pf_error ("pipe: %s", strerror (errno));
        agent_teardown (self);
        return 1;
    }
    struct sigaction action = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigaction (SIGCHLD, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    int64_t now = zclock_mono ();
    for (int i = 0; i < config->bridges; i++) {
        self->slots[i].in_use = true;
        self->slots[i].state = BRIDGE_SPAWNING;
        self->slots[i].state_since = now;
        slot_spawn (self, &self->slots[i], now);
    }
    self->reconnect_ms = RECONNECT_MIN_MS;
    broker_connect (self, now);
    pf_info ("agent %s serving '%s' with %d bridges (%d slots) via %s%s%s", self->agent_id,
             config->service, config->bridges, self->slot_count, config->broker,
             self->cert ? " with CurveZMQ, public key " : "",
             self->cert ? zcert_public_txt (self->cert) : "");

    while (!*interrupted && !self->drained) {
        now = zclock_mono ();
        run_timers (self, now);
        poll_once (self, next_timer (self, zclock_mono ()));
    }
    pf_info ("stopping");
    stop_gracefully (self);
    agent_teardown (self);
    pf_info ("stopped");
    return 0;
}
