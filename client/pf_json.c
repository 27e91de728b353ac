/*  pf_json — JSON text <-> msgpack bytes (see pf_json.h for the mapping).

    JSON -> msgpack parses with jansson and packs with msgpack-c.
    msgpack -> JSON is a direct, bounds-checked walk over the bytes that writes
    JSON text as it goes. It does not go through msgpack-c's unpacker nor
    jansson's encoder, on purpose: msgpack-c's C unpacker refuses nesting
    deeper than 32 levels (a compile-time constant), and jansson integers are
    int64, so neither could print every valid msgpack document. */
#include "pf_json.h"

#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------------
//  A growable text buffer. Out of memory is sticky and checked once at the end.

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
    bool failed;
} text_t;

static void text_append (text_t *self, const void *bytes, size_t size)
{
    if (self->failed) return;
    if (self->size + size + 1 > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 64;
        while (capacity < self->size + size + 1)
            capacity *= 2;
        char *data = realloc (self->data, capacity);
        if (!data) {
            self->failed = true;
            return;
        }
        self->data = data;
        self->capacity = capacity;
    }
    memcpy (self->data + self->size, bytes, size);
    self->size += size;
    self->data[self->size] = 0;
}

static void text_puts (text_t *self, const char *string)
{
    text_append (self, string, strlen (string));
}

static void text_printf (text_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void text_printf (text_t *self, const char *format, ...)
{
    char line[64];
    va_list args;
    va_start (args, format);
    int size = vsnprintf (line, sizeof line, format, args);
    va_end (args);
    if (size < 0 || (size_t)size >= sizeof line)
        self->failed = true; //  only used for numbers, which always fit
    else
        text_append (self, line, (size_t)size);
}

//  ---------------------------------------------------------------------------
//  Base64 (RFC 4648, with padding).

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void text_base64 (text_t *self, const uint8_t *data, size_t size)
{
    char quad[4];
    for (size_t i = 0; i < size; i += 3) {
        uint32_t group = (uint32_t)data[i] << 16;
        if (i + 1 < size) group |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < size) group |= data[i + 2];
        quad[0] = base64_alphabet[(group >> 18) & 63];
        quad[1] = base64_alphabet[(group >> 12) & 63];
        quad[2] = i + 1 < size ? base64_alphabet[(group >> 6) & 63] : '=';
        quad[3] = i + 2 < size ? base64_alphabet[group & 63] : '=';
        text_append (self, quad, 4);
    }
}

static int base64_value (char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

//  Strict decode: length a multiple of 4, padding only at the end. Returns a
//  malloc'd buffer (at least 1 byte so that empty input is not NULL), or NULL
//  if the text is not base64 or memory ran out.
static uint8_t *base64_decode (const char *text, size_t size, size_t *decoded_size_p)
{
    if (size % 4 != 0) return NULL;
    size_t padding = 0;
    if (size >= 1 && text[size - 1] == '=') padding++;
    if (size >= 2 && text[size - 2] == '=') padding++;
    uint8_t *data = malloc (size / 4 * 3 + 1);
    if (!data) return NULL;
    size_t out = 0;
    for (size_t i = 0; i < size; i += 4) {
        uint32_t group = 0;
        for (size_t j = 0; j < 4; j++) {
            bool is_padding = i + j >= size - padding;
            int value = is_padding ? 0 : base64_value (text[i + j]);
            if (value < 0 || (is_padding && text[i + j] != '=')) {
                free (data);
                return NULL;
            }
            group = (group << 6) | (uint32_t)value;
        }
        data[out++] = (uint8_t)(group >> 16);
        data[out++] = (uint8_t)(group >> 8);
        data[out++] = (uint8_t)group;
    }
    *decoded_size_p = out - padding;
    return data;
}

//  ---------------------------------------------------------------------------
//  JSON string literals.

//  Length of the valid UTF-8 sequence at text (at most size bytes), or 0 if
//  the bytes there are not valid UTF-8 (overlongs and surrogates included).
static size_t utf8_sequence_length (const uint8_t *text, size_t size)
{
    uint8_t lead = text[0];
    size_t length;
    uint8_t low = 0x80, high = 0xBF; //  range of the second byte
    if (lead < 0x80)
        return 1;
    else if (lead >= 0xC2 && lead <= 0xDF)
        length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        if (lead == 0xE0) low = 0xA0;
        if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        if (lead == 0xF0) low = 0x90;
        if (lead == 0xF4) high = 0x8F;
    } else
        return 0;
    if (size < length) return 0;
    if (text[1] < low || text[1] > high) return 0;
    for (size_t i = 2; i < length; i++)
        if (text[i] < 0x80 || text[i] > 0xBF) return 0;
    return length;
}

