/*  pf_proto — codec for the native client (PFC1) and worker (PFW2) protocols.

    Each command is one row of a table of field descriptors (name, type, where
    it lives in pf_msg_t), written in the order the frames travel. Decoding and
    encoding both walk that row, so the wire format is stated exactly once here,
    and it mirrors the frame tables of docs/PROTOCOL.md line for line.

    The walks do not care where frames come from or go to: decoding reads them
    from a frame source (a zmsg, or a ZeroMQ socket one part at a time) and
    encoding writes them to a frame sink (a zmsg, or a socket). So
    pf_msg_decode and pf_msg_recv apply the same checks with the same error
    texts, and pf_msg_encode and pf_msg_send write the same frames.

    The codec runs for every message the broker routes, so it stays cheap. The
    socket paths exist because CZMQ's zmsg costs a zframe_t (calloc) per frame,
    about 12 per message: pf_msg_recv reads every small frame into one zmq_msg_t
    on the stack and parses it in place, pf_msg_send sends small frames from
    stack buffers (libzmq keeps frames of up to 33 bytes inline, without
    malloc). Only opaque frames (body, detail, sessions, bridges) become
    zframes, moved in and out of the struct instead of copied; strings are
    copied into the struct's fixed arrays, and the only heap allocation of our
    own is a non-empty ERROR/DISCONNECT message.

    Network input is hostile: nothing here asserts, every length is checked
    before it is used, and every failure names the field that broke. */
#include "pf_proto.h"
#include "pf_error.h"
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    FIELD_U16,     //  2-byte big-endian integer
    FIELD_U32,     //  4-byte big-endian integer
    FIELD_U64,     //  8-byte big-endian integer
    FIELD_NAME,    //  string, 1..PF_MAX_NAME bytes, into a char array
    FIELD_OPTNAME, //  string, 0..PF_MAX_NAME bytes, into a char array
    FIELD_MESSAGE, //  string, 0..PF_MAX_MESSAGE bytes, heap (NULL when empty)
    FIELD_OPAQUE,  //  bytes, 0..max_body, frame moved into the struct
} field_type_t;

typedef struct {
    const char *name; //  as in the frame table and in error texts
    field_type_t type;
    size_t offset; //  into pf_msg_t
    bool packed;   //  shares the frame of the field before it (a packed head)
} field_t;

#define PF_PROTO_MAX_FIELDS  8
#define PF_PROTO_HEAD_FRAMES 3 //  delimiter, protocol header, command

typedef struct {
    const char *name;
    int field_count;
    field_t fields[PF_PROTO_MAX_FIELDS];
} command_spec_t;

//  F: a field in a frame of its own (or the first of a packed head);
//  P: a field packed into the same frame as the one before it.
#define F(name, type, member)                                                                      \
    {                                                                                              \
        name, type, offsetof (pf_msg_t, member), false                                             \
    }
#define P(name, type, member)                                                                      \
    {                                                                                              \
        name, type, offsetof (pf_msg_t, member), true                                              \
    }
#define REQUEST_ID   F ("request_id", FIELD_U64, request_id)
#define FLAGS        F ("flags", FIELD_U32, flags)
#define TIMEOUT_MS   F ("timeout_ms", FIELD_U32, timeout_ms)
#define CODE         F ("code", FIELD_U16, code)
#define MESSAGE      F ("message", FIELD_MESSAGE, message)
#define BODY         F ("body", FIELD_OPAQUE, body)
#define DETAIL       F ("detail", FIELD_OPAQUE, detail)
#define COMMAND_NAME F ("command", FIELD_NAME, command_name)
#define P_BRIDGE     P ("bridge", FIELD_U32, bridge)
#define P_GENERATION P ("generation", FIELD_U32, generation)

//  Indexed by command byte; a row with no name is not a command.
static const command_spec_t client_commands[] = {
    [PF_C_REQUEST] = {"REQUEST",
                      7,
                      {REQUEST_ID, F ("service", FIELD_NAME, service),
                       F ("session", FIELD_OPTNAME, session), COMMAND_NAME, TIMEOUT_MS, FLAGS,
                       BODY}},
    [PF_C_REPLY] = {"REPLY", 3, {REQUEST_ID, FLAGS, BODY}},
    [PF_C_ERROR] = {"ERROR", 4, {REQUEST_ID, CODE, MESSAGE, DETAIL}},
    [PF_C_CANCEL] = {"CANCEL", 1, {REQUEST_ID}},
    //  The same request in 5 frames instead of 10 (packed head, as in PFW2).
    //  Answers for one client, packed (common/pf_batch.c); in body.
    [PF_C_BATCH] = {"BATCH", 1, {F ("messages", FIELD_OPAQUE, body)}},
    [PF_C_REQUEST_PACKED] = {"REQUEST_PACKED",
                             7,
                             {REQUEST_ID, P ("timeout_ms", FIELD_U32, timeout_ms),
                              P ("flags", FIELD_U32, flags), P ("service", FIELD_NAME, service),
                              P ("session", FIELD_OPTNAME, session),
                              P ("command", FIELD_NAME, command_name), BODY}},
};

