/*  client_driver — one libpyfleet client driven line by line from stdin, so
    the integration tests (tests/integration/test_client_*.py) can keep the
    same client process across broker restarts and check what only the
    library can see: request ids, attempts, local replies.

        client_driver ENDPOINT [ATTEMPTS BASE_MS CAP_MS]

    Commands (one per line; one line of JSON answers each):
      call SERVICE COMMAND TIMEOUT_MS FLAGS JSON
          -> {"code","message","type","traceback","result","local","attempts","elapsed_ms"}
      pipeline SERVICE COUNT CONCURRENCY TIMEOUT_MS
          echo {"n": i} COUNT times, CONCURRENCY in flight; every reply must
          answer an outstanding id with that id's n
          -> {"sent","answered","matched","mismatched","unknown","errors","elapsed_ms"}
      burst SERVICE COMMAND COUNT TIMEOUT_MS JSON
          COUNT requests at once, then every reply
          -> {"answered","codes":{CODE:n},"max_late_ms","duplicates"}
    FLAGS is a number (PF_CALL_* bits). */
#include "pyfleet.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_string (const char *key, const char *value)
{
    char *quoted = NULL;
    if (value) {
        //  Minimal JSON escaping: enough for messages and tracebacks.
        size_t size = strlen (value);
        quoted = malloc (size * 6 + 3);
        char *out = quoted;
        *out++ = '"';
        for (const unsigned char *in = (const unsigned char *)value; *in; in++) {
            if (*in == '"' || *in == '\\')
                out += sprintf (out, "\\%c", *in);
            else if (*in < 0x20)
                out += sprintf (out, "\\u%04x", *in);
            else
                *out++ = (char)*in;
        }
        *out++ = '"';
        *out = 0;
    }
    printf ("\"%s\":%s", key, quoted ? quoted : "null");
    free (quoted);
}

static void do_call (pf_client_t *client, char *line)
{
    char service[256], command[256];
    unsigned timeout_ms, flags;
    int offset = 0;
    if (sscanf (line, "%255s %255s %u %u %n", service, command, &timeout_ms, &flags, &offset) < 4) {
        printf ("{\"error\":\"bad call line\"}\n");
        return;
    }
    pf_call_options_t options = {NULL, timeout_ms, flags};
    int64_t start = zclock_mono ();
    pf_reply_t *reply = pf_call_json (client, service, command, line + offset, &options);
    int64_t elapsed = zclock_mono () - start;
    char *result = pf_reply_body_json (reply);
    printf ("{\"code\":\"%s\",", pf_reply_code_name (reply));
    print_string ("message", pf_reply_message (reply));
    putchar (',');
    print_string ("type", pf_reply_error_type (reply));
    putchar (',');
    print_string ("traceback", pf_reply_traceback (reply));
    printf (",\"result\":%s,\"local\":%s,\"attempts\":%u,\"elapsed_ms\":%" PRId64 "}\n",
            result ? result : "null", pf_reply_local (reply) ? "true" : "false",
            pf_reply_attempts (reply), elapsed);
    free (result);
    pf_reply_destroy (&reply);
}

static void do_pipeline (pf_client_t *client, char *line)
{
    char service[256];
    size_t count, concurrency;
    unsigned timeout_ms;
    if (sscanf (line, "%255s %zu %zu %u", service, &count, &concurrency, &timeout_ms) != 4 ||
        count == 0 || concurrency == 0) {
        printf ("{\"error\":\"bad pipeline line\"}\n");
        return;
    }
    //  outstanding[i]: request i sent and not yet answered.
    bool *outstanding = calloc (count, sizeof *outstanding);
    uint64_t *ids = calloc (count, sizeof *ids);
    zhashx_t *index_of = zhashx_new (); //  "id" -> index + 1
    size_t sent = 0, answered = 0, matched = 0, mismatched = 0, unknown = 0, errors = 0;
    pf_call_options_t options = {NULL, timeout_ms, 0};
    int64_t start = zclock_mono ();
    while (answered < count) {
        while (sent < count && sent - answered < concurrency) {
            char args[64];
            snprintf (args, sizeof args, "{\"n\": %zu}", sent);
            if (pf_send_json (client, service, "echo", args, &options, &ids[sent]) != 0) break;
            char key[32];
            snprintf (key, sizeof key, "%" PRIu64, ids[sent]);
            zhashx_insert (index_of, key, (void *)(uintptr_t)(sent + 1));
            outstanding[sent++] = true;
        }
        pf_reply_t *reply = pf_recv (client, -1);
        if (!reply) break;
        answered++;
        char key[32];
        snprintf (key, sizeof key, "%" PRIu64, pf_reply_request_id (reply));
        uintptr_t slot = (uintptr_t)zhashx_lookup (index_of, key);
        if (!slot || !outstanding[slot - 1])
            unknown++;
        else {
            size_t index = slot - 1;
            outstanding[index] = false;
            char expected[64];
            snprintf (expected, sizeof expected, "{\"n\":%zu}", index);
            char *json = pf_reply_body_json (reply);
            if (!pf_reply_ok (reply))
                errors++;
            else if (json && strcmp (json, expected) == 0)
                matched++;
            else
                mismatched++;
            free (json);
        }
        pf_reply_destroy (&reply);
    }
    printf ("{\"sent\":%zu,\"answered\":%zu,\"matched\":%zu,\"mismatched\":%zu,\"unknown\":%zu,"
            "\"errors\":%zu,\"elapsed_ms\":%" PRId64 "}\n",
            sent, answered, matched, mismatched, unknown, errors, zclock_mono () - start);
    zhashx_destroy (&index_of);
    free (ids);
    free (outstanding);
}

