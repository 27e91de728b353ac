/*  pf_agent — bridge supervision and the agent side of PFW1.

    One poll loop watches the broker socket, a self-pipe woken by SIGCHLD, and
    each bridge's three pipes. The agent is a child subreaper, so a bridge's
    grandchildren are reaped here too; each bridge runs in its own process
    group, which is what gets killed, so a grandchild holding a pipe open
    cannot keep a dead bridge looking alive. */
#define _GNU_SOURCE
#include "pf_agent.h"
#include "pf_bridge.h"
#include "pf_bridge_msg.h"
#include "pf_error.h"
#include "pf_log.h"
#include "pf_paths.h"
#include "pf_proto.h"
#include <czmq.h>
#include <fcntl.h>
#include <msgpack.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define RESPAWN_MIN_MS   100
#define RESPAWN_MAX_MS   30000
#define RECONNECT_MIN_MS 1000
#define RECONNECT_MAX_MS 32000

typedef enum {
    BRIDGE_SPAWNING, //  waiting for its respawn time
    BRIDGE_STARTING, //  process running, no ready frame yet
    BRIDGE_READY,
    BRIDGE_BUSY,
    BRIDGE_STOPPING,
    BRIDGE_DEAD,
} bridge_state_t;

static const char *state_names[] = {"spawning", "starting", "ready",
                                    "busy",     "stopping", "dead"};

typedef struct {
    int index;
    uint32_t generation;
    bridge_state_t state;
    int64_t state_since;
    pf_bridge_t *handle;
    int64_t respawn_at;
    uint32_t backoff_ms;
    //  The request it runs (BRIDGE_BUSY).
    uint64_t request_id; //  broker's id
    uint64_t local_id;   //  id on the bridge pipe
    int64_t deadline;
    int64_t kill_at; //  set once the stack dump was asked for
    uint64_t requests;
} slot_t;

typedef struct {
    const pf_agent_config_t *config;
    char agent_id[PF_MAX_NAME + 1];
    char host[PF_MAX_NAME + 1];
    zsock_t *dealer;
    int64_t broker_expiry;
    int64_t last_sent;
    int64_t reconnect_at; //  0 while connected
    uint32_t reconnect_ms;
    bool roster_changed; //  the serving bridges changed since the last HEARTBEAT
    slot_t *slots;
    uint64_t next_local_id;
    const char **bridge_args;
    const char *bridge_env[8];
    char beat_env[64];
    bool stopping;
} agent_t;

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

void pf_agent_config_defaults (pf_agent_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->broker = "tcp://127.0.0.1:5555";
    config->service = "default";
    config->bridges = 2;
    config->python = PF_DEFAULT_PYTHON;
    config->python_path = pf_default_python_path (); //  installed copy, else the sources
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->beat_ms = 1000;
    config->startup_timeout_ms = 30000;
    config->dump_grace_ms = 200;
    config->stop_grace_ms = 2000;
    config->max_frame = PF_DEFAULT_MAX_BODY;
}

//  --------------------------------------------------------------------------
//  Broker side

static void send_msg (agent_t *self, pf_msg_t *msg)
{
    if (!self->dealer)
        return;
    zmsg_t *out = pf_msg_encode (msg);
    if (!out)
        return;
    //  The DEALER queues to a connected broker; never wait on a gone one.
    zframe_t *frame;
    int rc = 0;
    while (rc == 0 && (frame = zmsg_pop (out))) {
        int more = zmsg_size (out) > 0 ? ZFRAME_MORE : 0;
        rc = zframe_send (&frame, self->dealer, more | ZFRAME_DONTWAIT);
        zframe_destroy (&frame);
    }
    zmsg_destroy (&out);
    self->last_sent = zclock_mono ();
}

static bool slot_serving (slot_t *slot)
{
    return slot->state == BRIDGE_READY || slot->state == BRIDGE_BUSY;
}

