/*  pf_proto — codec for the native client (PFC1) and worker (PFW2) protocols,
    and for Majordomo's (MDP/0.1).

    Shared by broker, worker agent and client library. docs/PROTOCOL.md is the
    normative frame table; this header is its C view. Every message starts with
    an empty delimiter frame and a protocol header frame, then one command frame
    of one byte. Integers are fixed-size big-endian (u16, u32, u64), strings
    UTF-8 bytes without a terminator, each in a frame of its own (PFC1) or
    packed into a head frame (PFW2). A ROUTER socket sees
    the peer's routing id before the empty frame: the caller pops it first
    (pf_msg_decode), or pf_msg_recv hands it back separately.

    Two ways on and off a socket, same frames, same checks: pf_msg_encode /
    pf_msg_decode work on a zmsg; pf_msg_send / pf_msg_recv work on the socket
    directly and allocate about one zframe per message instead of one per
    frame (the broker's path).

    MDPC01 and MDPW01 (ZeroMQ RFC 7 clients and workers): see PF_MDP_* and
    PF_MDPW_* below; the broker translates them (broker/pf_mdp.c).

    PFC1 (client <-> broker)
      REQUEST  C->B  "" PFC1 0x01 request_id:u64 service session command timeout_ms:u32 flags:u32 body
      REPLY    B->C  "" PFC1 0x02 request_id:u64 flags:u32 body
      ERROR    B->C  "" PFC1 0x03 request_id:u64 code:u16 message detail
      CANCEL   C->B  "" PFC1 0x04 request_id:u64
      REQUEST_PACKED  C->B  "" PFC1 0x05 [request_id:u64 timeout_ms:u32 flags:u32 service session command] body
               (REQUEST with the PFW2 packed head, below; libpyfleet sends this one)
      BATCH    both  "" PFC1 0x06 messages   (packed as PFW2 BATCH's: requests from a client
               that batches; answers to requests flagged PF_FLAG_BATCH_OK)

    PFW2 (worker agent <-> broker): the fields in [...] travel packed in one
    frame, the head: integers back to back, names after a length byte, a
    message after a two-byte length (docs/PROTOCOL.md 3.2)
      READY        A->B  "" PFW2 0x01 [agent_id host pid:u32 service capacity:u32] sessions
      HEARTBEAT    both  "" PFW2 0x02 bridges
      REQUEST      B->A  "" PFW2 0x03 [request_id:u64 bridge:u32 generation:u32 timeout_ms:u32 flags:u32 session command] body
      REPLY        A->B  "" PFW2 0x04 [request_id:u64 bridge:u32 generation:u32 flags:u32] body
      ERROR        A->B  "" PFW2 0x05 [request_id:u64 bridge:u32 generation:u32 code:u16 message] detail
      SESSION_END  B->A  "" PFW2 0x06 [session bridge:u32 generation:u32]
      SESSION_LOST A->B  "" PFW2 0x07 [session bridge:u32 generation:u32]
      CANCEL       B->A  "" PFW2 0x08 request_id:u64
      DISCONNECT   both  "" PFW2 0x09 message
      RECYCLE      B->A  "" PFW2 0x0A bridge:u32   (PF_BRIDGE_ANY: every bridge)
      BATCH        both  "" PFW2 0x0B messages     (packed messages, pf_msg_pack; in body)

    Field limits: service, command, agent_id 1..255 bytes; session, host 0..255
    bytes (empty session = no session; SESSION_END and SESSION_LOST need
    1..255); message 0..65535 bytes; body, detail, sessions and bridges are
    opaque bytes (msgpack by convention) of at most max_body bytes.
    bridge = PF_BRIDGE_ANY lets the agent choose. */
#ifndef PF_PROTO_H_INCLUDED
#define PF_PROTO_H_INCLUDED