//  PFW2 packs every field but the opaque ones into one frame, the head: a
//  REQUEST is 7 frames instead of 11, a REPLY 5 instead of 8, and each frame
//  is a ZeroMQ message part that every hop (send, I/O thread, receive) pays
//  for. SESSION_END and SESSION_LOST name a session, so theirs may not be
//  empty (unlike REQUEST, where an empty session means "no session").
static const command_spec_t worker_commands[] = {
    [PF_W_READY] = {"READY",
                    6,
                    {F ("agent_id", FIELD_NAME, agent_id), P ("host", FIELD_OPTNAME, host),
                     P ("pid", FIELD_U32, pid), P ("service", FIELD_NAME, service),
                     P ("capacity", FIELD_U32, capacity), F ("sessions", FIELD_OPAQUE, sessions)}},
    [PF_W_HEARTBEAT] = {"HEARTBEAT", 1, {F ("bridges", FIELD_OPAQUE, bridges)}},
    [PF_W_REQUEST] = {"REQUEST",
                      8,
                      {REQUEST_ID, P_BRIDGE, P_GENERATION, P ("timeout_ms", FIELD_U32, timeout_ms),
                       P ("flags", FIELD_U32, flags), P ("session", FIELD_OPTNAME, session),
                       P ("command", FIELD_NAME, command_name), BODY}},
    [PF_W_REPLY] = {"REPLY", 5, {REQUEST_ID, P_BRIDGE, P_GENERATION, P ("flags", FIELD_U32, flags),
                                 BODY}},
    [PF_W_ERROR] = {"ERROR",
                    6,
                    {REQUEST_ID, P_BRIDGE, P_GENERATION, P ("code", FIELD_U16, code),
                     P ("message", FIELD_MESSAGE, message), DETAIL}},
    [PF_W_SESSION_END] = {"SESSION_END",
                          3,
                          {F ("session", FIELD_NAME, session), P_BRIDGE, P_GENERATION}},
    [PF_W_SESSION_LOST] = {"SESSION_LOST",
                           3,
                           {F ("session", FIELD_NAME, session), P_BRIDGE, P_GENERATION}},
    [PF_W_CANCEL] = {"CANCEL", 1, {REQUEST_ID}},
    [PF_W_DISCONNECT] = {"DISCONNECT", 1, {MESSAGE}},
    [PF_W_RECYCLE] = {"RECYCLE", 1, {F ("bridge", FIELD_U32, bridge)}},
    //  The packed messages travel in body (common/pf_batch.c).
    [PF_W_BATCH] = {"BATCH", 1, {F ("messages", FIELD_OPAQUE, body)}},
};

//  MDP/0.1 clients: no command frame; the broker turns a REQUEST into a
//  PFC1 one and its answer back (broker/pf_mdp.c).
#define SERVICE F ("service", FIELD_NAME, service)
#define STATUS  F ("status", FIELD_NAME, command_name)
static const command_spec_t mdp_client_commands[] = {
    [PF_MDP_REQUEST] = {"MDP REQUEST", 3, {SERVICE, COMMAND_NAME, BODY}},
    [PF_MDP_REPLY] = {"MDP REPLY", 3, {SERVICE, STATUS, BODY}},
    [PF_MDP_ERROR] = {"MDP ERROR", 4, {SERVICE, STATUS, MESSAGE, DETAIL}},
    [PF_MDP_MMI] = {"MMI REPLY", 2, {SERVICE, STATUS}},
};

#define EMPTY F ("empty frame", FIELD_OPTNAME, host)
static const command_spec_t mdp_worker_commands[] = {
    [PF_MDPW_READY] = {"MDP READY", 1, {SERVICE}},
    [PF_MDPW_REQUEST] = {"MDP REQUEST", 4, {REQUEST_ID, EMPTY, COMMAND_NAME, BODY}},
    [PF_MDPW_REPLY] = {"MDP REPLY", 3, {REQUEST_ID, EMPTY, BODY}},
    [PF_MDPW_HEARTBEAT] = {"MDP HEARTBEAT", 0, {{0}}},
    [PF_MDPW_DISCONNECT] = {"MDP DISCONNECT", 0, {{0}}},
};

#define COUNT_OF(array) (sizeof (array) / sizeof ((array)[0]))

//  Frames before the fields: delimiter, header and (not MDP) command.
static size_t head_frames (int proto)
{
    return proto == PF_PROTO_MDPC ? PF_PROTO_HEAD_FRAMES - 1 : PF_PROTO_HEAD_FRAMES;
}

static const command_spec_t *command_spec (int proto, int command)
{
    const command_spec_t *table;
    size_t size;
    if (proto == PF_PROTO_C) {
        table = client_commands;
        size = COUNT_OF (client_commands);
    } else if (proto == PF_PROTO_W) {
        table = worker_commands;
        size = COUNT_OF (worker_commands);
    } else if (proto == PF_PROTO_MDPC) {
        table = mdp_client_commands;
        size = COUNT_OF (mdp_client_commands);
    } else if (proto == PF_PROTO_MDPW) {
        table = mdp_worker_commands;
        size = COUNT_OF (mdp_worker_commands);
    } else
        return NULL;
    if (command < 0 || (size_t)command >= size || !table[command].name) return NULL;
    return &table[command];
}

const char *pf_msg_command_name (int proto, int command)
{
    const command_spec_t *spec = command_spec (proto, command);
    return spec ? spec->name : "?";
}

//  The five name arrays sit between the integers and the pointers, so a
//  clear zeroes the two ends and only the first and last byte of each name:
//  zeroing the whole 1.3 KB struct on every message was 10 % of the broker's
//  instructions. (Bytes after a name's terminator are never read.)
_Static_assert (offsetof (pf_msg_t, session) == offsetof (pf_msg_t, service) + PF_MAX_NAME + 1 &&
                    offsetof (pf_msg_t, command_name) ==
                        offsetof (pf_msg_t, session) + PF_MAX_NAME + 1 &&
                    offsetof (pf_msg_t, agent_id) ==
                        offsetof (pf_msg_t, command_name) + PF_MAX_NAME + 1 &&
                    offsetof (pf_msg_t, host) == offsetof (pf_msg_t, agent_id) + PF_MAX_NAME + 1 &&
                    offsetof (pf_msg_t, message) >= offsetof (pf_msg_t, host) + PF_MAX_NAME + 1,
                "pf_msg_t: integers, then the five names, then the pointers");