//  The serving bridges as msgpack [[index, generation, state], ...].
static zframe_t *roster_frame (agent_t *self)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    size_t serving = 0;
    for (int i = 0; i < self->config->bridges; i++)
        serving += slot_serving (&self->slots[i]);
    msgpack_pack_array (&packer, serving);
    for (int i = 0; i < self->config->bridges; i++) {
        slot_t *slot = &self->slots[i];
        if (!slot_serving (slot))
            continue;
        msgpack_pack_array (&packer, 3);
        msgpack_pack_uint32 (&packer, (uint32_t) slot->index);
        msgpack_pack_uint32 (&packer, slot->generation);
        const char *state = state_names[slot->state];
        msgpack_pack_str_with_body (&packer, state, strlen (state));
    }
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return frame;
}

static void send_heartbeat (agent_t *self)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_HEARTBEAT;
    msg.bridges = roster_frame (self);
    send_msg (self, &msg);
    pf_msg_reset (&msg);
    self->roster_changed = false;
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
    msg.capacity = (uint32_t) self->config->bridges;
    send_msg (self, &msg);
    pf_msg_reset (&msg);
    send_heartbeat (self);
}

static void send_reply (agent_t *self, slot_t *slot, pf_bridge_msg_t *reply)
{
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.request_id = slot->request_id;
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
    send_msg (self, &msg);
    pf_msg_reset (&msg);
}

static void broker_connect (agent_t *self, int64_t now)
{
    zsock_destroy (&self->dealer);
    self->dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
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
    pf_warn ("broker connection lost (%s); reconnecting in %u ms", why, self->reconnect_ms);
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
    pf_log (routine ? PF_LOG_DEBUG : PF_LOG_INFO, "bridge %d gen %u: %s -> %s after %lld ms (%s)", slot->index, slot->generation,
             state_names[slot->state], state_names[state], (long long) (now - slot->state_since),
             reason);
    slot->state = state;
    slot->state_since = now;
}

static void on_stderr_line (void *arg, pf_bridge_t *bridge, const char *line)
{
    (void) arg;
    pf_info ("bridge %d pid %d: %s", pf_bridge_index (bridge), (int) pf_bridge_pid (bridge), line);
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
    };
    char err[512];
    slot->generation++;
    slot->handle = pf_bridge_spawn (&options, err, sizeof err);
    if (!slot->handle) {
        pf_error ("bridge %d: spawn failed: %s", slot->index, err);
        slot->respawn_at = now + slot->backoff_ms;
        slot->backoff_ms = slot->backoff_ms * 2 > RESPAWN_MAX_MS ? RESPAWN_MAX_MS
                                                                 : slot->backoff_ms * 2;
        slot_set_state (slot, BRIDGE_SPAWNING, "spawn failed", now);
        return;
    }
    slot_set_state (slot, BRIDGE_STARTING, "spawned", now);
    pf_debug ("bridge %d: pid %d", slot->index, (int) pf_bridge_pid (slot->handle));
}

