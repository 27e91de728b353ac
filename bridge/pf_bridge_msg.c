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

//  Reads an n-byte big-endian length at data[at]; -1 if it runs past size.
static int s_length (const uint8_t *data, size_t size, size_t at, int n, uint64_t *value)
{
    if (at + (size_t)n > size) return -1;
    *value = 0;
    for (int index = 0; index < n; index++)
        *value = (*value << 8) | data[at + (size_t)index];
    return 0;
}

//  Moves *offset past one msgpack object (containers included) without
//  decoding it: no allocation, no recursion. Returns 0, or -1 if the bytes
//  are not msgpack (0xC1) or the object runs past size.
static int s_skip (const uint8_t *data, size_t size, size_t *offset)
{
    size_t at = *offset;
    for (uint64_t pending = 1; pending > 0; pending--) {
        if (at >= size) return -1;
        uint8_t type = data[at++];
        uint64_t length = 0; //  bytes of payload to skip
        uint64_t items = 0;  //  objects the container holds
        int width = 0;       //  bytes of the length that follows the type byte
        if (type <= 0x7F || type >= 0xE0 || type == 0xC0 || type == 0xC2 || type == 0xC3)
            ;
        else if (type <= 0x8F)
            items = 2u * (type & 0x0F);
        else if (type <= 0x9F)
            items = type & 0x0F;
        else if (type <= 0xBF)
            length = type & 0x1F;
        else
            switch (type) {
            case 0xC4: case 0xC7: case 0xD9: width = 1; break; //  bin8, ext8, str8
            case 0xC5: case 0xC8: case 0xDA: case 0xDC: case 0xDE: width = 2; break;
            case 0xC6: case 0xC9: case 0xDB: case 0xDD: case 0xDF: width = 4; break;
            case 0xCC: case 0xD0: length = 1; break;
            case 0xCD: case 0xD1: length = 2; break;
            case 0xCA: case 0xCE: case 0xD2: length = 4; break;
            case 0xCB: case 0xCF: case 0xD3: length = 8; break;
            case 0xD4: length = 2; break; //  fixext: type byte + 1, 2, 4, 8, 16
            case 0xD5: length = 3; break;
            case 0xD6: length = 5; break;
            case 0xD7: length = 9; break;
            case 0xD8: length = 17; break;
            default: return -1; //  0xC1: never used
            }
        if (width) {
            uint64_t value;
            if (s_length (data, size, at, width, &value)) return -1;
            at += (size_t)width;
            if (type == 0xDC || type == 0xDD)
                items = value;
            else if (type == 0xDE || type == 0xDF)
                items = 2 * value;
            else
                length = value + (type >= 0xC7 && type <= 0xC9); //  ext: its type byte
        }
        if (length > size - at) return -1;
        at += (size_t)length;
        //  Each item takes at least a byte: a count above what is left is a lie.
        if (items > size - at) return -1;
        pending += items;
    }
    *offset = at;
    return 0;
}

//  Finds the value of key in the msgpack map that is all of data/size:
//  sets *start and *end to its bytes. Returns 0, or -1 if the key is absent.
static int s_find_value (const uint8_t *data, size_t size, const char *key, size_t *start,
                         size_t *end)
{
    size_t key_size = strlen (key), at = 1;
    uint64_t pairs = 0;
    if (size == 0) return -1;
    if (data[0] >= 0x80 && data[0] <= 0x8F)
        pairs = data[0] & 0x0F;
    else if ((data[0] == 0xDE && s_length (data, size, 1, 2, &pairs) == 0) ||
             (data[0] == 0xDF && s_length (data, size, 1, 4, &pairs) == 0))
        at += data[0] == 0xDE ? 2 : 4;
    else
        return -1;
    for (uint64_t pair = 0; pair < pairs; pair++) {
        size_t key_at = at;
        if (s_skip (data, size, &at)) return -1;
        size_t value_at = at;
        if (s_skip (data, size, &at)) return -1;
        //  A str or bin key holding exactly key's bytes: the header is what
        //  precedes the last key_size bytes, one of the forms for that size.
        size_t header = value_at - key_at - key_size;
        if (value_at - key_at < key_size ||
            memcmp (data + value_at - key_size, key, key_size) != 0)
            continue;
        uint8_t type = data[key_at];
        if ((header == 1 && type == (0xA0 | key_size) && key_size < 32) ||
            (header == 2 && (type == 0xD9 || type == 0xC4)) ||
            (header == 3 && (type == 0xDA || type == 0xC5)) ||
            (header == 5 && (type == 0xDB || type == 0xC6))) {
            *start = value_at;
            *end = at;
            return 0;
        }
    }
    return -1;
}

uint8_t *pf_bridge_msg_request (uint64_t id, const char *cmd, const void *args, size_t args_size,
                                const char *session, int64_t deadline_ms, bool releasable,
                                size_t *size_p)
{
    //  Sized once for the whole map: the args (up to 64 MiB) are never
    //  copied again by a growing buffer.
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    buffer.alloc = 96 + args_size + (cmd ? strlen (cmd) : 0) + (session ? strlen (session) : 0);
    buffer.data = malloc (buffer.alloc);
    if (!buffer.data) return NULL;
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
    //  Skipped, not unpacked: the same structural check without building
    //  the object tree (an allocation per request).
    size_t offset = 0;
    return size == 0 || (s_skip (args, size, &offset) == 0 && offset == size);
}