static void msg_clear (pf_msg_t *self)
{
    memset (self, 0, offsetof (pf_msg_t, service));
    //  The last byte too: a name written up to PF_MAX_NAME bytes without a
    //  terminator of its own is still one.
    char *names[] = {self->service, self->session, self->command_name, self->agent_id, self->host};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        names[i][0] = names[i][PF_MAX_NAME] = '\0';
    memset (&self->message, 0, sizeof (*self) - offsetof (pf_msg_t, message));
}

void pf_msg_init (pf_msg_t *self)
{
    if (self) msg_clear (self);
}

void pf_msg_reset (pf_msg_t *self)
{
    if (!self) return;
    free (self->message);
    zframe_destroy (&self->body);
    zframe_destroy (&self->detail);
    zframe_destroy (&self->sessions);
    zframe_destroy (&self->bridges);
    msg_clear (self);
}

//  --------------------------------------------------------------------------
//  Decoding

static void set_error (char *err, size_t errlen, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void set_error (char *err, size_t errlen, const char *format, ...)
{
    if (!err || errlen == 0) return;
    va_list args;
    va_start (args, format);
    vsnprintf (err, errlen, format, args);
    va_end (args);
}

//  "ok" in err: on every message, so without vsnprintf.
static void set_ok (char *err, size_t errlen)
{
    if (err && errlen >= 3)
        memcpy (err, "ok", 3);
    else if (err && errlen)
        err[0] = '\0';
}

uint64_t pf_read_be (const byte *data, size_t size)
{
    uint64_t value = 0;
    for (size_t index = 0; index < size; index++)
        value = (value << 8) | data[index];
    return value;
}

void pf_write_be (byte *data, size_t size, uint64_t value)
{
    for (size_t index = size; index > 0; index--) {
        data[index - 1] = (byte)(value & 0xFF);
        value >>= 8;
    }
}

static size_t integer_size (field_type_t type)
{
    return type == FIELD_U16 ? 2 : type == FIELD_U32 ? 4 : 8;
}

//  Quotes a short, untrusted byte string for an error text: printable ASCII as
//  is, everything else as \xNN, cut after 16 bytes.
static void quote_bytes (char *out, size_t outlen, const byte *data, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t index = 0; index < size && index < 16 && used + 5 < outlen; index++) {
        byte c = data[index];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            out[used++] = (char)c;
        else
            used += (size_t)snprintf (out + used, outlen - used, "\\x%02X", c);
    }
    if (size > 16 && used + 4 < outlen) {
        memcpy (out + used, "...", 3);
        used += 3;
    }
    out[used] = '\0';
}

//  --------------------------------------------------------------------------
//  Frame sources: where decoding reads frames from

//  One multipart message, read front to back. A frame's bytes from next ()
//  stay valid until the next call on the source.
typedef struct frame_source_s frame_source_t;
struct frame_source_s {
    //  Whether the message has another frame.
    bool (*more) (frame_source_t *self);
    //  Reads the next frame. Returns 0, or -1 if there is none.
    int (*next) (frame_source_t *self, const byte **data, size_t *size);
    //  Takes the next frame whole (opaque fields); NULL if there is none.
    zframe_t *(*take) (frame_source_t *self);
};

//  Over a zmsg: frames are popped (O(1)) and the current one held until the
//  next call, so its bytes stay valid.
typedef struct {
    frame_source_t base;
    zmsg_t *msg;
    zframe_t *current;
} zmsg_source_t;

static bool zmsg_source_more (frame_source_t *base)
{
    return zmsg_size (((zmsg_source_t *)base)->msg) > 0;
}

static int zmsg_source_next (frame_source_t *base, const byte **data, size_t *size)
{
    zmsg_source_t *self = (zmsg_source_t *)base;
    zframe_destroy (&self->current);
    self->current = zmsg_pop (self->msg);
    if (!self->current) return -1;
    *data = zframe_data (self->current);
    *size = zframe_size (self->current);
    return 0;
}

static zframe_t *zmsg_source_take (frame_source_t *base)
{
    zmsg_source_t *self = (zmsg_source_t *)base;
    zframe_destroy (&self->current);
    return zmsg_pop (self->msg);
}

//  Over a socket: small frames land in one zmq_msg_t, reused for every frame
//  (zmq_msg_recv frees what it held), so they cost no allocation of ours.
//  Only the first part may wait or not (flags); the other parts of a message
//  are already there, as ZeroMQ delivers a message whole or not at all.
typedef struct {
    frame_source_t base;
    void *handle;
    int flags; //  for the first part: 0 or ZMQ_DONTWAIT
    zmq_msg_t frame;
    bool more; //  a part is still to be read
    int error; //  errno of a failed read, 0 if none
    char *user_id; //  if not NULL: the next part's User-Id goes there (41 bytes)
} socket_source_t;

static bool socket_source_more (frame_source_t *base)
{
    return ((socket_source_t *)base)->more;
}