//  A bridge is gone (exit, crash, protocol fault, kill). Answers its
//  request, frees the process, and schedules the replacement: at once if it
//  had been serving, with doubling backoff if it died before it was ready (a
//  broken environment must not spin).
static void slot_lost (agent_t *self, slot_t *slot, int code, const char *reason, int64_t now)
{
    if (slot->state == BRIDGE_BUSY)
        send_error (self, slot->request_id, slot, code, reason);
    bool was_serving = slot_serving (slot);
    if (slot->handle) {
        //  Whatever it wrote last (a traceback, a stack dump) belongs in the log.
        pf_bridge_drain_stderr (slot->handle, on_stderr_line, self);
        pf_bridge_destroy (&slot->handle);
    }
    if (was_serving)
        self->roster_changed = true;
    if (self->stopping) {
        slot_set_state (slot, BRIDGE_DEAD, reason, now);
        return;
    }
    if (was_serving)
        slot->backoff_ms = RESPAWN_MIN_MS;
    slot->respawn_at = now + (was_serving ? 0 : slot->backoff_ms);
    if (!was_serving)
        slot->backoff_ms = slot->backoff_ms * 2 > RESPAWN_MAX_MS ? RESPAWN_MAX_MS
                                                                 : slot->backoff_ms * 2;
    slot_set_state (slot, BRIDGE_SPAWNING, reason, now);
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

static void slot_handle_frame (agent_t *self, slot_t *slot, uint8_t *data, size_t size,
                               int64_t now)
{
    pf_bridge_msg_t msg;
    char err[256];
    if (pf_bridge_msg_decode (&msg, data, size, err, sizeof err) != 0) {
        char reason[320];
        snprintf (reason, sizeof reason, "bad bridge output: %s", err);
        pf_error ("bridge %d: %s", slot->index, reason);
        slot_lost (self, slot, PF_BRIDGE_CRASHED, reason, now);
        return;
    }
    switch (msg.kind) {
    case PF_BRIDGE_MSG_READY:
        if (slot->state == BRIDGE_STARTING) {
            slot_set_state (slot, BRIDGE_READY, "ready frame", now);
            slot->backoff_ms = RESPAWN_MIN_MS;
            self->roster_changed = true;
        }
        break;
    case PF_BRIDGE_MSG_BEAT:
        break;
    case PF_BRIDGE_MSG_REPLY:
        if (slot->state == BRIDGE_BUSY && msg.id == slot->local_id) {
            send_reply (self, slot, &msg);
            slot->requests++;
            slot_set_state (slot, BRIDGE_READY, "reply", now);
        }
        else
            pf_warn ("bridge %d: dropped a late reply (id %llu)", slot->index,
                     (unsigned long long) msg.id);
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
    if (!slot->handle || rc == 0)
        return;
    if (rc == -2)
        slot_lost (self, slot, PF_BRIDGE_CRASHED, "bad bridge output: frame length over the limit",
                   now);
    else {
        //  EOF on the protocol pipe: the process is ending; its wait status
        //  says how, so give it a moment to be reaped before answering.
        int status;
        pf_bridge_signal_group (slot->handle, SIGKILL);
        char reason[128] = "bridge closed its output";
        for (int tries = 0; tries < 100; tries++) {
            if (pf_bridge_reap (slot->handle, &status) == 1) {
                describe_status (status, reason, sizeof reason);
                break;
            }
            zclock_sleep (1);
        }
        slot_lost (self, slot, PF_BRIDGE_CRASHED, reason, now);
    }
}

static void slot_start_request (agent_t *self, slot_t *slot, pf_msg_t *msg, int64_t now)
{
    if (msg->body && !pf_bridge_msg_args_valid (zframe_data (msg->body), zframe_size (msg->body))) {
        send_error (self, msg->request_id, slot, PF_BAD_REQUEST, "args are not one msgpack value");
        return;
    }
    size_t size;
    uint64_t local_id = ++self->next_local_id;
    uint8_t *frame = pf_bridge_msg_request (
        local_id, msg->command_name, msg->body ? zframe_data (msg->body) : NULL,
        msg->body ? zframe_size (msg->body) : 0, msg->session, &size);
    if (!frame) {
        send_error (self, msg->request_id, slot, PF_INTERNAL, "out of memory");
        return;
    }
    int rc = pf_bridge_send (slot->handle, frame, size);
    free (frame);
    if (rc != 0) {
        send_error (self, msg->request_id, slot,
                    size > self->config->max_frame ? PF_TOO_LARGE : PF_BUSY,
                    size > self->config->max_frame ? "request larger than the bridge frame limit"
                                                   : "bridge pipe broken; not started");
        return;
    }
    slot->request_id = msg->request_id;
    slot->local_id = local_id;
    slot->deadline = now + (msg->timeout_ms ? msg->timeout_ms : 30000);
    slot->kill_at = 0;
    slot_set_state (slot, BRIDGE_BUSY, msg->command_name, now);
}

static void handle_broker_request (agent_t *self, pf_msg_t *msg, int64_t now)
{
    if (self->stopping) {
        send_error (self, msg->request_id, NULL, PF_SHUTTING_DOWN, "agent is stopping");
        return;
    }
    slot_t *slot = NULL;
    if (msg->bridge < (uint32_t) self->config->bridges)
        slot = &self->slots[msg->bridge];
    if (!slot || slot->generation != msg->generation || slot->state != BRIDGE_READY) {
        //  Our roster moved on since the broker chose: it never started, so
        //  the broker may run it elsewhere.
        send_error (self, msg->request_id, slot, PF_BUSY, "bridge not available; not started");
        self->roster_changed = true;
        return;
    }
    slot_start_request (self, slot, msg, now);
}

static void handle_broker (agent_t *self, int64_t now)
{
    zmsg_t *in = zmsg_recv (self->dealer);
    if (!in)
        return;
    self->broker_expiry = now + (int64_t) self->config->heartbeat_ms * self->config->liveness;
    self->reconnect_ms = RECONNECT_MIN_MS;
    pf_msg_t msg;
    pf_msg_init (&msg);
    char err[256];
    if (pf_msg_decode (&msg, &in, self->config->max_frame, err, sizeof err) != PF_OK
        || msg.proto != PF_PROTO_W) {
        pf_warn ("malformed message from broker dropped: %s", err);
        pf_msg_reset (&msg);
        return;
    }
    switch (msg.command) {
    case PF_W_REQUEST:
        handle_broker_request (self, &msg, now);
        break;
    case PF_W_HEARTBEAT:
        break;
    case PF_W_DISCONNECT:
        broker_lost (self, msg.message ? msg.message : "broker said DISCONNECT", now);
        self->reconnect_at = now; //  a live broker asked: register again at once
        break;
    default:
        break; //  SESSION_END and CANCEL come with sessions
    }
    pf_msg_reset (&msg);
}

//  --------------------------------------------------------------------------
//  Timers and reaping

static void reap_children (agent_t *self, int64_t now)
{
    int status;
    pid_t pid;
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < self->config->bridges; i++) {
            slot_t *slot = &self->slots[i];
            if (slot->handle && pf_bridge_pid (slot->handle) == pid) {
                pf_bridge_set_reaped (slot->handle, status);
                //  Read what it managed to write before it went.
                slot_read (self, slot, now);
                if (slot->handle) {
                    char reason[128];
                    describe_status (status, reason, sizeof reason);
                    slot_lost (self, slot, PF_BRIDGE_CRASHED, reason, now);
                }
            }
        }
        //  Anything else is an orphaned grandchild handed to us as subreaper.
    }
}

