/*  pf_bridge_msg — encoding requests for, and decoding frames from, a bridge.

    Requests copy the client's args bytes verbatim after the "args" key: the
    agent never decodes a request body, so packing it again would only cost a
    parse and a copy. Decoding is strict about the fields the agent acts on
    (id, ok, error, event, busy...) because a bridge that sends something else
    is broken and gets replaced; it is lenient about everything else (unknown
    keys, a missing optional field, nil for an optional field). */
#include "pf_bridge_msg.h"
#include "pf_error.h"
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_pack_cstr (msgpack_packer *packer, const char *text)
{
    size_t length = strlen (text);
    return msgpack_pack_str (packer, length) | msgpack_pack_str_body (packer, text, length);
}

uint8_t *pf_bridge_msg_request (uint64_t id, const char *cmd, const void *args, size_t args_size,
                                const char *session, int64_t deadline_ms, bool releasable,
                                size_t *size_p)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);

    //  Every pack call returns the sbuffer's -1 on allocation failure.
    int rc = msgpack_pack_map (&packer, 4 + (deadline_ms > 0) + releasable);
    rc |= s_pack_cstr (&packer, "id");
    rc |= msgpack_pack_uint64 (&packer, id);
    rc |= s_pack_cstr (&packer, "cmd");
    rc |= s_pack_cstr (&packer, cmd ? cmd : "");
    rc |= s_pack_cstr (&packer, "args");
    if (args_size == 0)
        rc |= msgpack_pack_nil (&packer);
    else
        rc |= msgpack_sbuffer_write (&buffer, args, args_size);
    rc |= s_pack_cstr (&packer, "session");
    if (session && *session)
        rc |= s_pack_cstr (&packer, session);
    else
        rc |= msgpack_pack_nil (&packer);
    if (deadline_ms > 0) {
        rc |= s_pack_cstr (&packer, "deadline");
        rc |= msgpack_pack_int64 (&packer, deadline_ms);
    }
    if (releasable) {
        rc |= s_pack_cstr (&packer, "releasable");
        rc |= msgpack_pack_true (&packer);
    }
    if (rc != 0 || !buffer.data) {
        msgpack_sbuffer_destroy (&buffer);
        return NULL;
    }
    *size_p = buffer.size;
    return (uint8_t *)msgpack_sbuffer_release (&buffer);
}

bool pf_bridge_msg_args_valid (const void *args, size_t size)
{
    if (size == 0) return true;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (&unpacked, args, size, &offset);
    msgpack_unpacked_destroy (&unpacked);
    return rc == MSGPACK_UNPACK_SUCCESS && offset == size;
}

void pf_bridge_msg_reset (pf_bridge_msg_t *self)
{
    if (!self) return;
    free (self->result);
    free (self->error_type);
    free (self->error_message);
    free (self->detail);
    free (self->version);
    memset (self, 0, sizeof *self);
}

//  --------------------------------------------------------------------------
//  Decoding helpers