#include "pf_curve.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define PF_PROTO_CLIENT "PFC1"
#define PF_PROTO_WORKER "PFW2"
#define PF_PROTO_MDP_CLIENT "MDPC01" //  ZeroMQ RFC 7 (MDP/0.1) clients, docs/PROTOCOL.md 12
#define PF_PROTO_MDP_WORKER "MDPW01" //  ... and workers

#define PF_MAX_NAME        255
#define PF_MAX_MESSAGE     65535
#define PF_DEFAULT_MAX_BODY (64u * 1024 * 1024)
#define PF_BRIDGE_ANY      0xFFFFFFFFu
//  A BATCH's messages frame may be this large even where max_body is less;
//  each message in it is held to max_body when it is unpacked.
#define PF_BATCH_MAX_FRAME (1024u * 1024)

//  Which protocol a message belongs to.
typedef enum { PF_PROTO_C = 1, PF_PROTO_W = 2, PF_PROTO_MDPC = 3, PF_PROTO_MDPW = 4 } pf_proto_kind_t;

//  Commands; values are the byte on the wire (per protocol).
enum {
    PF_C_REQUEST = 0x01,
    PF_C_REPLY = 0x02,
    PF_C_ERROR = 0x03,
    PF_C_CANCEL = 0x04,
    PF_C_REQUEST_PACKED = 0x05, //  REQUEST with its fields in one head frame
    PF_C_BATCH = 0x06,          //  answers for one client (pf_batch.h)
};
//  MDP/0.1 client messages (no command frame on the wire): a REQUEST is
//  service, command, body (optional: absent = empty); answers carry a status
//  in command_name ("OK", an error's name, or MMI's "200"/"404"/"501").
enum {
    PF_MDP_REQUEST = 0x01, //  "" MDPC01 service command [body]
    PF_MDP_REPLY = 0x02,   //  "" MDPC01 service status body
    PF_MDP_ERROR = 0x03,   //  "" MDPC01 service status message detail
    PF_MDP_MMI = 0x04,     //  "" MDPC01 service status   (8/MMI answers)
};
//  MDP/0.1 worker messages (RFC 7; a command frame, as in PFW2). The client
//  address of REQUEST and REPLY is the broker's request id (8 bytes); the
//  empty frame after it reads into host, which must stay empty.
enum {
    PF_MDPW_READY = 0x01,      //  "" MDPW01 0x01 service
    PF_MDPW_REQUEST = 0x02,    //  "" MDPW01 0x02 request_id "" command body
    PF_MDPW_REPLY = 0x03,      //  "" MDPW01 0x03 request_id "" body
    PF_MDPW_HEARTBEAT = 0x04,  //  "" MDPW01 0x04
    PF_MDPW_DISCONNECT = 0x05, //  "" MDPW01 0x05
};
enum {
    PF_W_READY = 0x01,
    PF_W_HEARTBEAT = 0x02,
    PF_W_REQUEST = 0x03,
    PF_W_REPLY = 0x04,
    PF_W_ERROR = 0x05,
    PF_W_SESSION_END = 0x06,
    PF_W_SESSION_LOST = 0x07,
    PF_W_CANCEL = 0x08,
    PF_W_DISCONNECT = 0x09,
    PF_W_RECYCLE = 0x0A,
    PF_W_BATCH = 0x0B, //  several messages for one peer (pf_batch.h)
};

//  Request flags (REQUEST.flags); reply flags (REPLY.flags).
#define PF_FLAG_IDEMPOTENT 0x01u
#define PF_FLAG_SOFT       0x02u //  soft session affinity
#define PF_FLAG_BROADCAST  0x04u
#define PF_FLAG_BATCH_OK   0x08u //  the client reads BATCH: its answer may come in one
#define PF_REPLY_REBOUND   0x01u //  session was rebound to another bridge

