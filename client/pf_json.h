/*  pf_json — JSON text <-> msgpack bytes, for the CLI and pf_reply_body_json.

    Request and reply bodies are msgpack by convention; people type JSON. The
    mapping, both ways:

      JSON                         msgpack
      null, true, false            nil, true, false
      integer (int64 range)        int (smallest encoding)
      real                         float64
      string                       str (UTF-8, may contain NUL)
      array, object                array, map (string keys, order kept)
      {"$bin": "<base64>"}         bin
      {"$ext": T, "$data": "<b64>"} ext of type T (-128..127)

    The two "$" objects are recognised only in exactly that shape (the one or
    two keys and nothing else, valid base64, T in range), so that binary data
    survives a round trip through JSON; any other object is a plain map.

    msgpack -> JSON also handles what JSON cannot say directly: uint64 above
    INT64_MAX prints as its exact integer (JSON has no size limit, but parsing
    it back fails: jansson integers are int64); float NaN and +-Infinity print
    as null; a map key that is not a string prints as a string holding the
    key's JSON text (1 -> "1", [1,2] -> "[1,2]"); invalid UTF-8 inside a str is
    replaced by U+FFFD so the output is always valid JSON. Nesting deeper than
    PF_JSON_MAX_DEPTH is refused both ways. Garbage, truncated or trailing
    bytes never crash: the call fails with a reason. */
#ifndef PF_JSON_H_INCLUDED
#define PF_JSON_H_INCLUDED

#include <stddef.h>

#define PF_JSON_MAX_DEPTH 512

//  Parses JSON text (a whole document, any JSON value at the top) and packs
//  it as msgpack. On success returns 0 and sets *data_p (free() it) and
//  *size_p. On failure returns -1 with a one-line reason in err ("line 1
//  column 7: ..."), *data_p NULL.
int pf_json_to_msgpack (const char *json, size_t json_size, void **data_p, size_t *size_p,
                        char *err, size_t errlen);

//  Converts one msgpack object (exactly size bytes, nothing trailing) to
//  compact single-line JSON text. Returns a string the caller frees, or NULL
//  with a reason in err.
char *pf_msgpack_to_json (const void *data, size_t size, char *err, size_t errlen);

//  Quotes size bytes as a JSON string literal, quotes included (invalid UTF-8
//  becomes U+FFFD). Returns a string the caller frees, NULL if out of memory.
char *pf_json_quote (const char *text, size_t size);

#endif