static void text_quote (text_t *self, const uint8_t *text, size_t size)
{
    text_append (self, "\"", 1);
    size_t start = 0; //  start of the run of bytes copied verbatim
    size_t i = 0;
    while (i < size) {
        uint8_t c = text[i];
        const char *escape = NULL;
        char code[8];
        size_t length = 1;
        if (c == '"')
            escape = "\\\"";
        else if (c == '\\')
            escape = "\\\\";
        else if (c == '\n')
            escape = "\\n";
        else if (c == '\r')
            escape = "\\r";
        else if (c == '\t')
            escape = "\\t";
        else if (c == '\b')
            escape = "\\b";
        else if (c == '\f')
            escape = "\\f";
        else if (c < 0x20) {
            snprintf (code, sizeof code, "\\u%04x", c);
            escape = code;
        } else if (c >= 0x80) {
            length = utf8_sequence_length (text + i, size - i);
            if (length == 0) {
                escape = "\xEF\xBF\xBD"; //  U+FFFD REPLACEMENT CHARACTER
                length = 1;
            }
        }
        if (escape) {
            text_append (self, text + start, i - start);
            text_puts (self, escape);
            start = i + length;
        }
        i += length;
    }
    text_append (self, text + start, size - start);
    text_append (self, "\"", 1);
}

char *pf_json_quote (const char *text, size_t size)
{
    text_t out = {0};
    text_quote (&out, (const uint8_t *)text, size);
    if (out.failed) {
        free (out.data);
        return NULL;
    }
    return out.data;
}

//  Shortest text that reads back as the same double, always with a '.' or an
//  exponent so it reads back as a real, not an integer.
static void text_double (text_t *self, double value, bool single)
{
    if (!isfinite (value)) {
        text_puts (self, "null");
        return;
    }
    char number[40];
    for (int precision = single ? 6 : 15; precision <= 17; precision++) {
        snprintf (number, sizeof number, "%.*g", precision, value);
        double back = strtod (number, NULL);
        if (single ? (float)back == (float)value : back == value) break;
    }
    if (!strpbrk (number, ".eE")) strcat (number, ".0");
    text_puts (self, number);
}

//  ---------------------------------------------------------------------------
//  msgpack -> JSON.

typedef struct {
    const uint8_t *cursor;
    const uint8_t *end;
    char *err;
    size_t errlen;
    bool failed;
} reader_t;