//  A decoded message. Fields not used by a command are zero / empty.
//  Strings are NUL-terminated copies. Frames (body, detail, sessions,
//  bridges) are owned by the struct; pf_msg_reset frees them.
typedef struct {
    int proto;    //  pf_proto_kind_t
    int command;  //  PF_C_* or PF_W_*
    uint64_t request_id;
    uint32_t flags;
    uint32_t timeout_ms;
    uint32_t bridge;
    uint32_t generation;
    uint32_t pid;
    uint32_t capacity;
    uint16_t code;  //  pf_error_t on ERROR
    char service[PF_MAX_NAME + 1];
    char session[PF_MAX_NAME + 1];
    char command_name[PF_MAX_NAME + 1];
    char agent_id[PF_MAX_NAME + 1];
    char host[PF_MAX_NAME + 1];
    char *message;     //  ERROR, DISCONNECT (heap, may be NULL when empty)
    zframe_t *body;    //  C REQUEST/REPLY, W REQUEST/REPLY
    zframe_t *detail;  //  ERROR: msgpack map {type, message, traceback} or empty
    zframe_t *sessions; //  READY: msgpack array of [session, bridge, generation]
    zframe_t *bridges; //  HEARTBEAT: msgpack array of [bridge, generation, state]
    bool has_request_id; //  decode: request_id was read (also after an error)
    //  pf_msg_recv from a ROUTER with PF_MSG_USER_ID: the peer's User-Id
    //  (CurveZMQ: its Z85 public key, broker/pf_zap.h), "" if none.
    char user_id[PF_CURVE_KEY_LEN + 1];
} pf_msg_t;

//  Zeroes a message for first use.
void pf_msg_init (pf_msg_t *self);

//  Frees owned strings and frames and zeroes the message.
void pf_msg_reset (pf_msg_t *self);

//  Decodes *msg_p (starting at the empty delimiter) into self, which it
//  resets first. Destroys *msg_p and nulls it in every case. max_body bounds
//  every opaque frame (0 means PF_DEFAULT_MAX_BODY). Returns PF_OK, or
//  PF_BAD_REQUEST (wrong header, command, frame count, field size...) or
//  PF_TOO_LARGE, with a human-readable reason in err. The request_id is kept
//  in self whenever it could be read (has_request_id says so), so the caller
//  can answer the error; on error self holds only proto, command (when known)
//  and the request id. On success the command's opaque frames are never NULL
//  (possibly 0 bytes) and message is NULL when empty.
int pf_msg_decode (pf_msg_t *self, zmsg_t **msg_p, size_t max_body, char *err, size_t errlen);

//  Encodes self (proto and command say which frames) as a new zmsg that starts
//  with the empty delimiter. Moves the frames out of self (they become NULL);
//  a NULL frame or message encodes as an empty frame. Returns NULL, leaving
//  self untouched, if proto/command is unknown or a string breaks the limits.
zmsg_t *pf_msg_encode (pf_msg_t *self);

//  Receives one whole message from a ZeroMQ socket (a libzmq handle, e.g.
//  from zsock_resolve; a zsock_t * works too) and decodes it into self, which
//  it resets first. With routing_id_p non-NULL (a ROUTER socket) the first
//  frame is the peer's routing id, returned as a new zframe in *routing_id_p
//  that the caller destroys, also on a decode error, so the caller can
//  answer. flags: 0 (wait) or ZMQ_DONTWAIT. max_body as for pf_msg_decode.
//  Always reads every part of a message, also on error, so the next call
//  starts at a message boundary. Returns:
//    PF_OK            self holds the message, as pf_msg_decode would give it.
//    PF_BAD_REQUEST,  exactly as pf_msg_decode would for the same frames: the
//    PF_TOO_LARGE     same err text, self holds only proto, command (when
//                     known) and request_id/has_request_id.
//    -1               nothing was received: errno EAGAIN (ZMQ_DONTWAIT, or a
//                     receive timeout), EINTR, ETERM, ENOTSOCK, EINVAL (self
//                     or socket NULL). Also if the context terminated in the
//                     middle of a message. self is reset, *routing_id_p NULL.
int pf_msg_recv (pf_msg_t *self, void *socket, int flags, zframe_t **routing_id_p,
                 size_t max_body, char *err, size_t errlen);

