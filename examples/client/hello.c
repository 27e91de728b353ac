/*  hello.c — a complete libpyfleet client: one call, a session, and 1000
    requests in flight at once.

        make && ./hello tcp://127.0.0.1:5555 demo

    Needs a running broker and a worker serving SERVICE (the bridges' built-in
    commands echo, ping and session_end are enough). Exits 0 if every request
    succeeded, else 1. */
#include <pyfleet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPELINED 1000

//  Prints an error reply (for PYTHON_ERROR with its Python type and traceback).
static void print_error (pf_reply_t *reply)
{
    fprintf (stderr, "%s: %s\n", pf_reply_code_name (reply), pf_reply_message (reply));
    if (pf_reply_code (reply) == PF_PYTHON_ERROR && pf_reply_traceback (reply))
        fprintf (stderr, "%s (%s)\n", pf_reply_traceback (reply), pf_reply_error_type (reply));
}

//  Prints a reply's result as JSON; returns 0 if it was a result.
static int print_reply (const char *what, pf_reply_t *reply)
{
    if (!pf_reply_ok (reply)) {
        print_error (reply);
        return -1;
    }
    char *json = pf_reply_body_json (reply);
    printf ("%s: %s\n", what, json ? json : "(not msgpack)");
    free (json);
    return 0;
}

int main (int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5555";
    const char *service = argc > 2 ? argv[2] : "demo";

    //  A 5 s deadline per request, and up to 3 attempts for requests the
    //  broker refuses as BUSY (or idempotent ones whose worker died).
    pf_client_options_t options = {.timeout_ms = 5000, .retry = {3, 50, 1000}};
    pf_client_t *client = pf_client_new_with (endpoint, &options);
    if (!client) {
        fprintf (stderr, "invalid endpoint %s\n", endpoint);
        return 1;
    }
    int failures = 0;

    //  1. One synchronous call with JSON arguments.
    pf_reply_t *reply = pf_call_json (client, service, "echo", "{\"text\": \"hello\"}", NULL);
    failures += print_reply ("echo", reply) != 0;
    pf_reply_destroy (&reply);

    //  2. A session: every call in it runs on the same bridge, in order.
    pf_session_t *session = pf_session_new (client, service, NULL);
    for (int i = 0; session && i < 2; i++) {
        reply = pf_session_call (session, "ping", NULL, 0, NULL);
        failures += print_reply ("ping in session", reply) != 0;
        pf_reply_destroy (&reply);
    }
    if (session) {
        reply = pf_session_end (session, 0);
        failures += print_reply ("session_end", reply) != 0;
        pf_reply_destroy (&reply);
        pf_session_destroy (&session);
    } else
        failures++;

    //  3. Asynchronous: PIPELINED requests in flight, replies matched by id.
    uint64_t first_id = 0;
    for (int i = 0; i < PIPELINED; i++) {
        char args[64];
        snprintf (args, sizeof args, "{\"n\": %d}", i);
        uint64_t id;
        if (pf_send_json (client, service, "echo", args, NULL, &id) != 0) {
            fprintf (stderr, "not sent: %s\n", pf_client_error (client));
            failures++;
            continue;
        }
        if (i == 0) first_id = id;
    }
    int answered = 0;
    while ((reply = pf_recv (client, -1))) { //  NULL once every request is answered
        char expected[64];
        snprintf (expected, sizeof expected, "{\"n\":%llu}",
                  (unsigned long long)(pf_reply_request_id (reply) - first_id));
        char *json = pf_reply_body_json (reply);
        if (!pf_reply_ok (reply)) {
            print_error (reply);
            failures++;
        } else if (!json || strcmp (json, expected) != 0) {
            fprintf (stderr, "request %llu: got %s, expected %s\n",
                     (unsigned long long)pf_reply_request_id (reply), json ? json : "?", expected);
            failures++;
        }
        free (json);
        answered++;
        pf_reply_destroy (&reply);
    }
    printf ("pipelined: %d of %d answered\n", answered, PIPELINED);
    failures += answered != PIPELINED;

    pf_client_destroy (&client);
    printf ("%s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
