/*  pf_mdp — see pf_mdp.h. */
#include "pf_mdp.h"
#include "pf_error.h"

//  An MDP request on its way through the broker.
typedef struct {
    zframe_t *client; //  its routing id
    char service[PF_MAX_NAME + 1];
} pending_t;

//  An MDP worker we have heard from.
typedef struct {
    int64_t heard; //  zclock_mono () of its last message
} worker_t;

struct pf_mdp_s {
    zhashx_t *pending; //  our request id -> pending_t
    uint64_t next_id;
    zhashx_t *workers; //  routing id in hex -> worker_t
};

//  A worker that vanished without DISCONNECT is forgotten after this long
//  (the broker dropped its agent after liveness x heartbeat already).
#define WORKER_FORGET_MS 60000
//  RFC 7's heartbeat and liveness: a worker may be silent 7.5 s.
#define MDP_SILENCE_MS (2500 * 3)

static size_t id_hash (const void *key)
{
    return (size_t) * (const uint64_t *) key;
}

static int id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void *id_duplicate (const void *key)
{
    uint64_t *copy = malloc (sizeof *copy);
    if (copy) *copy = *(const uint64_t *) key;
    return copy;
}

static void pending_destroy (void **item)
{
    pending_t *pending = *item;
    if (pending) zframe_destroy (&pending->client);
    free (pending);
    *item = NULL;
}

