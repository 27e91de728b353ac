/*  pf_proto — codec for the native client (PFC1) and worker (PFW1) protocols.

    Each command is one row of a table of field descriptors (name, type, where
    it lives in pf_msg_t), written in the order the frames travel. Decoding and
    encoding both walk that row, so the wire format is stated exactly once here,
    and it mirrors the frame tables of docs/PROTOCOL.md line for line.

    The codec runs for every message the broker routes, so it stays cheap:
    frames are popped off the zmsg (O(1)), opaque frames (body, detail,
    sessions, bridges) are moved into the struct instead of copied, strings
    are copied into the struct's fixed arrays, and the only heap allocation of
    our own is a non-empty ERROR/DISCONNECT message.

    Network input is hostile: nothing here asserts, every length is checked
    before it is used, and every failure names the field that broke. */
#include "pf_proto.h"
#include "pf_error.h"
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
} field_t;

#define PF_PROTO_MAX_FIELDS  8
#define PF_PROTO_HEAD_FRAMES 3 //  delimiter, protocol header, command

typedef struct {
    const char *name;
    int field_count;
    field_t fields[PF_PROTO_MAX_FIELDS];
} command_spec_t;

#define F(name, type, member)                                                                      \
    {                                                                                              \
        name, type, offsetof (pf_msg_t, member)                                                    \
    }
#define REQUEST_ID   F ("request_id", FIELD_U64, request_id)
#define BRIDGE       F ("bridge", FIELD_U32, bridge)
#define GENERATION   F ("generation", FIELD_U32, generation)
#define FLAGS        F ("flags", FIELD_U32, flags)
#define TIMEOUT_MS   F ("timeout_ms", FIELD_U32, timeout_ms)
#define CODE         F ("code", FIELD_U16, code)
#define MESSAGE      F ("message", FIELD_MESSAGE, message)
#define BODY         F ("body", FIELD_OPAQUE, body)
#define DETAIL       F ("detail", FIELD_OPAQUE, detail)
#define COMMAND_NAME F ("command", FIELD_NAME, command_name)

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
};

//  SESSION_END and SESSION_LOST name a session, so theirs may not be empty
//  (unlike REQUEST, where an empty session means "no session").
static const command_spec_t worker_commands[] = {
    [PF_W_READY] = {"READY",
                    6,
                    {F ("agent_id", FIELD_NAME, agent_id), F ("host", FIELD_OPTNAME, host),
                     F ("pid", FIELD_U32, pid), F ("service", FIELD_NAME, service),
                     F ("capacity", FIELD_U32, capacity), F ("sessions", FIELD_OPAQUE, sessions)}},
    [PF_W_HEARTBEAT] = {"HEARTBEAT", 1, {F ("bridges", FIELD_OPAQUE, bridges)}},
    [PF_W_REQUEST] = {"REQUEST",
                      8,
                      {REQUEST_ID, F ("session", FIELD_OPTNAME, session), COMMAND_NAME, BRIDGE,
                       GENERATION, TIMEOUT_MS, FLAGS, BODY}},
    [PF_W_REPLY] = {"REPLY", 5, {REQUEST_ID, BRIDGE, GENERATION, FLAGS, BODY}},
    [PF_W_ERROR] = {"ERROR", 6, {REQUEST_ID, BRIDGE, GENERATION, CODE, MESSAGE, DETAIL}},
    [PF_W_SESSION_END] = {"SESSION_END",
                          3,
                          {F ("session", FIELD_NAME, session), BRIDGE, GENERATION}},
    [PF_W_SESSION_LOST] = {"SESSION_LOST",
                           3,
                           {F ("session", FIELD_NAME, session), BRIDGE, GENERATION}},
    [PF_W_CANCEL] = {"CANCEL", 1, {REQUEST_ID}},
    [PF_W_DISCONNECT] = {"DISCONNECT", 1, {MESSAGE}},
    [PF_W_RECYCLE] = {"RECYCLE", 1, {BRIDGE}},
};

#define COUNT_OF(array) (sizeof (array) / sizeof ((array)[0]))

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

void pf_msg_init (pf_msg_t *self)
{
    if (self) memset (self, 0, sizeof (*self));
}