static int socket_source_next (frame_source_t *base, const byte **data, size_t *size)
{
    socket_source_t *self = (socket_source_t *)base;
    if (!self->more) return -1;
    if (zmq_msg_recv (&self->frame, self->handle, self->flags) == -1) {
        self->error = errno;
        self->more = false;
        return -1;
    }
    self->flags = 0;
    self->more = zmq_msg_more (&self->frame);
    if (self->user_id) {
        const char *user_id = zmq_msg_gets (&self->frame, "User-Id");
        if (user_id && strlen (user_id) <= PF_CURVE_KEY_LEN) strcpy (self->user_id, user_id);
        self->user_id = NULL;
    }
    *data = zmq_msg_data (&self->frame);
    *size = zmq_msg_size (&self->frame);
    return 0;
}

static zframe_t *socket_source_take (frame_source_t *base)
{
    socket_source_t *self = (socket_source_t *)base;
    if (!self->more) return NULL;
    //  Never the first part (the head comes first), so this does not block.
    zframe_t *frame = zframe_recv (self->handle);
    if (!frame) {
        self->error = errno;
        self->more = false;
        return NULL;
    }
    self->more = zframe_more (frame);
    return frame;
}

//  Reads and drops what is left of the message; returns how many frames.
static size_t drain (frame_source_t *source)
{
    const byte *data;
    size_t size, frames = 0;
    while (source->more (source) && source->next (source, &data, &size) == 0)
        frames++;
    return frames;
}

//  --------------------------------------------------------------------------
//  Decoding

//  Parses a non-opaque field from size bytes at data into self.
static int decode_value (pf_msg_t *self, const field_t *field, const byte *data, size_t size,
                         char *err, size_t errlen)
{
    char *target = (char *)self + field->offset;
    switch (field->type) {
    case FIELD_U16:
    case FIELD_U32:
    case FIELD_U64: {
        size_t expected = integer_size (field->type);
        if (size != expected) {
            set_error (err, errlen, "%s: expected %zu bytes, got %zu", field->name, expected, size);
            return PF_BAD_REQUEST;
        }
        uint64_t value = pf_read_be (data, size);
        if (field->type == FIELD_U16)
            *(uint16_t *)target = (uint16_t)value;
        else if (field->type == FIELD_U32)
            *(uint32_t *)target = (uint32_t)value;
        else
            *(uint64_t *)target = value;
        //  Known from here on, so a malformed request can still be answered.
        if (field->offset == offsetof (pf_msg_t, request_id)) self->has_request_id = true;
        return PF_OK;
    }
    case FIELD_NAME:
    case FIELD_OPTNAME:
    case FIELD_MESSAGE: {
        size_t limit = field->type == FIELD_MESSAGE ? PF_MAX_MESSAGE : PF_MAX_NAME;
        if (size == 0 && field->type == FIELD_NAME) {
            set_error (err, errlen, "%s: empty", field->name);
            return PF_BAD_REQUEST;
        }
        if (size > limit) {
            set_error (err, errlen, "%s: %zu bytes exceeds limit of %zu", field->name, size, limit);
            return PF_BAD_REQUEST;
        }
        if (size > 0 && memchr (data, '\0', size)) {
            set_error (err, errlen, "%s: contains a NUL byte", field->name);
            return PF_BAD_REQUEST;
        }
        if (field->type == FIELD_MESSAGE) {
            char **message_p = (char **)target;
            if (size > 0) {
                *message_p = malloc (size + 1);
                if (!*message_p) {
                    set_error (err, errlen, "%s: out of memory", field->name);
                    return PF_INTERNAL;
                }
                memcpy (*message_p, data, size);
                (*message_p)[size] = '\0';
            }
        } else {
            if (size > 0) memcpy (target, data, size);
            target[size] = '\0';
        }
        return PF_OK;
    }
    case FIELD_OPAQUE:
        break;
    }
    return PF_INTERNAL;
}

//  Decodes one field from the source's next frame: an opaque frame is moved
//  into self, anything else parsed in place. Returns PF_OK or an error code.
static int decode_field (pf_msg_t *self, const field_t *field, frame_source_t *source,
                         size_t max_body, char *err, size_t errlen)
{
    if (field->type == FIELD_OPAQUE) {
        zframe_t *frame = source->take (source);
        if (!frame) {
            set_error (err, errlen, "%s: missing frame", field->name);
            return PF_BAD_REQUEST;
        }
        size_t size = zframe_size (frame);
        if (size > max_body) {
            set_error (err, errlen, "%s: %zu bytes exceeds limit of %zu", field->name, size,
                       max_body);
            zframe_destroy (&frame);
            return PF_TOO_LARGE;
        }
        *(zframe_t **)((char *)self + field->offset) = frame;
        return PF_OK;
    }
    const byte *data;
    size_t size;
    if (source->next (source, &data, &size)) {
        set_error (err, errlen, "%s: missing frame", field->name);
        return PF_BAD_REQUEST;
    }
    return decode_value (self, field, data, size, err, errlen);
}

//  The index after the last field that travels in the frame of field index.
static int frame_end (const command_spec_t *spec, int index)
{
    int end = index + 1;
    while (end < spec->field_count && spec->fields[end].packed)
        end++;
    return end;
}

//  In a packed head a string carries its length first: one byte for a name,
//  two (big-endian) for a message; integers have their fixed size. In a
//  packed message (BATCH) an opaque field carries four.
static size_t length_prefix (field_type_t type)
{
    return type == FIELD_OPAQUE    ? 4
           : type == FIELD_MESSAGE ? 2
           : type == FIELD_NAME || type == FIELD_OPTNAME ? 1
                                                          : 0;
}

