/*  pf_session — session handles of libpyfleet (see pyfleet.h).

    A session is only a name on the wire: every request that carries it goes
    to the bridge holding its state. The handle keeps the service and the id
    together so callers cannot mix them up, and makes ids that do not collide
    across clients (128 random bits). */
#include "pyfleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

//  The protocol's session id limit (pf_proto.h PF_MAX_NAME).
#define SESSION_ID_MAX 255

struct _pf_session_t {
    pf_client_t *client;
    char *service;
    char *id;
};

pf_session_t *pf_session_new (pf_client_t *client, const char *service, const char *session_id)
{
    if (!client || !service || !*service || strnlen (service, SESSION_ID_MAX + 1) > SESSION_ID_MAX)
        return NULL;
    if (session_id && strnlen (session_id, SESSION_ID_MAX + 1) > SESSION_ID_MAX) return NULL;
    pf_session_t *self = calloc (1, sizeof *self);
    if (!self) return NULL;
    self->client = client;
    self->service = strdup (service);
    if (session_id && *session_id)
        self->id = strdup (session_id);
    else {
        unsigned char bytes[16];
        if (getrandom (bytes, sizeof bytes, 0) != sizeof bytes) {
            pf_session_destroy (&self);
            return NULL;
        }
        self->id = malloc (2 + 2 * sizeof bytes + 1);
        if (self->id) {
            strcpy (self->id, "s-");
            for (size_t i = 0; i < sizeof bytes; i++)
                snprintf (self->id + 2 + 2 * i, 3, "%02x", bytes[i]);
        }
    }
    if (!self->service || !self->id) pf_session_destroy (&self);
    return self;
}

void pf_session_destroy (pf_session_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_session_t *self = *self_p;
    free (self->service);
    free (self->id);
    free (self);
    *self_p = NULL;
}

const char *pf_session_id (pf_session_t *self)
{
    return self->id;
}

//  The caller's options with the session filled in.
static pf_call_options_t in_session (pf_session_t *self, const pf_call_options_t *options)
{
    pf_call_options_t result = {0};
    if (options) result = *options;
    result.session = self->id;
    return result;
}

pf_reply_t *pf_session_call (pf_session_t *self, const char *command, const void *args,
                             size_t args_size, const pf_call_options_t *options)
{
    pf_call_options_t call_options = in_session (self, options);
    return pf_call (self->client, self->service, command, args, args_size, &call_options);
}

int pf_session_send (pf_session_t *self, const char *command, const void *args,
                     size_t args_size, const pf_call_options_t *options, uint64_t *request_id_p)
{
    pf_call_options_t call_options = in_session (self, options);
    return pf_send (self->client, self->service, command, args, args_size, &call_options,
                    request_id_p);
}

pf_reply_t *pf_session_end (pf_session_t *self, uint32_t timeout_ms)
{
    pf_call_options_t call_options = {self->id, timeout_ms, 0};
    //  An empty body: the bridge's session_end then ends the request's own
    //  session.
    return pf_call (self->client, self->service, "session_end", NULL, 0, &call_options);
}