static void reader_fail (reader_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void reader_fail (reader_t *self, const char *format, ...)
{
    if (self->failed) return;
    self->failed = true;
    if (self->err && self->errlen) {
        va_list args;
        va_start (args, format);
        vsnprintf (self->err, self->errlen, format, args);
        va_end (args);
    }
}

//  Reads an n-byte big-endian unsigned integer; 0 with failed set if short.
static uint64_t reader_uint (reader_t *self, size_t n)
{
    if ((size_t)(self->end - self->cursor) < n) {
        reader_fail (self, "msgpack truncated: %zu bytes missing",
                     n - (size_t)(self->end - self->cursor));
        return 0;
    }
    uint64_t value = 0;
    for (size_t i = 0; i < n; i++)
        value = (value << 8) | self->cursor[i];
    self->cursor += n;
    return value;
}

//  Returns a pointer to the next n bytes and skips them; NULL if short.
static const uint8_t *reader_bytes (reader_t *self, uint64_t n)
{
    if ((uint64_t)(self->end - self->cursor) < n) {
        reader_fail (self, "msgpack truncated: %llu bytes announced, %zu left",
                     (unsigned long long)n, (size_t)(self->end - self->cursor));
        return NULL;
    }
    const uint8_t *bytes = self->cursor;
    self->cursor += n;
    return bytes;
}

static void emit_value (reader_t *self, text_t *out, int depth);

static void emit_array (reader_t *self, text_t *out, uint64_t count, int depth)
{
    //  Each element takes at least one byte: a count beyond the bytes left
    //  is a lie, and rejecting it early stops a huge loop on garbage.
    if (count > (uint64_t)(self->end - self->cursor)) {
        reader_fail (self, "msgpack truncated: array of %llu elements", (unsigned long long)count);
        return;
    }
    text_append (out, "[", 1);
    for (uint64_t i = 0; i < count && !self->failed; i++) {
        if (i) text_append (out, ",", 1);
        emit_value (self, out, depth + 1);
    }
    text_append (out, "]", 1);
}

static void emit_map (reader_t *self, text_t *out, uint64_t count, int depth)
{
    if (count > (uint64_t)(self->end - self->cursor) / 2) {
        reader_fail (self, "msgpack truncated: map of %llu entries", (unsigned long long)count);
        return;
    }
    text_append (out, "{", 1);
    for (uint64_t i = 0; i < count && !self->failed; i++) {
        if (i) text_append (out, ",", 1);
        uint8_t lead = self->cursor < self->end ? *self->cursor : 0;
        bool string_key = (lead >= 0xA0 && lead <= 0xBF) || (lead >= 0xD9 && lead <= 0xDB);
        if (string_key)
            emit_value (self, out, depth + 1);
        else {
            //  JSON keys are strings: print the key as JSON, then quote that.
            text_t key = {0};
            emit_value (self, &key, depth + 1);
            if (key.failed)
                out->failed = true;
            else if (!self->failed)
                text_quote (out, (const uint8_t *)key.data, key.size);
            free (key.data);
        }
        text_append (out, ":", 1);
        if (!self->failed) emit_value (self, out, depth + 1);
    }
    text_append (out, "}", 1);
}

static void emit_bytes (reader_t *self, text_t *out, uint64_t size, int ext_type, bool is_ext)
{
    const uint8_t *bytes = reader_bytes (self, size);
    if (!bytes) return;
    if (is_ext)
        text_printf (out, "{\"$ext\":%d,\"$data\":\"", ext_type);
    else
        text_puts (out, "{\"$bin\":\"");
    text_base64 (out, bytes, (size_t)size);
    text_puts (out, "\"}");
}

static void emit_string (reader_t *self, text_t *out, uint64_t size)
{
    const uint8_t *bytes = reader_bytes (self, size);
    if (bytes) text_quote (out, bytes, (size_t)size);
}

static void emit_value (reader_t *self, text_t *out, int depth)
{
    if (depth > PF_JSON_MAX_DEPTH) {
        reader_fail (self, "msgpack nested deeper than %d levels", PF_JSON_MAX_DEPTH);
        return;
    }
    if (self->cursor >= self->end) {
        reader_fail (self, "msgpack truncated: value expected");
        return;
    }
    uint8_t lead = *self->cursor++;
    if (lead <= 0x7F)
        text_printf (out, "%u", lead);
    else if (lead >= 0xE0)
        text_printf (out, "%d", (int)(int8_t)lead);
    else if (lead <= 0x8F)
        emit_map (self, out, lead & 0x0F, depth);
    else if (lead <= 0x9F)
        emit_array (self, out, lead & 0x0F, depth);
    else if (lead <= 0xBF)
        emit_string (self, out, lead & 0x1F);
    else
        switch (lead) {
        case 0xC0:
            text_puts (out, "null");
            break;
        case 0xC2:
            text_puts (out, "false");
            break;
        case 0xC3:
            text_puts (out, "true");
            break;
        case 0xC4:
            emit_bytes (self, out, reader_uint (self, 1), 0, false);
            break;
        case 0xC5:
            emit_bytes (self, out, reader_uint (self, 2), 0, false);
            break;
        case 0xC6:
            emit_bytes (self, out, reader_uint (self, 4), 0, false);
            break;
        case 0xC7:
        case 0xC8:
        case 0xC9: {
            uint64_t size = reader_uint (self, lead == 0xC7 ? 1 : lead == 0xC8 ? 2 : 4);
            int type = (int8_t)reader_uint (self, 1);
            if (!self->failed) emit_bytes (self, out, size, type, true);
            break;
        }
        case 0xCA: {
            uint32_t bits = (uint32_t)reader_uint (self, 4);
            float value;
            memcpy (&value, &bits, sizeof value);
            if (!self->failed) text_double (out, value, true);
            break;
        }
        case 0xCB: {
            uint64_t bits = reader_uint (self, 8);
            double value;
            memcpy (&value, &bits, sizeof value);
            if (!self->failed) text_double (out, value, false);
            break;
        }
        case 0xCC:
        case 0xCD:
        case 0xCE:
        case 0xCF: {
            uint64_t value = reader_uint (self, (size_t)1 << (lead - 0xCC));
            if (!self->failed) text_printf (out, "%llu", (unsigned long long)value);
            break;
        }
        case 0xD0:
        case 0xD1:
        case 0xD2:
        case 0xD3: {
            size_t width = (size_t)1 << (lead - 0xD0);
            uint64_t bits = reader_uint (self, width);
            //  Sign-extend from width bytes.
            int64_t value;
            if (width == 8)
                memcpy (&value, &bits, sizeof value);
            else {
                uint64_t sign = (uint64_t)1 << (width * 8 - 1);
                value = (int64_t)((bits ^ sign)) - (int64_t)sign;
            }
            if (!self->failed) text_printf (out, "%lld", (long long)value);
            break;
        }
        case 0xD4:
        case 0xD5:
        case 0xD6:
        case 0xD7:
        case 0xD8: {
            int type = (int8_t)reader_uint (self, 1);
            if (!self->failed) emit_bytes (self, out, (uint64_t)1 << (lead - 0xD4), type, true);
            break;
        }
        case 0xD9:
            emit_string (self, out, reader_uint (self, 1));
            break;
        case 0xDA:
            emit_string (self, out, reader_uint (self, 2));
            break;
        case 0xDB:
            emit_string (self, out, reader_uint (self, 4));
            break;
        case 0xDC:
            emit_array (self, out, reader_uint (self, 2), depth);
            break;
        case 0xDD:
            emit_array (self, out, reader_uint (self, 4), depth);
            break;
        case 0xDE:
            emit_map (self, out, reader_uint (self, 2), depth);
            break;
        case 0xDF:
            emit_map (self, out, reader_uint (self, 4), depth);
            break;
        default:
            reader_fail (self, "invalid msgpack byte 0x%02X", lead);
            break;
        }
}

char *pf_msgpack_to_json (const void *data, size_t size, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!data || size == 0) {
        if (err && errlen) snprintf (err, errlen, "empty msgpack");
        return NULL;
    }
    reader_t reader = {data, (const uint8_t *)data + size, err, errlen, false};
    text_t out = {0};
    emit_value (&reader, &out, 0);
    if (!reader.failed && reader.cursor != reader.end)
        reader_fail (&reader, "%zu trailing bytes after the msgpack value",
                     (size_t)(reader.end - reader.cursor));
    if (!reader.failed && out.failed) reader_fail (&reader, "out of memory");
    if (reader.failed) {
        free (out.data);
        return NULL;
    }
    return out.data;
}