//  Decodes fields [index, end) packed at *data_p (a head, or the fields of a
//  batched message; `what` names it in errors), moving *data_p and *size_p
//  past them: what is left in *size_p the caller judges. Opaque fields (only
//  in batched messages) are copied into new frames, held to max_body.
static int unpack_fields (pf_msg_t *self, const command_spec_t *spec, int index, int end,
                          const byte **data_p, size_t *size_p, size_t max_body, const char *what,
                          char *err, size_t errlen)
{
    const byte *data = *data_p;
    size_t size = *size_p;
    int rc = PF_OK;
    for (; index < end && rc == PF_OK; index++) {
        const field_t *field = &spec->fields[index];
        size_t prefix = length_prefix (field->type);
        if (size < prefix) {
            set_error (err, errlen, "%s: %s ends before its length", field->name, what);
            return PF_BAD_REQUEST;
        }
        size_t length = prefix ? (size_t)pf_read_be (data, prefix) : integer_size (field->type);
        data += prefix;
        size -= prefix;
        if (size < length) {
            set_error (err, errlen, "%s: %s ends %zu bytes short", field->name, what,
                       length - size);
            return PF_BAD_REQUEST;
        }
        if (field->type != FIELD_OPAQUE)
            rc = decode_value (self, field, data, length, err, errlen);
        else if (length > max_body) {
            set_error (err, errlen, "%s: %zu bytes exceeds limit of %zu", field->name, length,
                       max_body);
            rc = PF_TOO_LARGE;
        } else {
            zframe_t *frame = zframe_new (data, length);
            if (!frame) {
                set_error (err, errlen, "%s: out of memory", field->name);
                rc = PF_INTERNAL;
            }
            *(zframe_t **)((char *)self + field->offset) = frame;
        }
        data += length;
        size -= length;
    }
    *data_p = data;
    *size_p = size;
    return rc;
}

//  Decodes fields [index, end) from the source's next frame, a packed head.
static int decode_packed (pf_msg_t *self, const command_spec_t *spec, int index, int end,
                          frame_source_t *source, char *err, size_t errlen)
{
    const byte *data;
    size_t size;
    if (source->next (source, &data, &size)) {
        set_error (err, errlen, "%s: missing frame", spec->fields[index].name);
        return PF_BAD_REQUEST;
    }
    int rc = unpack_fields (self, spec, index, end, &data, &size, SIZE_MAX, "head", err, errlen);
    if (rc == PF_OK && size) {
        set_error (err, errlen, "%s: %zu bytes after the head's last field",
                   spec->fields[end - 1].name, size);
        return PF_BAD_REQUEST;
    }
    return rc;
}

//  How many frames the command's fields take.
static size_t field_frames (const command_spec_t *spec)
{
    size_t frames = 0;
    for (int index = 0; index < spec->field_count; index++)
        frames += !spec->fields[index].packed;
    return frames;
}

//  Reads and checks the three head frames (delimiter, protocol header,
//  command). Sets self->proto and self->command as soon as each is known.
static const command_spec_t *decode_head (pf_msg_t *self, frame_source_t *source, char *err,
                                          size_t errlen)
{
    const byte *data;
    size_t size;
    if (source->next (source, &data, &size)) {
        set_error (err, errlen, "empty message");
        return NULL;
    }
    if (size != 0) {
        set_error (err, errlen, "missing empty delimiter (frame 0 has %zu bytes)", size);
        return NULL;
    }
    if (source->next (source, &data, &size)) {
        set_error (err, errlen, "missing protocol header");
        return NULL;
    }
    if (size == 4 && memcmp (data, PF_PROTO_CLIENT, 4) == 0)
        self->proto = PF_PROTO_C;
    else if (size == 4 && memcmp (data, PF_PROTO_WORKER, 4) == 0)
        self->proto = PF_PROTO_W;
    else if (size == 6 && memcmp (data, PF_PROTO_MDP_CLIENT, 6) == 0) {
        //  No command frame: an MDP client sends requests only.
        self->proto = PF_PROTO_MDPC;
        self->command = PF_MDP_REQUEST;
        return command_spec (self->proto, self->command);
    } else if (size == 6 && memcmp (data, PF_PROTO_MDP_WORKER, 6) == 0)
        self->proto = PF_PROTO_MDPW;
    else {
        char quoted[80];
        quote_bytes (quoted, sizeof (quoted), data, size);
        set_error (err, errlen, "unsupported protocol header \"%s\"", quoted);
        return NULL;
    }
    const char *proto_name = self->proto == PF_PROTO_C   ? PF_PROTO_CLIENT
                             : self->proto == PF_PROTO_W ? PF_PROTO_WORKER
                                                         : PF_PROTO_MDP_WORKER;
    if (source->next (source, &data, &size)) {
        set_error (err, errlen, "%s: missing command frame", proto_name);
        return NULL;
    }
    if (size != 1) {
        set_error (err, errlen, "%s: command frame: expected 1 byte, got %zu", proto_name, size);
        return NULL;
    }
    int command = data[0];
    const command_spec_t *spec = command_spec (self->proto, command);
    if (!spec) {
        set_error (err, errlen, "%s: unknown command 0x%02X", proto_name, (unsigned)command);
        return NULL;
    }
    self->command = command;
    return spec;
}

