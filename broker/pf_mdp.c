/*  pf_mdp — see pf_mdp.h. */
#include "pf_mdp.h"
#include "pf_error.h"
#include "pf_log.h"

//  An MDP request on its way through the broker.
typedef struct {
    zframe_t *client; //  its routing id
    char service[PF_MAX_NAME + 1];
} pending_t;

struct pf_mdp_s {
    zhashx_t *pending; //  our request id -> pending_t
    uint64_t next_id;
};

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

static void id_destroy (void **key)
{
    free (*key);
    *key = NULL;
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
    if (!self || !(self->pending = zhashx_new ())) {
        free (self);
        return NULL;
    }
    zhashx_set_key_hasher (self->pending, id_hash);
    zhashx_set_key_comparator (self->pending, id_compare);
    zhashx_set_key_duplicator (self->pending, id_duplicate);
    zhashx_set_key_destructor (self->pending, id_destroy);
    zhashx_set_destructor (self->pending, pending_destroy);
    self->next_id = 1;
    return self;
}

void pf_mdp_destroy (pf_mdp_t **self_p)
{
    pf_mdp_t *self = *self_p;
    if (!self) return;
    zhashx_destroy (&self->pending);
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