//  ---------------------------------------------------------------------------
//  JSON -> msgpack.

static int pack_json (msgpack_packer *packer, json_t *value, int depth, char *err, size_t errlen);

//  Packs {"$bin": b64} or {"$ext": T, "$data": b64}. Returns 1 if the object
//  had that shape and was packed, 0 if it is an ordinary object, -1 on error.
static int pack_tagged (msgpack_packer *packer, json_t *object)
{
    json_t *bin = json_object_get (object, "$bin");
    json_t *ext = json_object_get (object, "$ext");
    json_t *ext_data = json_object_get (object, "$data");
    json_t *text = NULL;
    if (json_object_size (object) == 1 && json_is_string (bin))
        text = bin;
    else if (json_object_size (object) == 2 && json_is_integer (ext) && json_is_string (ext_data) &&
             json_integer_value (ext) >= -128 && json_integer_value (ext) <= 127)
        text = ext_data;
    else
        return 0;

    size_t size;
    uint8_t *bytes = base64_decode (json_string_value (text), json_string_length (text), &size);
    if (!bytes) return 0; //  not base64: an ordinary object after all
    int rc;
    if (text == bin)
        rc = msgpack_pack_bin_with_body (packer, bytes, size);
    else
        rc = msgpack_pack_ext_with_body (packer, bytes, size, (int8_t)json_integer_value (ext));
    free (bytes);
    return rc == 0 ? 1 : -1;
}

