/*  pf_setup — setup replay list and a small JSON to msgpack converter.

    The worker links only the core (no jansson), and setup args come from a
    config line, so a strict recursive-descent JSON reader lives here. Depth
    is bounded so a hostile config cannot exhaust the stack. */
#include "pf_setup.h"
#include <errno.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    char *command;
    uint8_t *args;
    size_t args_size;
} call_t;

struct _pf_setup_t {
    call_t calls[PF_SETUP_MAX_CALLS];
    size_t count;
};

pf_setup_t *pf_setup_new (void)
{
    return calloc (1, sizeof (pf_setup_t));
}

void pf_setup_destroy (pf_setup_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pf_setup_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) {
        free (self->calls[i].command);
        free (self->calls[i].args);
    }
    free (self);
    *self_p = NULL;
}

int pf_setup_add (pf_setup_t *self, const char *command, const void *args, size_t args_size)
{
    size_t length = command ? strlen (command) : 0;
    if (length == 0 || length > 255)
        return -1;
    //  The same call again (a broadcast fanned out to N bridges): keep one,
    //  at the end, so the order of the last calls is the order of replay.
    for (size_t i = 0; i < self->count; i++) {
        call_t *call = &self->calls[i];
        if (strcmp (call->command, command) == 0 && call->args_size == args_size
            && (args_size == 0 || memcmp (call->args, args, args_size) == 0)) {
            call_t moved = *call;
            memmove (call, call + 1, (self->count - i - 1) * sizeof (call_t));
            self->calls[self->count - 1] = moved;
            return 0;
        }
    }
    if (self->count == PF_SETUP_MAX_CALLS)
        return -1;
    call_t call = {strdup (command), malloc (args_size ? args_size : 1), args_size};
    if (!call.command || !call.args) {
        free (call.command);
        free (call.args);
        return -1;
    }
    if (args_size)
        memcpy (call.args, args, args_size);
    self->calls[self->count++] = call;
    return 0;
}

size_t pf_setup_count (pf_setup_t *self)
{
    return self->count;
}

const char *pf_setup_get (pf_setup_t *self, size_t index, const uint8_t **args_p,
                          size_t *args_size_p)
{
    if (index >= self->count)
        return NULL;
    *args_p = self->calls[index].args;
    *args_size_p = self->calls[index].args_size;
    return self->calls[index].command;
}

int pf_setup_add_text (pf_setup_t *self, const char *text, char *err, size_t errlen)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t length = strcspn (text, " \t");
    if (length == 0 || length > 255) {
        snprintf (err, errlen, "a setup call needs a command name (1..255 bytes)");
        return -1;
    }
    char command[256];
    memcpy (command, text, length);
    command[length] = 0;
    const char *json = text + length;
    while (*json == ' ' || *json == '\t')
        json++;
    uint8_t *args = NULL;
    size_t args_size = 0;
    if (*json) {
        char reason[200];
        args = pf_setup_json_to_msgpack (json, &args_size, reason, sizeof reason);
        if (!args) {
            snprintf (err, errlen, "setup call '%s': args are not JSON: %s", command, reason);
            return -1;
        }
    }
    int rc = pf_setup_add (self, command, args, args_size);
    free (args);
    if (rc != 0)
        snprintf (err, errlen, "setup call '%s': the list is full (%d calls)", command,
                  PF_SETUP_MAX_CALLS);
    return rc;
}

//  --------------------------------------------------------------------------
//  JSON reader

typedef struct {
    const char *start;
    const char *p;
    msgpack_packer *packer;
    char *err;
    size_t errlen;
} reader_t;

static int fail (reader_t *r, const char *what)
{
    snprintf (r->err, r->errlen, "%s at byte %ld", what, (long) (r->p - r->start));
    return -1;
}

static void skip_space (reader_t *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
        r->p++;
}

static int hex4 (const char *p, unsigned *value)
{
    *value = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned digit;
        if (c >= '0' && c <= '9')
            digit = (unsigned) (c - '0');
        else if (c >= 'a' && c <= 'f')
            digit = (unsigned) (c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            digit = (unsigned) (c - 'A' + 10);
        else
            return -1;
        *value = *value * 16 + digit;
    }
    return 0;
}