static void do_burst (pf_client_t *client, char *line)
{
    char service[256], command[256];
    size_t count;
    unsigned timeout_ms;
    int offset = 0;
    if (sscanf (line, "%255s %255s %zu %u %n", service, command, &count, &timeout_ms, &offset) <
            4 ||
        count == 0) {
        printf ("{\"error\":\"bad burst line\"}\n");
        return;
    }
    pf_call_options_t options = {NULL, timeout_ms, 0};
    size_t codes[PF_ERROR_COUNT + 1] = {0};
    int64_t start = zclock_mono ();
    size_t sent = 0, answered = 0;
    for (; sent < count; sent++)
        if (pf_send_json (client, service, command, line + offset, &options, NULL) != 0) break;
    int64_t max_late = INT64_MIN;
    pf_reply_t *reply;
    while ((reply = pf_recv (client, -1))) {
        int64_t late = zclock_mono () - start - (int64_t)timeout_ms;
        if (late > max_late) max_late = late;
        int code = pf_reply_code (reply);
        codes[code >= 0 && code < PF_ERROR_COUNT ? code : PF_ERROR_COUNT]++;
        answered++;
        pf_reply_destroy (&reply);
    }
    printf ("{\"sent\":%zu,\"answered\":%zu,\"max_late_ms\":%" PRId64 ",\"codes\":{", sent,
            answered, max_late);
    bool first = true;
    for (int code = 0; code <= PF_ERROR_COUNT; code++)
        if (codes[code]) {
            printf ("%s\"%s\":%zu", first ? "" : ",", pf_error_name (code), codes[code]);
            first = false;
        }
    printf ("},\"outstanding\":%zu}\n", pf_client_outstanding (client));
}

int main (int argc, char **argv)
{
    if (argc != 2 && argc != 5) {
        fprintf (stderr, "usage: client_driver ENDPOINT [ATTEMPTS BASE_MS CAP_MS]\n");
        return 2;
    }
    pf_client_options_t options = {0};
    if (argc == 5) {
        options.retry.attempts = (uint32_t)atoi (argv[2]);
        options.retry.base_ms = (uint32_t)atoi (argv[3]);
        options.retry.cap_ms = (uint32_t)atoi (argv[4]);
    }
    pf_client_t *client = pf_client_new_with (argv[1], &options);
    if (!client) {
        fprintf (stderr, "client_driver: invalid endpoint\n");
        return 2;
    }
    char *line = NULL;
    size_t capacity = 0;
    while (getline (&line, &capacity, stdin) > 0) {
        line[strcspn (line, "\n")] = 0;
        if (strncmp (line, "call ", 5) == 0)
            do_call (client, line + 5);
        else if (strncmp (line, "pipeline ", 9) == 0)
            do_pipeline (client, line + 9);
        else if (strncmp (line, "burst ", 6) == 0)
            do_burst (client, line + 6);
        else if (strcmp (line, "quit") == 0)
            break;
        else
            printf ("{\"error\":\"unknown command\"}\n");
        fflush (stdout);
    }
    free (line);
    pf_client_destroy (&client);
    return 0;
}