void pf_bridge_msg_reset (pf_bridge_msg_t *self)
{
    if (!self) return;
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

static int s_decode_reply (pf_bridge_msg_t *self, const uint8_t *data, size_t size,
                           const msgpack_object *map, const msgpack_object *id,
                           const msgpack_object *ok, char *err, size_t errlen)
{
    if (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_fail (err, errlen, "reply 'id' is not a non-negative integer");
    if (ok->type != MSGPACK_OBJECT_BOOLEAN)
        return s_fail (err, errlen, "reply 'ok' is not a boolean");
    self->kind = PF_BRIDGE_MSG_REPLY;
    self->id = id->via.u64;
    self->ok = ok->via.boolean;
    if (self->ok) {
        //  The result's own bytes, not a re-encoding: no copy, no allocation.
        static const uint8_t nil = 0xC0;
        size_t start, end;
        if (s_find_value (data, size, "result", &start, &end) == 0) {
            self->result = data + start;
            self->result_size = end - start;
        } else {
            self->result = &nil;
            self->result_size = 1;
        }
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

static int s_decode_map (pf_bridge_msg_t *self, const uint8_t *data, size_t size,
                         const msgpack_object *map, char *err, size_t errlen)
{
    const msgpack_object *id = s_lookup (map, "id");
    const msgpack_object *ok = s_lookup (map, "ok");
    if (id && ok) return s_decode_reply (self, data, size, map, id, ok, err, errlen);
    const msgpack_object *event = s_lookup (map, "event");
    if (!event) return s_fail (err, errlen, "map is neither a reply (id, ok) nor an event");
    if (s_text_equals (event, "ready")) return s_decode_ready (self, map, err, errlen);
    if (s_text_equals (event, "beat")) return s_decode_beat (self, map, err, errlen);
    if (!s_is_text (event)) return s_fail (err, errlen, "'event' is not a string");
    size_t length;
    const char *name = s_text (event, &length);
    return s_fail (err, errlen, "unknown event '%.*s'", length > 64 ? 64 : (int)length, name);
}

//  The frame nearly every reply is, {id: uint, ok: true, result: any} with
//  fixstr keys in any order, read with the skipper: no object tree, no
//  allocation. Returns true if it was that and self holds it; false for
//  anything else (an error, an event, another encoding, a fault), which the
//  full decode then reads and judges.
static bool s_decode_ok_reply (pf_bridge_msg_t *self, const uint8_t *data, size_t size)
{
    if (data[0] < 0x80 || data[0] > 0x8F) return false;
    size_t at = 1, pairs = data[0] & 0x0F;
    bool has_id = false, has_ok = false, ok = false; //  the first of a key counts
    uint64_t id = 0;
    size_t result_at = 0, result_end = 0;
    for (size_t pair = 0; pair < pairs; pair++) {
        if (at >= size || data[at] < 0xA0 || data[at] > 0xBF) return false;
        size_t key_size = data[at] & 0x1F;
        const uint8_t *key = data + at + 1;
        size_t value_at = at + 1 + key_size;
        at = value_at;
        if (value_at > size || s_skip (data, size, &at)) return false;
        uint8_t type = data[value_at];
        if (key_size == 2 && memcmp (key, "id", 2) == 0 && !has_id) {
            if (type <= 0x7F)
                id = type;
            else if (type >= 0xCC && type <= 0xCF)
                s_length (data, size, value_at + 1, 1 << (type - 0xCC), &id);
            else
                return false;
            has_id = true;
        } else if (key_size == 2 && memcmp (key, "ok", 2) == 0 && !has_ok) {
            ok = type == 0xC3;
            has_ok = true;
        }
        else if (key_size == 6 && memcmp (key, "result", 6) == 0 && !result_end) {
            result_at = value_at;
            result_end = at;
        } else if (key_size == 5 && memcmp (key, "event", 5) == 0)
            return false;
    }
    if (at != size || !has_id || !ok) return false;
    static const uint8_t nil = 0xC0;
    self->kind = PF_BRIDGE_MSG_REPLY;
    self->id = id;
    self->ok = true;
    self->result = result_end ? data + result_at : &nil;
    self->result_size = result_end ? result_end - result_at : 1;
    return true;
}

int pf_bridge_msg_decode (pf_bridge_msg_t *self, const uint8_t *data, size_t size, char *err,
                          size_t errlen)
{
    memset (self, 0, sizeof *self);
    if (err && errlen) err[0] = 0;
    if (size == 0) return s_fail (err, errlen, "empty frame");
    if (s_decode_ok_reply (self, data, size)) return 0;

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
        result = s_decode_map (self, data, size, &unpacked.data, err, errlen);
    msgpack_unpacked_destroy (&unpacked);
    if (result != 0) pf_bridge_msg_reset (self);
    return result;
}