//  Encodes self and sends it on socket (a libzmq handle or a zsock_t *), the
//  routing_id frame first if not NULL (it is copied, not consumed). flags: 0
//  (wait) or ZMQ_DONTWAIT. The frames are the ones pf_msg_encode builds.
//  Returns 0 when the whole message went out; then the opaque frames (body,
//  detail, sessions, bridges) have moved out of self and are NULL, as after
//  pf_msg_encode, and everything else in self is unchanged.
//  Returns -1 with errno:
//    EINVAL       pf_msg_encode would refuse self (unknown proto/command, a
//                 string over its limit), or socket is NULL. Nothing sent.
//    EAGAIN, EHOSTUNREACH, ETERM, EINTR...  the first part could not be
//                 sent: ZeroMQ sends a message whole or not at all, so
//                 nothing went out.
//  In both cases self is untouched: the opaque frames are still in self and
//  still the caller's (pf_msg_reset frees them, or send again). Only if the
//  context terminates in the middle of a message can a later part fail; the
//  frames already sent are then NULL in self and the rest still there, so
//  pf_msg_reset is right whatever happened.
//  With PF_MSG_KEEP in flags, the opaque frames are sent as shared copies
//  (ZFRAME_REUSE: libzmq shares the bytes of any frame above 33 bytes) and
//  stay in self: a body kept for a possible re-send costs no copy.
#define PF_MSG_KEEP 0x10000
//  For a send function that may batch (pf_outbox_send): the peer reads
//  BATCH (a client that set PF_FLAG_BATCH_OK). pf_msg_send ignores it.
#define PF_MSG_BATCHABLE 0x20000
//  pf_msg_recv with PF_MSG_USER_ID in flags (and a routing id asked for):
//  the peer's User-Id is read into user_id (a metadata lookup per message,
//  so only where CurveZMQ gives one).
#define PF_MSG_USER_ID 0x40000
int pf_msg_send (pf_msg_t *self, void *socket, zframe_t *routing_id, int flags);

//  The packed form of one message, as a BATCH carries it (docs/PROTOCOL.md
//  5.11): the command byte, then every field in table order, integers in
//  their size, a name after a length byte, a message after two, an opaque
//  field after four (big-endian). pf_msg_packed_size returns its size, or 0
//  if self cannot be packed (unknown, a BATCH, a field over its limits).
//  pf_msg_pack writes that many bytes to out.
size_t pf_msg_packed_size (const pf_msg_t *self);
void pf_msg_pack (const pf_msg_t *self, byte *out);

//  Decodes one packed message of protocol proto, size bytes, into self
//  (reset first), with pf_msg_decode's checks and error texts; opaque
//  fields are copied into new frames. Returns PF_OK, or BAD_REQUEST /
//  TOO_LARGE with err set (and, as pf_msg_decode, proto, command and a
//  readable request id kept).
int pf_msg_unpack (pf_msg_t *self, int proto, const byte *data, size_t size, size_t max_body,
                   char *err, size_t errlen);

//  A big-endian integer of size bytes (1..8) at data: read, or written.
uint64_t pf_read_be (const byte *data, size_t size);
void pf_write_be (byte *data, size_t size, uint64_t value);

//  Whether command is a BATCH of proto (PF_C_BATCH, PF_W_BATCH).
bool pf_msg_is_batch (int proto, int command);

//  Name of a command for logs ("REQUEST"), per protocol; "?" if unknown.
const char *pf_msg_command_name (int proto, int command);

//  Whether self is a client REQUEST, in either form (REQUEST, REQUEST_PACKED).
static inline bool pf_msg_is_request (const pf_msg_t *self)
{
    return self->proto == PF_PROTO_C &&
           (self->command == PF_C_REQUEST || self->command == PF_C_REQUEST_PACKED);
}

#endif