void pf_msg_reset (pf_msg_t *self)
{
    if (!self) return;
    free (self->message);
    zframe_destroy (&self->body);
    zframe_destroy (&self->detail);
    zframe_destroy (&self->sessions);
    zframe_destroy (&self->bridges);
    memset (self, 0, sizeof (*self));
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

static uint64_t read_be (const byte *data, size_t size)
{
    uint64_t value = 0;
    for (size_t index = 0; index < size; index++)
        value = (value << 8) | data[index];
    return value;
}

static void write_be (byte *data, size_t size, uint64_t value)
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

//  Decodes one field from its frame. Takes ownership of the frame: either moves
//  it into self (opaque fields) or destroys it. Returns PF_OK or an error code.
static int decode_field (pf_msg_t *self, const field_t *field, zframe_t **frame_p, size_t max_body,
                         char *err, size_t errlen)
{
    zframe_t *frame = *frame_p;
    const byte *data = zframe_data (frame);
    size_t size = zframe_size (frame);
    char *target = (char *)self + field->offset;
    int rc = PF_OK;

    switch (field->type) {
    case FIELD_U16:
    case FIELD_U32:
    case FIELD_U64: {
        size_t expected = integer_size (field->type);
        if (size != expected) {
            set_error (err, errlen, "%s: expected %zu bytes, got %zu", field->name, expected, size);
            rc = PF_BAD_REQUEST;
            break;
        }
        uint64_t value = read_be (data, size);
        if (field->type == FIELD_U16)
            *(uint16_t *)target = (uint16_t)value;
        else if (field->type == FIELD_U32)
            *(uint32_t *)target = (uint32_t)value;
        else
            *(uint64_t *)target = value;
        break;
    }
    case FIELD_NAME:
    case FIELD_OPTNAME:
    case FIELD_MESSAGE: {
        size_t limit = field->type == FIELD_MESSAGE ? PF_MAX_MESSAGE : PF_MAX_NAME;
        if (size == 0 && field->type == FIELD_NAME) {
            set_error (err, errlen, "%s: empty", field->name);
            rc = PF_BAD_REQUEST;
            break;
        }
        if (size > limit) {
            set_error (err, errlen, "%s: %zu bytes exceeds limit of %zu", field->name, size, limit);
            rc = PF_BAD_REQUEST;
            break;
        }
        if (size > 0 && memchr (data, '\0', size)) {
            set_error (err, errlen, "%s: contains a NUL byte", field->name);
            rc = PF_BAD_REQUEST;
            break;
        }
        if (field->type == FIELD_MESSAGE) {
            char **message_p = (char **)target;
            if (size > 0) {
                *message_p = malloc (size + 1);
                if (!*message_p) {
                    set_error (err, errlen, "%s: out of memory", field->name);
                    rc = PF_INTERNAL;
                    break;
                }
                memcpy (*message_p, data, size);
                (*message_p)[size] = '\0';
            }
        } else {
            if (size > 0) memcpy (target, data, size);
            target[size] = '\0';
        }
        break;
    }
    case FIELD_OPAQUE:
        if (size > max_body) {
            set_error (err, errlen, "%s: %zu bytes exceeds limit of %zu", field->name, size,
                       max_body);
            rc = PF_TOO_LARGE;
            break;
        }
        *(zframe_t **)target = frame;
        *frame_p = NULL;
        return PF_OK;
    }
    zframe_destroy (frame_p);
    return rc;
}

//  Validates the three head frames (delimiter, protocol header, command) and
//  pops them. Sets self->proto and self->command as soon as each is known.
static const command_spec_t *decode_head (pf_msg_t *self, zmsg_t *msg, char *err, size_t errlen)
{
    size_t frames = zmsg_size (msg);
    if (frames == 0) {
        set_error (err, errlen, "empty message");
        return NULL;
    }
    zframe_t *frame = zmsg_pop (msg);
    size_t size = zframe_size (frame);
    zframe_destroy (&frame);
    if (size != 0) {
        set_error (err, errlen, "missing empty delimiter (frame 0 has %zu bytes)", size);
        return NULL;
    }
    if (frames < 2) {
        set_error (err, errlen, "missing protocol header");
        return NULL;
    }
    frame = zmsg_pop (msg);
    size = zframe_size (frame);
    if (size == 4 && memcmp (zframe_data (frame), PF_PROTO_CLIENT, 4) == 0)
        self->proto = PF_PROTO_C;
    else if (size == 4 && memcmp (zframe_data (frame), PF_PROTO_WORKER, 4) == 0)
        self->proto = PF_PROTO_W;
    else {
        char quoted[80];
        quote_bytes (quoted, sizeof (quoted), zframe_data (frame), size);
        set_error (err, errlen, "unsupported protocol header \"%s\"", quoted);
        zframe_destroy (&frame);
        return NULL;
    }
    zframe_destroy (&frame);
    const char *proto_name = self->proto == PF_PROTO_C ? PF_PROTO_CLIENT : PF_PROTO_WORKER;
    if (frames < 3) {
        set_error (err, errlen, "%s: missing command frame", proto_name);
        return NULL;
    }
    frame = zmsg_pop (msg);
    size = zframe_size (frame);
    int command = size == 1 ? zframe_data (frame)[0] : -1;
    zframe_destroy (&frame);
    if (size != 1) {
        set_error (err, errlen, "%s: command frame: expected 1 byte, got %zu", proto_name, size);
        return NULL;
    }
    const command_spec_t *spec = command_spec (self->proto, command);
    if (!spec) {
        set_error (err, errlen, "%s: unknown command 0x%02X", proto_name, (unsigned)command);
        return NULL;
    }
    self->command = command;
    return spec;
}

int pf_msg_decode (pf_msg_t *self, zmsg_t **msg_p, size_t max_body, char *err, size_t errlen)
{
    zmsg_t *msg = msg_p ? *msg_p : NULL;
    if (msg_p) *msg_p = NULL;
    set_error (err, errlen, "ok");
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

    int rc = PF_BAD_REQUEST;
    const command_spec_t *spec = decode_head (self, msg, err, errlen);
    if (!spec) goto done;

    //  The request id comes first wherever there is one: read it before the
    //  frame count is checked, so a malformed REQUEST can still be answered.
    zframe_t *first = zmsg_first (msg);
    if (spec->fields[0].type == FIELD_U64 && first && zframe_size (first) == 8) {
        self->request_id = read_be (zframe_data (first), 8);
        self->has_request_id = true;
    }
    size_t frames = zmsg_size (msg) + PF_PROTO_HEAD_FRAMES;
    size_t expected = (size_t)spec->field_count + PF_PROTO_HEAD_FRAMES;
    if (frames != expected) {
        set_error (err, errlen, "%s: expected %zu frames, got %zu", spec->name, expected, frames);
        goto done;
    }
    for (int index = 0; index < spec->field_count; index++) {
        zframe_t *frame = zmsg_pop (msg);
        rc = decode_field (self, &spec->fields[index], &frame, max_body, err, errlen);
        if (rc != PF_OK) goto done;
    }
    rc = PF_OK;

done:
    zmsg_destroy (&msg);
    if (rc != PF_OK) {
        //  Keep only what lets the caller answer the error; drop partial fields.
        int proto = self->proto, command = self->command;
        uint64_t request_id = self->request_id;
        bool has_request_id = self->has_request_id;
        pf_msg_reset (self);
        self->proto = proto;
        self->command = command;
        self->request_id = request_id;
        self->has_request_id = has_request_id;
    }
    return rc;
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

static int encode_field (zmsg_t *msg, pf_msg_t *self, const field_t *field)
{
    char *target = (char *)self + field->offset;
    switch (field->type) {
    case FIELD_U16:
    case FIELD_U32:
    case FIELD_U64: {
        byte data[8];
        size_t size = integer_size (field->type);
        uint64_t value = field->type == FIELD_U16   ? *(uint16_t *)target
                         : field->type == FIELD_U32 ? *(uint32_t *)target
                                                    : *(uint64_t *)target;
        write_be (data, size, value);
        return zmsg_addmem (msg, data, size);
    }
    case FIELD_NAME:
    case FIELD_OPTNAME:
        return zmsg_addmem (msg, target, strlen (target));
    case FIELD_MESSAGE: {
        const char *message = *(char **)target;
        return zmsg_addmem (msg, message, message ? strlen (message) : 0);
    }
    case FIELD_OPAQUE: {
        zframe_t **frame_p = (zframe_t **)target;
        if (!*frame_p) return zmsg_addmem (msg, NULL, 0);
        return zmsg_append (msg, frame_p);
    }
    }
    return -1;
}

zmsg_t *pf_msg_encode (pf_msg_t *self)
{
    if (!self) return NULL;
    const command_spec_t *spec = command_spec (self->proto, self->command);
    if (!spec) return NULL;
    for (int index = 0; index < spec->field_count; index++)
        if (!field_fits (self, &spec->fields[index])) return NULL;

    zmsg_t *msg = zmsg_new ();
    if (!msg) return NULL;
    byte command = (byte)self->command;
    const char *header = self->proto == PF_PROTO_C ? PF_PROTO_CLIENT : PF_PROTO_WORKER;
    if (zmsg_addmem (msg, NULL, 0) || zmsg_addmem (msg, header, 4) ||
        zmsg_addmem (msg, &command, 1))
        goto failed;
    for (int index = 0; index < spec->field_count; index++)
        if (encode_field (msg, self, &spec->fields[index])) goto failed;
    return msg;

failed:
    zmsg_destroy (&msg);
    return NULL;
}