//  Decodes one whole message from source into self (already reset) and reads
//  every frame of it, also after an error. The frame count is known only at
//  the end, yet it outranks field errors (a message with the wrong number of
//  frames says so, whatever its fields): after the first bad field the rest
//  are only counted. The request id comes first wherever there is one, so it
//  is read before the count is known and a malformed request can be answered.
static int decode_frames (pf_msg_t *self, frame_source_t *source, size_t max_body, char *err,
                          size_t errlen)
{
    const command_spec_t *spec = decode_head (self, source, err, errlen);
    if (!spec) {
        drain (source);
        return PF_BAD_REQUEST;
    }
    int rc = PF_OK;
    size_t frames = head_frames (self->proto);
    //  A BATCH holds many messages, each held to max_body when it is read.
    if (pf_msg_is_batch (self->proto, self->command) && max_body < PF_BATCH_MAX_FRAME)
        max_body = PF_BATCH_MAX_FRAME;
    for (int index = 0; index < spec->field_count && source->more (source);) {
        int end = frame_end (spec, index);
        frames++;
        if (rc != PF_OK) {
            const byte *data;
            size_t size;
            source->next (source, &data, &size);
        } else if (end > index + 1)
            rc = decode_packed (self, spec, index, end, source, err, errlen);
        else
            rc = decode_field (self, &spec->fields[index], source, max_body, err, errlen);
        index = end;
    }
    frames += drain (source);
    size_t expected = field_frames (spec) + head_frames (self->proto);
    //  An MDP request without a body frame has no arguments.
    if (self->proto == PF_PROTO_MDPC && frames + 1 == expected) {
        frames++;
        if (rc == PF_OK) self->body = zframe_new (NULL, 0);
    }
    if (frames != expected) {
        if (self->proto == PF_PROTO_MDPC)
            set_error (err, errlen, "MDP request: expected SERVICE COMMAND [ARGS] after MDPC01, "
                       "got %zu frames", frames - head_frames (self->proto));
        else
            set_error (err, errlen, "%s: expected %zu frames, got %zu", spec->name, expected,
                       frames);
        rc = PF_BAD_REQUEST;
    }
    return rc;
}

//  After a failed decode, keeps only what lets the caller answer the error.
static void keep_answerable (pf_msg_t *self)
{
    int proto = self->proto, command = self->command;
    uint64_t request_id = self->request_id;
    bool has_request_id = self->has_request_id;
    //  An MDP client is answered by service (it sends no request id).
    char service[PF_MAX_NAME + 1];
    memcpy (service, self->service, sizeof service);
    pf_msg_reset (self);
    memcpy (self->service, service, sizeof service);
    self->proto = proto;
    self->command = command;
    self->request_id = request_id;
    self->has_request_id = has_request_id;
}

int pf_msg_decode (pf_msg_t *self, zmsg_t **msg_p, size_t max_body, char *err, size_t errlen)
{
    zmsg_t *msg = msg_p ? *msg_p : NULL;
    if (msg_p) *msg_p = NULL;
    set_ok (err, errlen);
    if (!self) {
        zmsg_destroy (&msg);
        set_error (err, errlen, "no message struct");
        return PF_BAD_REQUEST;
    }
    pf_msg_reset (self);
    if (!msg) {
        set_error (err, errlen, "no message");
        return PF_BAD_REQUEST;
    }
    if (max_body == 0) max_body = PF_DEFAULT_MAX_BODY;

    zmsg_source_t source = {
        .base = {zmsg_source_more, zmsg_source_next, zmsg_source_take},
        .msg = msg,
    };
    int rc = decode_frames (self, &source.base, max_body, err, errlen);
    zframe_destroy (&source.current);
    zmsg_destroy (&msg);
    if (rc != PF_OK) keep_answerable (self);
    return rc;
}