static void run_timers (agent_t *self, int64_t now)
{
    for (int i = 0; i < self->config->bridges; i++) {
        slot_t *slot = &self->slots[i];
        if (slot->state == BRIDGE_SPAWNING && now >= slot->respawn_at && !self->stopping)
            slot_spawn (self, slot, now);
        else if (slot->state == BRIDGE_STARTING
                 && now - slot->state_since >= self->config->startup_timeout_ms) {
            pf_error ("bridge %d: no ready frame within %u ms", slot->index,
                      self->config->startup_timeout_ms);
            slot_lost (self, slot, PF_BRIDGE_CRASHED, "startup timeout", now);
        }
        else if (slot->state == BRIDGE_BUSY && now >= slot->deadline && !slot->kill_at) {
            //  Ask for every thread's Python stack (faulthandler) before the kill.
            pf_warn ("bridge %d pid %d: request %llu passed its deadline; dumping stack",
                     slot->index, (int) pf_bridge_pid (slot->handle),
                     (unsigned long long) slot->request_id);
            pf_bridge_signal (slot->handle, SIGUSR1);
            slot->kill_at = now + self->config->dump_grace_ms;
        }
        else if (slot->state == BRIDGE_BUSY && slot->kill_at && now >= slot->kill_at) {
            pf_bridge_signal_group (slot->handle, SIGKILL);
            slot_lost (self, slot, PF_TIMEOUT, "deadline passed; the bridge was killed", now);
        }
    }
    if (self->reconnect_at && now >= self->reconnect_at)
        broker_connect (self, now);
    else if (self->dealer && now >= self->broker_expiry)
        broker_lost (self, "no heartbeat from the broker", now);
    if (self->dealer && (self->roster_changed || now - self->last_sent >= self->config->heartbeat_ms))
        send_heartbeat (self);
}