static int s_fail (char *err, size_t errlen, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int s_fail (char *err, size_t errlen, const char *format, ...)
{
    if (err && errlen) {
        va_list args;
        va_start (args, format);
        vsnprintf (err, errlen, format, args);
        va_end (args);
    }
    return -1;
}

static bool s_is_text (const msgpack_object *object)
{
    return object->type == MSGPACK_OBJECT_STR || object->type == MSGPACK_OBJECT_BIN;
}

//  Text bytes of a str or bin object (both have the same layout in msgpack-c).
static const char *s_text (const msgpack_object *object, size_t *size_p)
{
    if (object->type == MSGPACK_OBJECT_STR) {
        *size_p = object->via.str.size;
        return object->via.str.ptr;
    }
    *size_p = object->via.bin.size;
    return object->via.bin.ptr;
}

static bool s_text_equals (const msgpack_object *object, const char *text)
{
    if (!s_is_text (object)) return false;
    size_t size;
    const char *bytes = s_text (object, &size);
    return size == strlen (text) && memcmp (bytes, text, size) == 0;
}

//  Value for key in a map, or NULL. Keys may be str or bin; the first match wins.
static const msgpack_object *s_lookup (const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (s_text_equals (&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

static bool s_is_nil (const msgpack_object *object)
{
    return !object || object->type == MSGPACK_OBJECT_NIL;
}

//  Copies a str/bin into a NUL-terminated malloc'd string. NULL on failure.
static char *s_strdup_text (const msgpack_object *object)
{
    size_t size;
    const char *bytes = s_text (object, &size);
    char *copy = malloc (size + 1);
    if (copy) {
        memcpy (copy, bytes, size);
        copy[size] = 0;
    }
    return copy;
}

//  Optional string field: absent or nil leaves *out NULL; anything but
//  str/bin is an error.
static int s_optional_text (const msgpack_object *map, const char *key, char **out, char *err,
                            size_t errlen)
{
    const msgpack_object *value = s_lookup (map, key);
    if (s_is_nil (value)) return 0;
    if (!s_is_text (value)) return s_fail (err, errlen, "'%s' is not a string", key);
    *out = s_strdup_text (value);
    return *out ? 0 : s_fail (err, errlen, "out of memory");
}

//  Optional non-negative count: absent or nil is 0. Floats are accepted
//  (Python computes elapsed times as floats) and truncated.
static int s_optional_count (const msgpack_object *map, const char *key, uint64_t *out, char *err,
                             size_t errlen)
{
    const msgpack_object *value = s_lookup (map, key);
    *out = 0;
    if (s_is_nil (value)) return 0;
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = value->via.u64;
        return 0;
    }
    if ((value->type == MSGPACK_OBJECT_FLOAT64 || value->type == MSGPACK_OBJECT_FLOAT32) &&
        value->via.f64 >= 0 && value->via.f64 < 1.8e19) {
        *out = (uint64_t)value->via.f64;
        return 0;
    }
    return s_fail (err, errlen, "'%s' is not a non-negative number", key);
}

//  Re-encodes one object into a malloc'd buffer.
static int s_reencode (const msgpack_object *object, uint8_t **data_p, size_t *size_p)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    if (msgpack_pack_object (&packer, object ? *object : nil) != 0 || !buffer.data) {
        msgpack_sbuffer_destroy (&buffer);
        return -1;
    }
    *size_p = buffer.size;
    *data_p = (uint8_t *)msgpack_sbuffer_release (&buffer);
    return 0;
}

//  --------------------------------------------------------------------------
//  One function per message kind, validation first

static int s_decode_reply (pf_bridge_msg_t *self, const msgpack_object *map,
                           const msgpack_object *id, const msgpack_object *ok, char *err,
                           size_t errlen)
{
    if (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_fail (err, errlen, "reply 'id' is not a non-negative integer");
    if (ok->type != MSGPACK_OBJECT_BOOLEAN)
        return s_fail (err, errlen, "reply 'ok' is not a boolean");
    self->kind = PF_BRIDGE_MSG_REPLY;
    self->id = id->via.u64;
    self->ok = ok->via.boolean;
    if (self->ok) {
        if (s_reencode (s_lookup (map, "result"), &self->result, &self->result_size))
            return s_fail (err, errlen, "out of memory");
        return 0;
    }
    const msgpack_object *error = s_lookup (map, "error");
    if (!error) return s_fail (err, errlen, "error reply without 'error'");
    if (error->type != MSGPACK_OBJECT_MAP)
        return s_fail (err, errlen, "error reply 'error' is not a map");

    char *code = NULL;
    if (s_optional_text (error, "code", &code, err, errlen)) return -1;
    self->code = pf_error_from_name (code);
    free (code);
    if (self->code <= PF_OK) //  missing, unknown, or "OK" (nonsense for an error)
        self->code = PF_PYTHON_ERROR;

    if (s_optional_text (error, "type", &self->error_type, err, errlen) ||
        s_optional_text (error, "message", &self->error_message, err, errlen))
        return -1;
    if (!self->error_message) {
        self->error_message =
            strdup (self->error_type ? self->error_type : "error without message");
        if (!self->error_message) return s_fail (err, errlen, "out of memory");
    }
    if (s_reencode (error, &self->detail, &self->detail_size))
        return s_fail (err, errlen, "out of memory");
    return 0;
}

static int s_decode_ready (pf_bridge_msg_t *self, const msgpack_object *map, char *err,
                           size_t errlen)
{
    const msgpack_object *id = s_lookup (map, "id");
    if (!s_is_nil (id) && id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_fail (err, errlen, "ready 'id' is not a non-negative integer");
    const msgpack_object *pid = s_lookup (map, "pid");
    if (!s_is_nil (pid) &&
        (pid->type != MSGPACK_OBJECT_POSITIVE_INTEGER || pid->via.u64 > UINT32_MAX))
        return s_fail (err, errlen, "ready 'pid' is not a process id");
    self->kind = PF_BRIDGE_MSG_READY;
    self->id = s_is_nil (id) ? 0 : id->via.u64;
    self->pid = s_is_nil (pid) ? 0 : (uint32_t)pid->via.u64;
    return s_optional_text (map, "version", &self->version, err, errlen);
}

static int s_decode_beat (pf_bridge_msg_t *self, const msgpack_object *map, char *err,
                          size_t errlen)
{
    const msgpack_object *busy = s_lookup (map, "busy");
    if (!s_is_nil (busy) && busy->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_fail (err, errlen, "beat 'busy' is neither nil nor a request id");
    self->kind = PF_BRIDGE_MSG_BEAT;
    self->busy = !s_is_nil (busy);
    self->busy_id = self->busy ? busy->via.u64 : 0;
    if (s_optional_count (map, "elapsed_ms", &self->elapsed_ms, err, errlen) ||
        s_optional_count (map, "rss_kb", &self->rss_kb, err, errlen))
        return -1;
    return 0;
}

static int s_decode_map (pf_bridge_msg_t *self, const msgpack_object *map, char *err, size_t errlen)
{
    const msgpack_object *id = s_lookup (map, "id");
    const msgpack_object *ok = s_lookup (map, "ok");
    if (id && ok) return s_decode_reply (self, map, id, ok, err, errlen);
    const msgpack_object *event = s_lookup (map, "event");
    if (!event) return s_fail (err, errlen, "map is neither a reply (id, ok) nor an event");
    if (s_text_equals (event, "ready")) return s_decode_ready (self, map, err, errlen);
    if (s_text_equals (event, "beat")) return s_decode_beat (self, map, err, errlen);
    if (!s_is_text (event)) return s_fail (err, errlen, "'event' is not a string");
    size_t size;
    const char *name = s_text (event, &size);
    return s_fail (err, errlen, "unknown event '%.*s'", size > 64 ? 64 : (int)size, name);
}

int pf_bridge_msg_decode (pf_bridge_msg_t *self, const uint8_t *data, size_t size, char *err,
                          size_t errlen)
{
    memset (self, 0, sizeof *self);
    if (err && errlen) err[0] = 0;
    if (size == 0) return s_fail (err, errlen, "empty frame");

    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (&unpacked, (const char *)data, size, &offset);
    int result;
    if (rc == MSGPACK_UNPACK_CONTINUE)
        result = s_fail (err, errlen, "truncated msgpack (%zu bytes)", size);
    else if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        result = s_fail (err, errlen, "out of memory decoding %zu bytes", size);
    else if (rc != MSGPACK_UNPACK_SUCCESS)
        result = s_fail (err, errlen, "not msgpack");
    else if (offset != size)
        result = s_fail (err, errlen, "%zu trailing bytes after the map", size - offset);
    else if (unpacked.data.type != MSGPACK_OBJECT_MAP)
        result = s_fail (err, errlen, "not a map");
    else
        result = s_decode_map (self, &unpacked.data, err, errlen);
    msgpack_unpacked_destroy (&unpacked);
    if (result != 0) pf_bridge_msg_reset (self);
    return result;
}