static size_t put_utf8 (char *out, unsigned code)
{
    if (code < 0x80) {
        out[0] = (char) code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (char) (0xC0 | (code >> 6));
        out[1] = (char) (0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (char) (0xE0 | (code >> 12));
        out[1] = (char) (0x80 | ((code >> 6) & 0x3F));
        out[2] = (char) (0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (char) (0xF0 | (code >> 18));
    out[1] = (char) (0x80 | ((code >> 12) & 0x3F));
    out[2] = (char) (0x80 | ((code >> 6) & 0x3F));
    out[3] = (char) (0x80 | (code & 0x3F));
    return 4;
}

static int read_string (reader_t *r)
{
    r->p++; //  opening quote
    size_t capacity = strlen (r->p) + 1;
    char *text = malloc (capacity);
    if (!text)
        return fail (r, "out of memory");
    size_t size = 0;
    while (*r->p != '"') {
        unsigned char c = (unsigned char) *r->p;
        if (c == 0) {
            free (text);
            return fail (r, "unterminated string");
        }
        if (c < 0x20) {
            free (text);
            return fail (r, "control character in string");
        }
        if (c != '\\') {
            text[size++] = (char) c;
            r->p++;
            continue;
        }
        r->p++;
        char escape = *r->p++;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = escape ? strchr (from, escape) : NULL;
        if (hit) {
            text[size++] = to[hit - from];
            continue;
        }
        unsigned code, low;
        if (escape != 'u' || hex4 (r->p, &code) != 0) {
            free (text);
            return fail (r, "bad escape in string");
        }
        r->p += 4;
        if (code >= 0xD800 && code <= 0xDBFF) {
            if (r->p[0] != '\\' || r->p[1] != 'u' || hex4 (r->p + 2, &low) != 0 || low < 0xDC00
                || low > 0xDFFF) {
                free (text);
                return fail (r, "lone surrogate in string");
            }
            r->p += 6;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        else if (code >= 0xDC00 && code <= 0xDFFF) {
            free (text);
            return fail (r, "lone surrogate in string");
        }
        //  An escape is 6+ bytes and its UTF-8 at most 4: it fits.
        size += put_utf8 (text + size, code);
    }
    r->p++;
    msgpack_pack_str_with_body (r->packer, text, size);
    free (text);
    return 0;
}

static int read_number (reader_t *r)
{
    const char *p = r->p;
    if (*p == '-')
        p++;
    if (!(*p >= '0' && *p <= '9'))
        return fail (r, "unexpected character");
    if (*p == '0' && p[1] >= '0' && p[1] <= '9')
        return fail (r, "leading zero in number");
    while (*p >= '0' && *p <= '9')
        p++;
    bool is_float = false;
    if (*p == '.') {
        is_float = true;
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return fail (r, "bad number");
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        is_float = true;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return fail (r, "bad number");
        while (*p >= '0' && *p <= '9')
            p++;
    }
    char *end;
    errno = 0;
    if (!is_float && *r->p == '-') {
        long long value = strtoll (r->p, &end, 10);
        if (errno == 0)
            msgpack_pack_int64 (r->packer, value);
        else
            is_float = true;
    }
    else if (!is_float) {
        unsigned long long value = strtoull (r->p, &end, 10);
        if (errno == 0)
            msgpack_pack_uint64 (r->packer, value);
        else
            is_float = true;
    }
    if (is_float)
        msgpack_pack_double (r->packer, strtod (r->p, &end));
    r->p = p;
    return 0;
}

static int read_value (reader_t *r, int depth);

static int read_container (reader_t *r, int depth, bool object)
{
    //  Count the members first on a scratch pass would need a second parse;
    //  instead pack into a temporary buffer and prefix the count.
    msgpack_sbuffer inner;
    msgpack_sbuffer_init (&inner);
    msgpack_packer packer, *outer = r->packer;
    msgpack_packer_init (&packer, &inner, msgpack_sbuffer_write);
    r->packer = &packer;
    char close = object ? '}' : ']';
    uint32_t count = 0;
    int rc = 0;
    r->p++;
    skip_space (r);
    if (*r->p == close)
        r->p++;
    else
        while (rc == 0) {
            skip_space (r);
            if (object) {
                if (*r->p != '"') {
                    rc = fail (r, "expected a string key");
                    break;
                }
                if ((rc = read_string (r)) != 0)
                    break;
                skip_space (r);
                if (*r->p != ':') {
                    rc = fail (r, "expected ':'");
                    break;
                }
                r->p++;
            }
            if ((rc = read_value (r, depth + 1)) != 0)
                break;
            count++;
            skip_space (r);
            if (*r->p == ',') {
                r->p++;
                continue;
            }
            if (*r->p == close) {
                r->p++;
                break;
            }
            rc = fail (r, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    r->packer = outer;
    if (rc == 0) {
        if (object)
            msgpack_pack_map (outer, count);
        else
            msgpack_pack_array (outer, count);
        if (inner.size)
            msgpack_pack_str_body (outer, inner.data, inner.size); //  raw append
    }
    msgpack_sbuffer_destroy (&inner);
    return rc;
}

static int read_value (reader_t *r, int depth)
{
    if (depth > MAX_DEPTH)
        return fail (r, "nested too deep");
    skip_space (r);
    switch (*r->p) {
    case '{':
        return read_container (r, depth, true);
    case '[':
        return read_container (r, depth, false);
    case '"':
        return read_string (r);
    case 't':
        if (strncmp (r->p, "true", 4) != 0)
            return fail (r, "unexpected character");
        r->p += 4;
        return msgpack_pack_true (r->packer);
    case 'f':
        if (strncmp (r->p, "false", 5) != 0)
            return fail (r, "unexpected character");
        r->p += 5;
        return msgpack_pack_false (r->packer);
    case 'n':
        if (strncmp (r->p, "null", 4) != 0)
            return fail (r, "unexpected character");
        r->p += 4;
        return msgpack_pack_nil (r->packer);
    case 0:
        return fail (r, "unexpected end");
    default:
        return read_number (r);
    }
}

uint8_t *pf_setup_json_to_msgpack (const char *json, size_t *size_p, char *err, size_t errlen)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    reader_t r = {json, json, &packer, err, errlen};
    int rc = read_value (&r, 0);
    if (rc == 0) {
        skip_space (&r);
        if (*r.p)
            rc = fail (&r, "trailing characters");
    }
    if (rc != 0 || buffer.size == 0) {
        msgpack_sbuffer_destroy (&buffer);
        return NULL;
    }
    *size_p = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}
