/*  pf_mdp — Majordomo (ZeroMQ RFC 7, MDP/0.1) clients on the broker's
    endpoint, and the 8/MMI service-discovery requests (DESIGN §3).

    An MDP client sends "" MDPC01 SERVICE COMMAND [ARGS] and gets one answer
    per request: "" MDPC01 SERVICE OK RESULT, or "" MDPC01 SERVICE CODE
    MESSAGE DETAIL (docs/PROTOCOL.md 7). MDP carries no request id, session,
    deadline or flags: the broker gives each request an id of its own, the
    default deadline, no session. Between the socket and the broker's logic
    this module turns an MDP request into a PFC1 REQUEST and the PFC1 answer
    for it back into MDPC01, so the broker's logic sees one client protocol.
    MMI requests ("mmi.service") are answered here.

    Majordomo workers (MDPW01) are agents with one bridge and a window of
    one: their READY, HEARTBEAT, REPLY and DISCONNECT become the PFW2
    messages of such an agent, and the broker's REQUEST, HEARTBEAT and
    DISCONNECT for them go out as MDPW01. A request reaches the worker as
    the body frames COMMAND ARGS; the worker's single body frame is the
    result. MDP has no error reply, no cancel and no sessions. */
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

//  MDP workers ("" MDPW01 ...) are agents with one bridge that takes one
//  request at a time. A message from one (decoded with status rc) is handed
//  to the broker as the PFW2 message(s) such an agent would send: READY (then
//  a HEARTBEAT listing its bridge), HEARTBEAT, REPLY, DISCONNECT.
void pf_mdp_worker (pf_mdp_t *self, pf_broker_t *broker, zframe_t *routing_id, int rc,
                    pf_msg_t *msg, const char *err, int64_t now);

//  A PFW2 message the broker sends to routing_id: -1 if that is not an MDP
//  worker (msg untouched); 1 if msg is now its MDPW01 form (REQUEST,
//  HEARTBEAT, DISCONNECT); 0 if MDP has no such message (CANCEL,
//  SESSION_END, RECYCLE): nothing to send.
int pf_mdp_to_worker (pf_mdp_t *self, zframe_t *routing_id, pf_msg_t *msg);

//  MDP workers known (heard from in the last minute, or registered).
size_t pf_mdp_workers (pf_mdp_t *self);

#endif