pf_mdp_t *pf_mdp_new (void)
{
    pf_mdp_t *self = calloc (1, sizeof *self);
    if (!self || !(self->pending = zhashx_new ()) || !(self->workers = zhashx_new ())) {
        if (self) zhashx_destroy (&self->pending);
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->workers, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_key_hasher (self->pending, id_hash);
    zhashx_set_key_comparator (self->pending, id_compare);
    zhashx_set_key_duplicator (self->pending, id_duplicate);
    zhashx_set_key_destructor (self->pending, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_destructor (self->pending, pending_destroy);
    self->next_id = 1;
    return self;
}

void pf_mdp_destroy (pf_mdp_t **self_p)
{
    pf_mdp_t *self = *self_p;
    if (!self) return;
    zhashx_destroy (&self->pending);
    zhashx_destroy (&self->workers);
    free (self);
    *self_p = NULL;
}

size_t pf_mdp_pending (pf_mdp_t *self)
{
    return self ? zhashx_size (self->pending) : 0;
}

//  Answers an MDP client here: status, then (an error's) message.
static void answer_now (zframe_t *routing_id, const char *service, int command,
                        const char *status, const char *message, pf_broker_send_fn *send,
                        void *arg)
{
    pf_msg_t answer;
    pf_msg_init (&answer);
    answer.proto = PF_PROTO_MDPC;
    answer.command = command;
    snprintf (answer.service, sizeof answer.service, "%s", *service ? service : "?");
    snprintf (answer.command_name, sizeof answer.command_name, "%s", status);
    if (command == PF_MDP_ERROR) {
        answer.message = message && *message ? strndup (message, PF_MAX_MESSAGE) : NULL;
        answer.detail = zframe_new (NULL, 0);
    }
    send (arg, routing_id, &answer, 0);
    pf_msg_reset (&answer);
}

bool pf_mdp_accept (pf_mdp_t *self, pf_broker_t *broker, zframe_t *routing_id, int rc,
                    pf_msg_t *msg, const char *err, pf_broker_send_fn *send, void *arg)
{
    if (rc != PF_OK) {
        answer_now (routing_id, msg->service, PF_MDP_ERROR, pf_error_name (rc), err, send, arg);
        return false;
    }
    //  8/MMI: "mmi.service" with a service name: 200 if an agent serves it,
    //  else 404; any other "mmi." service: 501. The name came as the
    //  request's first body frame, which is where our command goes.
    if (strncmp (msg->service, "mmi.", 4) == 0) {
        const char *status = !streq (msg->service, "mmi.service")         ? "501"
                             : pf_broker_serves (broker, msg->command_name) ? "200"
                                                                           : "404";
        answer_now (routing_id, msg->service, PF_MDP_MMI, status, NULL, send, arg);
        return false;
    }
    pending_t *pending = calloc (1, sizeof *pending);
    if (pending) pending->client = zframe_dup (routing_id);
    if (!pending || !pending->client) {
        pending_destroy ((void **) &pending);
        answer_now (routing_id, msg->service, PF_MDP_ERROR, "INTERNAL", "out of memory", send,
                    arg);
        return false;
    }
    memcpy (pending->service, msg->service, sizeof pending->service);
    uint64_t id = self->next_id++;
    zhashx_insert (self->pending, &id, pending);
    //  A PFC1 REQUEST: our id, no session, the broker's default deadline.
    msg->proto = PF_PROTO_C;
    msg->command = PF_C_REQUEST;
    msg->request_id = id;
    msg->has_request_id = true;
    return true;
}

bool pf_mdp_answer (pf_mdp_t *self, zframe_t *routing_id, pf_msg_t *msg)
{
    if (msg->proto != PF_PROTO_C || (msg->command != PF_C_REPLY && msg->command != PF_C_ERROR))
        return false;
    pending_t *pending = zhashx_lookup (self->pending, &msg->request_id);
    //  A PFC1 client may use the same id: the routing id tells them apart.
    if (!pending || !zframe_eq (pending->client, routing_id)) return false;
    msg->proto = PF_PROTO_MDPC;
    memcpy (msg->service, pending->service, sizeof msg->service);
    if (msg->command == PF_C_REPLY) {
        msg->command = PF_MDP_REPLY;
        strcpy (msg->command_name, "OK");
    } else {
        msg->command = PF_MDP_ERROR;
        snprintf (msg->command_name, sizeof msg->command_name, "%s", pf_error_name (msg->code));
        if (!msg->detail) msg->detail = zframe_new (NULL, 0);
    }
    zhashx_delete (self->pending, &msg->request_id);
    return true;
}

//  --------------------------------------------------------------------------
//  MDP workers

size_t pf_mdp_workers (pf_mdp_t *self)
{
    return self ? zhashx_size (self->workers) : 0;
}

//  Hands the broker one PFW2 message of the worker's agent.
static void hand (pf_broker_t *broker, zframe_t *routing_id, pf_msg_t *msg, int64_t now)
{
    msg->proto = PF_PROTO_W;
    pf_broker_handle_msg (broker, routing_id, PF_OK, msg, "", now);
}

//  Its one bridge serves, one request at a time: [[0, 1, "ready", {window: 1}]].
static zframe_t *one_bridge (void)
{
    static const byte entry[] = {0x91, 0x94, 0x00, 0x01, 0xa5, 'r', 'e', 'a', 'd', 'y',
                                 0x81, 0xa6, 'w', 'i', 'n', 'd', 'o', 'w', 0x01};
    return zframe_new (entry, sizeof entry);
}

void pf_mdp_worker (pf_mdp_t *self, pf_broker_t *broker, zframe_t *routing_id, int rc,
                    pf_msg_t *msg, const char *err, int64_t now)
{
    char hex[2 * 256 + 1];
    pf_broker_routing_key (routing_id, hex);
    worker_t *worker = zhashx_lookup (self->workers, hex);
    if (!worker) {
        //  Forget the ones long silent first: they left without a word.
        zlist_t *stale = zlist_new ();
        for (worker_t *old = zhashx_first (self->workers); stale && old;
             old = zhashx_next (self->workers))
            if (now - old->heard > WORKER_FORGET_MS)
                zlist_append (stale, (void *) zhashx_cursor (self->workers));
        for (const char *key = stale ? zlist_first (stale) : NULL; key; key = zlist_next (stale))
            zhashx_delete (self->workers, key);
        zlist_destroy (&stale);
        worker = calloc (1, sizeof *worker);
        if (!worker) return;
        zhashx_insert (self->workers, hex, worker);
    }
    worker->heard = now;
    if (rc != PF_OK || (msg->command == PF_MDPW_REPLY && *msg->host)) {
        //  Counted by the broker as any malformed message; nothing answers.
        pf_broker_handle_msg (
            broker, routing_id, rc != PF_OK ? rc : PF_BAD_REQUEST, msg,
            rc != PF_OK ? err : "MDP REPLY: the frame after the address is not empty", now);
        return;
    }
    pf_msg_t out;
    pf_msg_init (&out);
    switch (msg->command) {
    case PF_MDPW_READY:
        out.command = PF_W_READY;
        snprintf (out.agent_id, sizeof out.agent_id, "mdp-%.*s", PF_MAX_NAME - 4, hex);
        strcpy (out.host, "mdp");
        memcpy (out.service, msg->service, sizeof out.service);
        out.capacity = 1;
        out.sessions = zframe_new (NULL, 0);
        hand (broker, routing_id, &out, now);
        pf_broker_agent_silence (broker, routing_id, MDP_SILENCE_MS, now);
        pf_msg_init (&out);
        out.command = PF_W_HEARTBEAT;
        out.bridges = one_bridge ();
        break;
    case PF_MDPW_HEARTBEAT:
        out.command = PF_W_HEARTBEAT; //  bare: nothing changed, but alive
        out.bridges = zframe_new (NULL, 0);
        break;
    case PF_MDPW_REPLY:
        out.command = PF_W_REPLY;
        out.request_id = msg->request_id;
        out.generation = 1;
        out.body = msg->body;
        msg->body = NULL;
        break;
    default: //  DISCONNECT
        out.command = PF_W_DISCONNECT;
        out.message = strdup ("the MDP worker disconnected");
        zhashx_delete (self->workers, hex);
        break;
    }
    hand (broker, routing_id, &out, now);
}

int pf_mdp_to_worker (pf_mdp_t *self, zframe_t *routing_id, pf_msg_t *msg)
{
    char hex[2 * 256 + 1];
    pf_broker_routing_key (routing_id, hex);
    if (!zhashx_lookup (self->workers, hex)) return -1;
    msg->proto = PF_PROTO_MDPW;
    switch (msg->command) {
    case PF_W_REQUEST:
        msg->command = PF_MDPW_REQUEST;
        msg->host[0] = 0;
        return 1;
    case PF_W_HEARTBEAT:
        msg->command = PF_MDPW_HEARTBEAT;
        return 1;
    case PF_W_DISCONNECT:
        msg->command = PF_MDPW_DISCONNECT;
        zhashx_delete (self->workers, hex);
        return 1;
    default:
        msg->proto = PF_PROTO_W;
        return 0;
    }
}
