/*  pf_mdp — Majordomo (ZeroMQ RFC 7, MDP/0.1) clients on the broker's
    endpoint, and the 8/MMI service-discovery requests (DESIGN §3).

    An MDP client sends "" MDPC01 SERVICE COMMAND [ARGS] and gets one answer
    per request: "" MDPC01 SERVICE OK RESULT, or "" MDPC01 SERVICE CODE
    MESSAGE DETAIL (docs/PROTOCOL.md 7). MDP carries no request id, session,
    deadline or flags: the broker gives each request an id of its own, the
    default deadline, no session. Between the socket and the broker's logic
    this module turns an MDP request into a PFC1 REQUEST and the PFC1 answer
    for it back into MDPC01, so the broker's logic sees one client protocol.
    MMI requests ("mmi.service") are answered here. */
#ifndef PF_MDP_H_INCLUDED
#define PF_MDP_H_INCLUDED

#include "pf_broker.h"
#include "pf_proto.h"

typedef struct pf_mdp_s pf_mdp_t;

pf_mdp_t *pf_mdp_new (void);
void pf_mdp_destroy (pf_mdp_t **self_p);

//  An MDP message from routing_id, decoded with status rc (err says why if
//  not PF_OK). Returns true if msg is now a PFC1 REQUEST for the broker;
//  false if it was answered here (MMI, or BAD_REQUEST / TOO_LARGE for a
//  malformed one) through send, or dropped (out of memory: counted as a
//  send failure by the caller's broker).
bool pf_mdp_accept (pf_mdp_t *self, pf_broker_t *broker, zframe_t *routing_id, int rc,
                    pf_msg_t *msg, const char *err, pf_broker_send_fn *send, void *arg);

//  If msg, a PFC1 REPLY or ERROR for routing_id, answers an MDP request,
//  turns it into that request's MDPC01 answer and returns true.
bool pf_mdp_answer (pf_mdp_t *self, zframe_t *routing_id, pf_msg_t *msg);

//  Requests of MDP clients not answered yet.
size_t pf_mdp_pending (pf_mdp_t *self);

#endif