int pf_msg_recv (pf_msg_t *self, void *socket, int flags, zframe_t **routing_id_p, size_t max_body,
                 char *err, size_t errlen)
{
    if (routing_id_p) *routing_id_p = NULL;
    set_ok (err, errlen);
    if (!self || !socket) {
        set_error (err, errlen, "no message struct or socket");
        errno = EINVAL;
        return -1;
    }
    pf_msg_reset (self);
    if (max_body == 0) max_body = PF_DEFAULT_MAX_BODY;

    socket_source_t source = {
        .base = {socket_source_more, socket_source_next, socket_source_take},
        .handle = zsock_resolve (socket),
        .flags = flags & ZMQ_DONTWAIT,
        .more = true,
    };
    zmq_msg_init (&source.frame);
    int rc;
    if (routing_id_p) {
        const byte *data;
        size_t size;
        if (source.base.next (&source.base, &data, &size) == 0) {
            *routing_id_p = zframe_new (data, size);
            //  The peer's properties come with the parts it sent (not always
            //  with the routing id the ROUTER adds): read at the next part.
            if (flags & PF_MSG_USER_ID) source.user_id = self->user_id;
        }
    }
    if (source.error)
        rc = -1;
    else {
        rc = decode_frames (self, &source.base, max_body, err, errlen);
        if (rc != PF_OK) keep_answerable (self);
    }
    zmq_msg_close (&source.frame);
    //  A read failed: before the first part (nothing there, interrupted) or,
    //  only as the context terminates, inside a message.
    if (source.error) {
        pf_msg_reset (self);
        if (routing_id_p) zframe_destroy (routing_id_p);
        set_error (err, errlen, "receive failed: %s", zmq_strerror (source.error));
        errno = source.error;
        return -1;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Frame sinks: where encoding writes frames to

typedef struct frame_sink_s frame_sink_t;
struct frame_sink_s {
    //  Adds a frame holding a copy of size bytes at data; more says that
    //  another frame follows. Returns 0 or -1.
    int (*put) (frame_sink_t *self, const void *data, size_t size, bool more);
    //  Adds *frame_p (not NULL) without copying: on success *frame_p is NULL,
    //  on failure the frame is left there. Returns 0 or -1.
    int (*move) (frame_sink_t *self, zframe_t **frame_p, bool more);
};

typedef struct {
    frame_sink_t base;
    zmsg_t *msg;
} zmsg_sink_t;

static int zmsg_sink_put (frame_sink_t *base, const void *data, size_t size, bool more)
{
    (void)more;
    return zmsg_addmem (((zmsg_sink_t *)base)->msg, data, size);
}

static int zmsg_sink_move (frame_sink_t *base, zframe_t **frame_p, bool more)
{
    (void)more;
    return zmsg_append (((zmsg_sink_t *)base)->msg, frame_p);
}

//  Over a socket: small frames are copied by zmq_send from our stack buffers
//  (inline in libzmq up to 33 bytes); opaque frames are handed over as they
//  are, so their bytes are never copied.
typedef struct {
    frame_sink_t base;
    void *handle;
    int flags; //  0 or ZMQ_DONTWAIT
    bool keep; //  PF_MSG_KEEP: opaque frames are shared, not moved
} socket_sink_t;

static int socket_sink_put (frame_sink_t *base, const void *data, size_t size, bool more)
{
    socket_sink_t *self = (socket_sink_t *)base;
    //  zmq_send copies size bytes from data; never hand it NULL.
    if (zmq_send (self->handle, size ? data : "", size, (more ? ZMQ_SNDMORE : 0) | self->flags) ==
        -1)
        return -1;
    return 0;
}

static int socket_sink_move (frame_sink_t *base, zframe_t **frame_p, bool more)
{
    socket_sink_t *self = (socket_sink_t *)base;
    int flags = (more ? ZFRAME_MORE : 0) | (self->flags & ZMQ_DONTWAIT ? ZFRAME_DONTWAIT : 0)
              | (self->keep ? ZFRAME_REUSE : 0);
    return zframe_send (frame_p, self->handle, flags);
}

//  --------------------------------------------------------------------------
//  Encoding

//  Checks a field of self against its limits before anything is built, so a
//  refused encode leaves self untouched.
static bool field_fits (const pf_msg_t *self, const field_t *field)
{
    const char *target = (const char *)self + field->offset;
    size_t size;
    switch (field->type) {
    case FIELD_NAME:
    case FIELD_OPTNAME:
        //  The array holds PF_MAX_NAME + 1 bytes: no terminator means too long.
        size = strnlen (target, PF_MAX_NAME + 1);
        return size <= PF_MAX_NAME && (size > 0 || field->type == FIELD_OPTNAME);
    case FIELD_MESSAGE: {
        const char *message = *(char *const *)target;
        return !message || strnlen (message, PF_MAX_MESSAGE + 1) <= PF_MAX_MESSAGE;
    }
    default:
        return true;
    }
}

//  The command's row if self can be encoded; NULL if its proto/command is
//  unknown or a field breaks its limits.
static const command_spec_t *encodable (const pf_msg_t *self)
{
    if (!self) return NULL;
    const command_spec_t *spec = command_spec (self->proto, self->command);
    if (!spec) return NULL;
    for (int index = 0; index < spec->field_count; index++)
        if (!field_fits (self, &spec->fields[index])) return NULL;
    return spec;
}

//  The integer in a non-opaque integer field of self.
static uint64_t integer_value (const pf_msg_t *self, const field_t *field)
{
    const char *target = (const char *)self + field->offset;
    return field->type == FIELD_U16   ? *(const uint16_t *)target
           : field->type == FIELD_U32 ? *(const uint32_t *)target
                                      : *(const uint64_t *)target;
}

//  The bytes of a string field of self (checked by encodable).
static const char *string_value (const pf_msg_t *self, const field_t *field, size_t *size)
{
    const char *target = (const char *)self + field->offset;
    if (field->type == FIELD_MESSAGE) target = *(char *const *)target;
    *size = target ? strlen (target) : 0;
    return target;
}

static int encode_field (frame_sink_t *sink, pf_msg_t *self, const field_t *field, bool more)
{
    size_t size;
    switch (field->type) {
    case FIELD_U16:
    case FIELD_U32:
    case FIELD_U64: {
        byte data[8];
        size = integer_size (field->type);
        pf_write_be (data, size, integer_value (self, field));
        return sink->put (sink, data, size, more);
    }
    case FIELD_NAME:
    case FIELD_OPTNAME:
    case FIELD_MESSAGE: {
        const char *string = string_value (self, field, &size);
        return sink->put (sink, string, size, more);
    }
    case FIELD_OPAQUE: {
        zframe_t **frame_p = (zframe_t **)((char *)self + field->offset);
        if (!*frame_p) return sink->put (sink, NULL, 0, more);
        return sink->move (sink, frame_p, more);
    }
    }
    return -1;
}

//  The bytes of a non-integer field of self, opaque ones included.
static const void *field_bytes (const pf_msg_t *self, const field_t *field, size_t *size)
{
    if (field->type != FIELD_OPAQUE) return string_value (self, field, size);
    zframe_t *frame = *(zframe_t *const *)((const char *)self + field->offset);
    *size = frame ? zframe_size (frame) : 0;
    return frame ? zframe_data (frame) : NULL;
}

bool pf_msg_is_batch (int proto, int command)
{
    return command == (proto == PF_PROTO_C ? PF_C_BATCH : PF_W_BATCH);
}

//  The packed size of fields [index, end) of self (a packed head, or every
//  field of a batched message): integers in their size, the others after
//  their length (length_prefix). 0 if an opaque field is beyond a u32.
static size_t packed_size (const pf_msg_t *self, const command_spec_t *spec, int index, int end)
{
    size_t total = 0;
    for (int k = index; k < end; k++) {
        const field_t *field = &spec->fields[k];
        size_t size = integer_size (field->type);
        if (length_prefix (field->type)) field_bytes (self, field, &size);
        if (size > UINT32_MAX) return 0;
        total += length_prefix (field->type) + size;
    }
    return total;
}

//  Writes fields [index, end) of self packed at out; returns the end.
static byte *pack_fields (const pf_msg_t *self, const command_spec_t *spec, int index, int end,
                          byte *out)
{
    for (int k = index; k < end; k++) {
        const field_t *field = &spec->fields[k];
        size_t prefix = length_prefix (field->type), size;
        if (prefix) {
            const void *bytes = field_bytes (self, field, &size);
            pf_write_be (out, prefix, size);
            if (size) memcpy (out + prefix, bytes, size);
        } else {
            size = integer_size (field->type);
            pf_write_be (out, size, integer_value (self, field));
        }
        out += prefix + size;
    }
    return out;
}

//  Writes fields [index, end) of self as one packed head frame; a head holds
//  up to 8 + 4 x 4 + 2 x 256 bytes, or a message, which may need the heap.
static int encode_packed (frame_sink_t *sink, pf_msg_t *self, const command_spec_t *spec,
                          int index, int end, bool more)
{
    size_t total = packed_size (self, spec, index, end);
    byte stack[1024];
    byte *head = total <= sizeof stack ? stack : malloc (total);
    if (!head) return -1;
    //  (A head always has two fields or more, so something is written.)
    int rc = pack_fields (self, spec, index, end, head) > head
                 ? sink->put (sink, head, total, more)
                 : -1;
    if (head != stack) free (head);
    return rc;
}

//  Writes the frames of self (checked by encodable) to sink, from the empty
//  delimiter on. The opaque frames come after the head, so when the first
//  frame fails nothing of self has moved yet.
static int encode_frames (pf_msg_t *self, const command_spec_t *spec, frame_sink_t *sink)
{
    byte command = (byte)self->command;
    const char *header = self->proto == PF_PROTO_C      ? PF_PROTO_CLIENT
                         : self->proto == PF_PROTO_W    ? PF_PROTO_WORKER
                         : self->proto == PF_PROTO_MDPC ? PF_PROTO_MDP_CLIENT
                                                        : PF_PROTO_MDP_WORKER;
    if (sink->put (sink, NULL, 0, true) || sink->put (sink, header, strlen (header), true) ||
        (self->proto != PF_PROTO_MDPC && sink->put (sink, &command, 1, spec->field_count > 0)))
        return -1;
    for (int index = 0; index < spec->field_count;) {
        int end = frame_end (spec, index);
        bool more = end < spec->field_count;
        if (end > index + 1 ? encode_packed (sink, self, spec, index, end, more)
                            : encode_field (sink, self, &spec->fields[index], more))
            return -1;
        index = end;
    }
    return 0;
}

zmsg_t *pf_msg_encode (pf_msg_t *self)
{
    const command_spec_t *spec = encodable (self);
    if (!spec) return NULL;
    zmsg_sink_t sink = {.base = {zmsg_sink_put, zmsg_sink_move}, .msg = zmsg_new ()};
    if (!sink.msg) return NULL;
    if (encode_frames (self, spec, &sink.base)) {
        zmsg_destroy (&sink.msg);
        return NULL;
    }
    return sink.msg;
}

int pf_msg_send (pf_msg_t *self, void *socket, zframe_t *routing_id, int flags)
{
    const command_spec_t *spec = encodable (self);
    if (!spec || !socket) {
        errno = EINVAL;
        return -1;
    }
    socket_sink_t sink = {
        .base = {socket_sink_put, socket_sink_move},
        .handle = zsock_resolve (socket),
        .flags = flags & ZMQ_DONTWAIT,
        .keep = (flags & PF_MSG_KEEP) != 0,
    };
    if (routing_id &&
        sink.base.put (&sink.base, zframe_data (routing_id), zframe_size (routing_id), true))
        return -1;
    return encode_frames (self, spec, &sink.base);
}

//  --------------------------------------------------------------------------
//  Packed messages (the entries of a PFW2 BATCH)

size_t pf_msg_packed_size (const pf_msg_t *self)
{
    const command_spec_t *spec = encodable (self);
    if (!spec || pf_msg_is_batch (self->proto, self->command)) return 0;
    size_t size = packed_size (self, spec, 0, spec->field_count);
    return size || spec->field_count == 0 ? 1 + size : 0;
}

void pf_msg_pack (const pf_msg_t *self, byte *out)
{
    const command_spec_t *spec = command_spec (self->proto, self->command);
    *out = (byte)self->command;
    pack_fields (self, spec, 0, spec->field_count, out + 1);
}

int pf_msg_unpack (pf_msg_t *self, int proto, const byte *data, size_t size, size_t max_body,
                   char *err, size_t errlen)
{
    set_ok (err, errlen);
    pf_msg_reset (self);
    if (max_body == 0) max_body = PF_DEFAULT_MAX_BODY;
    self->proto = proto;
    const command_spec_t *spec = size ? command_spec (proto, data[0]) : NULL;
    if (!spec || pf_msg_is_batch (proto, data[0])) {
        if (size)
            set_error (err, errlen, "batched message: unknown command 0x%02X", data[0]);
        else
            set_error (err, errlen, "batched message: empty");
        keep_answerable (self);
        return PF_BAD_REQUEST;
    }
    self->command = data[0];
    data++;
    size--;
    int rc = unpack_fields (self, spec, 0, spec->field_count, &data, &size, max_body, "message",
                            err, errlen);
    if (rc == PF_OK && size) {
        set_error (err, errlen, "%s: %zu bytes after the last field", spec->name, size);
        rc = PF_BAD_REQUEST;
    }
    if (rc != PF_OK) keep_answerable (self);
    return rc;
}