//  Milliseconds until the next timer is due (at most one heartbeat).
static int64_t next_timer (agent_t *self, int64_t now)
{
    int64_t next = now + self->config->heartbeat_ms;
    for (int i = 0; i < self->config->bridges; i++) {
        slot_t *slot = &self->slots[i];
        if (slot->state == BRIDGE_SPAWNING && slot->respawn_at < next)
            next = slot->respawn_at;
        if (slot->state == BRIDGE_BUSY) {
            int64_t due = slot->kill_at ? slot->kill_at : slot->deadline;
            if (due < next)
                next = due;
        }
    }
    if (self->reconnect_at && self->reconnect_at < next)
        next = self->reconnect_at;
    return next > now ? next - now : 0;
}

//  --------------------------------------------------------------------------
//  Loop

static void poll_once (agent_t *self, int64_t timeout)
{
    int bridges = self->config->bridges;
    zmq_pollitem_t items[2 + 3 * bridges];
    slot_t *owners[2 + 3 * bridges];
    int count = 0;
    items[count++] = (zmq_pollitem_t){NULL, sigchld_pipe[0], ZMQ_POLLIN, 0};
    int dealer_item = self->dealer ? count : -1;
    if (self->dealer)
        items[count++] = (zmq_pollitem_t){zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0};
    int first_bridge = count;
    for (int i = 0; i < bridges; i++) {
        slot_t *slot = &self->slots[i];
        if (!slot->handle)
            continue;
        int fds[3] = {pf_bridge_fd_out (slot->handle), pf_bridge_fd_err (slot->handle),
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
    if (items[0].revents & ZMQ_POLLIN) {
        char drain[64];
        while (read (sigchld_pipe[0], drain, sizeof drain) > 0) {
        }
    }
    reap_children (self, now);
    if (dealer_item > 0 && self->dealer && (items[dealer_item].revents & ZMQ_POLLIN))
        for (int batch = 0; batch < 256 && self->dealer && (zsock_events (self->dealer) & ZMQ_POLLIN);
             batch++)
            handle_broker (self, now);
    for (int k = first_bridge; k < count; k++) {
        slot_t *slot = owners[k];
        //  An earlier item may have ended this bridge.
        if (!items[k].revents || !slot->handle)
            continue;
        if (items[k].fd == pf_bridge_fd_err (slot->handle))
            pf_bridge_drain_stderr (slot->handle, on_stderr_line, self);
        else if (items[k].fd == pf_bridge_fd_in (slot->handle)) {
            if (pf_bridge_flush (slot->handle) != 0)
                slot_lost (self, slot, PF_BRIDGE_CRASHED, "bridge stdin broken", now);
        }
        else
            slot_read (self, slot, now);
    }
}

static bool any_busy (agent_t *self)
{
    for (int i = 0; i < self->config->bridges; i++)
        if (self->slots[i].state == BRIDGE_BUSY)
            return true;
    return false;
}

static bool any_alive (agent_t *self)
{
    for (int i = 0; i < self->config->bridges; i++)
        if (self->slots[i].handle)
            return true;
    return false;
}

//  Graceful stop: leave the broker, let running requests finish within the
//  grace, then stdin EOF, SIGTERM, SIGKILL, each after a grace, and reap.
static void stop_gracefully (agent_t *self)
{
    self->stopping = true;
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_DISCONNECT;
    msg.message = strdup ("agent stopping");
    send_msg (self, &msg);
    pf_msg_reset (&msg);

    int64_t until = zclock_mono () + self->config->stop_grace_ms;
    while (any_busy (self) && zclock_mono () < until)
        poll_once (self, 50);
    int64_t now = zclock_mono ();
    for (int i = 0; i < self->config->bridges; i++) {
        slot_t *slot = &self->slots[i];
        if (slot->state == BRIDGE_BUSY)
            send_error (self, slot->request_id, slot, PF_TIMEOUT, "agent stopped before it finished");
        if (slot->handle) {
            slot->state = BRIDGE_STOPPING;
            pf_bridge_close_stdin (slot->handle);
        }
    }
    int signals[] = {SIGTERM, SIGKILL};
    for (int step = 0; step < 2 && any_alive (self); step++) {
        until = zclock_mono () + self->config->stop_grace_ms;
        while (any_alive (self) && zclock_mono () < until)
            poll_once (self, 50);
        for (int i = 0; i < self->config->bridges; i++)
            if (self->slots[i].handle)
                pf_bridge_signal_group (self->slots[i].handle, signals[step]);
    }
    for (int i = 0; i < self->config->bridges; i++)
        if (self->slots[i].handle)
            slot_lost (self, &self->slots[i], PF_SHUTTING_DOWN, "agent stopped", now);
    //  Orphaned grandchildren we adopted as subreaper.
    while (waitpid (-1, NULL, WNOHANG) > 0) {
    }
}

int pf_agent_run (const pf_agent_config_t *config, volatile sig_atomic_t *interrupted)
{
    agent_t self_storage = {0}, *self = &self_storage;
    self->config = config;
    if (gethostname (self->host, sizeof self->host) != 0)
        strcpy (self->host, "unknown");
    snprintf (self->agent_id, sizeof self->agent_id, "%.200s-%d-%04x", self->host, (int) getpid (),
              (unsigned) (zclock_time () & 0xffff));

    //  Bridges' grandchildren get reparented to us, not to init, so nothing
    //  a bridge forks escapes supervision.
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    if (pipe2 (sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        pf_error ("pipe: %s", strerror (errno));
        return 1;
    }
    struct sigaction action = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigaction (SIGCHLD, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    int modules = 0;
    while (config->modules && config->modules[modules])
        modules++;
    self->bridge_args = calloc (2 * modules + 1, sizeof (char *));
    for (int i = 0; i < modules; i++) {
        self->bridge_args[2 * i] = "--module";
        self->bridge_args[2 * i + 1] = config->modules[i];
    }
    //  Many BLAS threads times many bridges is a fork bomb: one each by default.
    snprintf (self->beat_env, sizeof self->beat_env, "PYFLEET_BEAT_MS=%u", config->beat_ms);
    const char *env[] = {"OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1",
                         self->beat_env, NULL};
    memcpy (self->bridge_env, env, sizeof env);

    self->slots = calloc ((size_t) config->bridges, sizeof (slot_t));
    int64_t now = zclock_mono ();
    for (int i = 0; i < config->bridges; i++) {
        slot_t *slot = &self->slots[i];
        slot->index = i;
        slot->state_since = now;
        slot->backoff_ms = RESPAWN_MIN_MS;
        slot_spawn (self, slot, now);
    }
    self->reconnect_ms = RECONNECT_MIN_MS;
    broker_connect (self, now);
    pf_info ("agent %s serving '%s' with %d bridges via %s", self->agent_id, config->service,
             config->bridges, config->broker);

    while (!*interrupted) {
        now = zclock_mono ();
        run_timers (self, now);
        poll_once (self, next_timer (self, zclock_mono ()));
    }
    pf_info ("stopping");
    stop_gracefully (self);
    zsock_destroy (&self->dealer);
    free (self->slots);
    free (self->bridge_args);
    close (sigchld_pipe[0]);
    close (sigchld_pipe[1]);
    pf_info ("stopped");
    return 0;
}