static int pack_object (msgpack_packer *packer, json_t *object, int depth, char *err, size_t errlen)
{
    int tagged = pack_tagged (packer, object);
    if (tagged != 0) return tagged > 0 ? 0 : -1;
    if (msgpack_pack_map (packer, json_object_size (object))) return -1;
    const char *key;
    size_t key_size;
    json_t *member;
    json_object_keylen_foreach (object, key, key_size, member)
    {
        if (msgpack_pack_str_with_body (packer, key, key_size) ||
            pack_json (packer, member, depth + 1, err, errlen))
            return -1;
    }
    return 0;
}

static int pack_json (msgpack_packer *packer, json_t *value, int depth, char *err, size_t errlen)
{
    if (depth > PF_JSON_MAX_DEPTH) {
        snprintf (err, errlen, "JSON nested deeper than %d levels", PF_JSON_MAX_DEPTH);
        return -1;
    }
    switch (json_typeof (value)) {
    case JSON_OBJECT:
        return pack_object (packer, value, depth, err, errlen);
    case JSON_ARRAY: {
        size_t count = json_array_size (value);
        if (msgpack_pack_array (packer, count)) return -1;
        for (size_t i = 0; i < count; i++)
            if (pack_json (packer, json_array_get (value, i), depth + 1, err, errlen)) return -1;
        return 0;
    }
    case JSON_STRING:
        return msgpack_pack_str_with_body (packer, json_string_value (value),
                                           json_string_length (value));
    case JSON_INTEGER:
        return msgpack_pack_int64 (packer, json_integer_value (value));
    case JSON_REAL:
        return msgpack_pack_double (packer, json_real_value (value));
    case JSON_TRUE:
        return msgpack_pack_true (packer);
    case JSON_FALSE:
        return msgpack_pack_false (packer);
    case JSON_NULL:
        return msgpack_pack_nil (packer);
    }
    snprintf (err, errlen, "unexpected JSON type");
    return -1;
}

int pf_json_to_msgpack (const char *json, size_t json_size, void **data_p, size_t *size_p,
                        char *err, size_t errlen)
{
    char scratch[1];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = 0;
    *data_p = NULL;
    *size_p = 0;
    if (!json) {
        snprintf (err, errlen, "no JSON text");
        return -1;
    }
    json_error_t error;
    json_t *root = json_loadb (json, json_size,
                               JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &error);
    if (!root) {
        snprintf (err, errlen, "invalid JSON at line %d column %d: %s", error.line, error.column,
                  error.text);
        return -1;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    int rc = pack_json (&packer, root, 0, err, errlen);
    json_decref (root);
    if (rc) {
        if (!err[0]) snprintf (err, errlen, "out of memory");
        msgpack_sbuffer_destroy (&buffer);
        return -1;
    }
    *size_p = buffer.size;
    *data_p = msgpack_sbuffer_release (&buffer);
    return 0;
}
