/*  pf_mgmt — the broker's management endpoint (PFM1, docs/MANAGEMENT.md).

    Every answer is built from the broker's own state: a query never waits
    on an agent or a bridge, so a busy fleet answers as fast as an idle one.
    Actions (drain, recycle, end a session) are acknowledged at once and
    recorded in STATUS's recent actions and on the events socket. */
#include "pf_broker.h"
#include "pf_broker_state.h"
#include "pf_error.h"
#include "pf_log.h"

static const char *bridge_state (bridge_slot_t *slot)
{
    return slot->draining ? "draining" : slot->first ? "busy" : "ready";
}

static double rate_per_second (rate_t *rate, int64_t now)
{
    //  Whole seconds only: the current one is still filling.
    int64_t second = now / 1000;
    uint64_t total = 0;
    for (int64_t s = second - RATE_SECONDS; s < second; s++)
        if (s > rate->second - RATE_SECONDS && s <= rate->second)
            total += rate->counts[(s % RATE_SECONDS + RATE_SECONDS) % RATE_SECONDS];
    return (double) total / RATE_SECONDS;
}

//  The upper bound (us) of the bucket holding the q-quantile; 0 if empty.
static uint64_t percentile (histogram_t *histogram, double q)
{
    if (histogram->count == 0)
        return 0;
    uint64_t rank = (uint64_t) (q * (double) histogram->count + 0.5);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (int bucket = 0; bucket < LATENCY_BUCKETS - 1; bucket++) {
        seen += histogram->buckets[bucket];
        if (seen >= rank)
            return latency_bounds_us[bucket];
    }
    return latency_bounds_us[LATENCY_BUCKETS - 2] * 2;
}

static json_t *error_counts (const uint64_t *errors)
{
    json_t *object = json_object ();
    for (int code = 1; code < PF_ERROR_COUNT; code++)
        if (errors[code])
            json_object_set_new (object, pf_error_name (code), json_integer ((json_int_t) errors[code]));
    return object;
}

static json_t *status (pf_broker_t *self, int64_t now)
{
    pf_broker_stats_t stats;
    pf_broker_stats (self, &stats);
    size_t ready = 0, busy = 0, draining = 0;
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents))
        for (uint32_t index = 0; index < agent->bridge_count; index++) {
            bridge_slot_t *slot = &agent->bridges[index];
            if (!slot->serving)
                continue;
            const char *state = bridge_state (slot);
            ready += state[0] == 'r';
            busy += state[0] == 'b';
            draining += state[0] == 'd';
        }
    json_t *actions = json_array ();
    for (char *action = zlistx_first (self->actions); action; action = zlistx_next (self->actions))
        json_array_append_new (actions, json_loads (action, 0, NULL));
    return json_pack (
        "{s:f, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:f, s:o, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:o}",
        "uptime_s", (double) (now - self->started) / 1000.0, "agents", (json_int_t) stats.agents,
        "bridges", "ready", (json_int_t) ready, "busy", (json_int_t) busy, "draining",
        (json_int_t) draining, "total", (json_int_t) (ready + busy + draining), "sessions",
        (json_int_t) stats.sessions, "queued", (json_int_t) stats.queued, "in_flight",
        (json_int_t) stats.inflight, "requests_total", (json_int_t) stats.requests,
        "replies_total", (json_int_t) stats.replies, "requests_per_s",
        rate_per_second (&self->rate, now), "errors", error_counts (stats.errors), "malformed",
        (json_int_t) stats.malformed, "send_failures", (json_int_t) stats.send_failures,
        "late_replies", (json_int_t) stats.late_replies, "sessions_lost",
        (json_int_t) stats.sessions_lost, "sessions_expired", (json_int_t) stats.sessions_expired,
        "unix_clients", (json_int_t) stats.unix_clients, "actions", actions);
}

static json_t *nullable_int (uint64_t value)
{
    return value ? json_integer ((json_int_t) value) : json_null ();
}

static json_t *workers (pf_broker_t *self, int64_t now)
{
    //  Sessions per bridge: one pass over the session table.
    zhashx_t *per_bridge = zhashx_new ();
    zhashx_set_destructor (per_bridge, NULL);
    for (session_t *session = self->first; session; session = session->next) {
        if (!session->agent_serial)
            continue;
        char key[64];
        snprintf (key, sizeof key, "%llu/%u/%u", (unsigned long long) session->agent_serial,
                  session->bridge, session->generation);
        uintptr_t count = (uintptr_t) zhashx_lookup (per_bridge, key);
        zhashx_update (per_bridge, key, (void *) (count + 1));
    }
    json_t *agents = json_array ();
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents)) {
        json_t *bridges = json_array ();
        size_t serving = 0, in_flight = 0;
        for (uint32_t index = 0; index < agent->bridge_count; index++) {
            bridge_slot_t *slot = &agent->bridges[index];
            if (!slot->serving)
                continue;
            serving++;
            in_flight += slot->inflight;
            char key[64];
            snprintf (key, sizeof key, "%llu/%u/%u", (unsigned long long) agent->serial, index,
                      slot->generation);
            json_t *bridge = json_pack (
                "{s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "bridge",
                (json_int_t) index,
                "generation", (json_int_t) slot->generation, "state", bridge_state (slot),
                "requests", (json_int_t) slot->requests, "errors", (json_int_t) slot->errors,
                "sessions", (json_int_t) (uintptr_t) zhashx_lookup (per_bridge, key), "in_flight",
                (json_int_t) slot->inflight, "request",
                slot->first ? json_integer ((json_int_t) slot->first->id) : json_null (),
                "request_age_ms",
                slot->first ? json_integer ((json_int_t) (now - slot->first->started))
                            : json_null (),
                "pid", nullable_int (slot->pid), "rss_kb", nullable_int (slot->rss_kb));
            json_array_append_new (bridges, bridge);
        }
        json_array_append_new (
            agents,
            json_pack ("{s:s, s:s, s:I, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o}",
                       "agent", agent->agent_id, "host", agent->host, "pid",
                       (json_int_t) agent->pid, "service", agent->service->name, "uptime_s",
                       (double) (now - agent->joined) / 1000.0, "last_beat_ms",
                       (json_int_t) (now - agent->last_heard), "capacity",
                       (json_int_t) agent->bridge_count, "serving", (json_int_t) serving,
                       "in_flight", (json_int_t) in_flight, "requests",
                       (json_int_t) agent->requests, "errors", (json_int_t) agent->errors,
                       "draining", agent->draining, "bridges", bridges, "key",
                       *agent->curve_key ? json_string (agent->curve_key) : json_null ()));
    }
    zhashx_destroy (&per_bridge);
    return json_pack ("{s:o}", "agents", agents);
}

static void service_of (session_t *session, char *service)
{
    size_t length = (unsigned char) session->key[0];
    memcpy (service, session->key + 1, length);
    service[length] = 0;
}

static json_t *sessions (pf_broker_t *self, json_t *args, int64_t now)
{
    const char *service_filter = json_string_value (json_object_get (args, "service"));
    const char *agent_filter = json_string_value (json_object_get (args, "agent"));
    json_int_t offset = json_integer_value (json_object_get (args, "offset"));
    json_int_t limit = json_object_get (args, "limit")
                           ? json_integer_value (json_object_get (args, "limit"))
                           : 100;
    if (offset < 0)
        offset = 0;
    if (limit < 0 || limit > 10000)
        limit = 10000;
    json_t *list = json_array ();
    json_int_t matched = 0;
    //  Newest first, through the creation-ordered list (stable for paging).
    for (session_t *session = self->last; session; session = session->prev) {
        char service[PF_MAX_NAME + 1];
        service_of (session, service);
        if (service_filter && strcmp (service, service_filter) != 0)
            continue;
        agent_t *agent = session->agent_serial
                             ? zhashx_lookup (self->serials, &session->agent_serial)
                             : NULL;
        //  Bound to a bridge that is gone: its next request is told SESSION_LOST.
        bool lost = session->agent_serial
                    && (!agent || session->bridge >= agent->bridge_count
                        || !agent->bridges[session->bridge].serving
                        || agent->bridges[session->bridge].generation != session->generation);
        if (lost)
            agent = NULL;
        if (agent_filter && (!agent || strcmp (agent->agent_id, agent_filter) != 0))
            continue;
        if (matched >= offset && matched < offset + limit)
            json_array_append_new (
                list, json_pack ("{s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:b}", "service", service,
                                 "session", session->key + 1 + strlen (service), "agent",
                                 agent ? json_string (agent->agent_id) : json_null (), "bridge",
                                 agent ? json_integer (session->bridge) : json_null (),
                                 "generation",
                                 agent ? json_integer (session->generation) : json_null (),
                                 "idle_ms", (json_int_t) (now - session->last_used), "queued",
                                 (json_int_t) (session->count ? session->count - 1 : 0), "lost",
                                 lost));
        matched++;
    }
    return json_pack ("{s:I, s:I, s:I, s:o}", "total", matched, "offset", offset, "limit", limit,
                      "sessions", list);
}

static json_t *services (pf_broker_t *self, int64_t now)
{
    json_t *list = json_array ();
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services)) {
        size_t bridges = 0;
        for (agent_t *agent = zlistx_first (service->agents); agent;
             agent = zlistx_next (service->agents))
            for (uint32_t index = 0; index < agent->bridge_count; index++)
                bridges += agent->bridges[index].serving;
        uint64_t answered = 0, failed = 0;
        for (int code = 0; code < PF_ERROR_COUNT; code++) {
            answered += service->errors[code];
            failed += code ? service->errors[code] : 0;
        }
        histogram_t *latency = &service->latency;
        json_array_append_new (
            list,
            json_pack ("{s:s, s:I, s:I, s:I, s:I, s:f, s:{s:I, s:I, s:I, s:I}, s:o, s:f}",
                       "service", service->name, "agents",
                       (json_int_t) zlistx_size (service->agents), "bridges", (json_int_t) bridges,
                       "queued", (json_int_t) zlistx_size (service->queue), "requests",
                       (json_int_t) service->requests, "requests_per_s",
                       rate_per_second (&service->rate, now), "latency_us", "p50",
                       (json_int_t) percentile (latency, 0.50), "p95",
                       (json_int_t) percentile (latency, 0.95), "p99",
                       (json_int_t) percentile (latency, 0.99), "count",
                       (json_int_t) latency->count, "errors", error_counts (service->errors),
                       "error_rate", answered ? (double) failed / (double) answered : 0.0));
    }
    return json_pack ("{s:o}", "services", list);
}

//  Prometheus text exposition format 0.0.4.
static char *metrics (pf_broker_t *self)
{
    pf_broker_stats_t stats;
    pf_broker_stats (self, &stats);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    fprintf (out,
             "# HELP pyfleet_requests_total Client requests accepted.\n"
             "# TYPE pyfleet_requests_total counter\npyfleet_requests_total %llu\n"
             "# HELP pyfleet_replies_total Terminal answers sent, by code.\n"
             "# TYPE pyfleet_replies_total counter\n",
             (unsigned long long) stats.requests);
    for (int code = 0; code < PF_ERROR_COUNT; code++)
        fprintf (out, "pyfleet_replies_total{code=\"%s\"} %llu\n", pf_error_name (code),
                 (unsigned long long) stats.errors[code]);
    fprintf (out,
             "# HELP pyfleet_malformed_total Messages dropped or refused as malformed.\n"
             "# TYPE pyfleet_malformed_total counter\npyfleet_malformed_total %llu\n"
             "# HELP pyfleet_late_replies_total Agent answers for requests already answered.\n"
             "# TYPE pyfleet_late_replies_total counter\npyfleet_late_replies_total %llu\n"
             "# HELP pyfleet_sessions_expired_total Idle sessions expired.\n"
             "# TYPE pyfleet_sessions_expired_total counter\npyfleet_sessions_expired_total %llu\n"
             "# HELP pyfleet_sessions_lost_total Sessions whose bridge was gone.\n"
             "# TYPE pyfleet_sessions_lost_total counter\npyfleet_sessions_lost_total %llu\n"
             "# HELP pyfleet_agents Registered agents.\n"
             "# TYPE pyfleet_agents gauge\npyfleet_agents %zu\n"
             "# HELP pyfleet_sessions Live sessions.\n"
             "# TYPE pyfleet_sessions gauge\npyfleet_sessions %zu\n"
             "# HELP pyfleet_in_flight Requests running on bridges.\n"
             "# TYPE pyfleet_in_flight gauge\npyfleet_in_flight %zu\n",
             (unsigned long long) stats.malformed, (unsigned long long) stats.late_replies,
             (unsigned long long) stats.sessions_expired, (unsigned long long) stats.sessions_lost,
             stats.agents, stats.sessions, stats.inflight);
    size_t ready = 0, busy = 0, draining = 0;
    for (agent_t *agent = zhashx_first (self->agents); agent; agent = zhashx_next (self->agents))
        for (uint32_t index = 0; index < agent->bridge_count; index++)
            if (agent->bridges[index].serving) {
                const char *state = bridge_state (&agent->bridges[index]);
                ready += state[0] == 'r';
                busy += state[0] == 'b';
                draining += state[0] == 'd';
            }
    fprintf (out,
             "# HELP pyfleet_bridges Serving bridges by state.\n# TYPE pyfleet_bridges gauge\n"
             "pyfleet_bridges{state=\"ready\"} %zu\npyfleet_bridges{state=\"busy\"} %zu\n"
             "pyfleet_bridges{state=\"draining\"} %zu\n"
             "# HELP pyfleet_queued Requests waiting in a service queue.\n"
             "# TYPE pyfleet_queued gauge\n",
             ready, busy, draining);
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        fprintf (out, "pyfleet_queued{service=\"%s\"} %zu\n", service->name,
                 zlistx_size (service->queue));
    fprintf (out, "# HELP pyfleet_request_duration_seconds From accepting a request to its "
                  "answer.\n# TYPE pyfleet_request_duration_seconds histogram\n");
    for (service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services)) {
        uint64_t cumulative = 0;
        for (int bucket = 0; bucket < LATENCY_BUCKETS - 1; bucket++) {
            cumulative += service->latency.buckets[bucket];
            fprintf (out, "pyfleet_request_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %llu\n",
                     service->name, (double) latency_bounds_us[bucket] / 1e6,
                     (unsigned long long) cumulative);
        }
        fprintf (out,
                 "pyfleet_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %llu\n"
                 "pyfleet_request_duration_seconds_sum{service=\"%s\"} %.6f\n"
                 "pyfleet_request_duration_seconds_count{service=\"%s\"} %llu\n",
                 service->name, (unsigned long long) service->latency.count, service->name,
                 service->latency.sum_s, service->name,
                 (unsigned long long) service->latency.count);
    }
    fclose (out);
    return text;
}

//  --------------------------------------------------------------------------
//  Actions

static void record_action (pf_broker_t *self, json_t *action)
{
    char stamp[32];
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new (action, "time", json_string (stamp));
    zlistx_add_end (self->actions, json_dumps (action, JSON_COMPACT));
    while (zlistx_size (self->actions) > RECENT_ACTIONS) {
        char *oldest = zlistx_detach (self->actions, NULL);
        zstr_free (&oldest);
    }
    pf_info ("action: %s", (char *) zlistx_last (self->actions));
    broker_event (self, "action", json_incref (action));
    json_decref (action);
}

static json_t *drain (pf_broker_t *self, json_t *args, const char **error)
{
    const char *id = json_string_value (json_object_get (args, "agent"));
    agent_t *agent = id ? broker_agent_by_id (self, id) : NULL;
    if (!agent) {
        *error = "no such agent";
        return NULL;
    }
    agent->draining = true;
    json_t *result = json_pack ("{s:s, s:s}", "agent", id, "result", "draining");
    record_action (self, json_pack ("{s:s, s:s, s:s}", "action", "drain", "agent", id, "result",
                                    "draining"));
    return result;
}

static json_t *recycle (pf_broker_t *self, json_t *args, const char **error, int64_t now)
{
    const char *id = json_string_value (json_object_get (args, "agent"));
    json_t *bridge = json_object_get (args, "bridge");
    agent_t *agent = id ? broker_agent_by_id (self, id) : NULL;
    if (!agent) {
        *error = "no such agent";
        return NULL;
    }
    if (bridge && !json_is_null (bridge)
        && (!json_is_integer (bridge) || json_integer_value (bridge) < 0
            || json_integer_value (bridge) >= agent->bridge_count
            || !agent->bridges[json_integer_value (bridge)].serving)) {
        *error = "no such bridge on that agent";
        return NULL;
    }
    pf_msg_t msg;
    pf_msg_init (&msg);
    msg.proto = PF_PROTO_W;
    msg.command = PF_W_RECYCLE;
    msg.bridge = bridge && !json_is_null (bridge) ? (uint32_t) json_integer_value (bridge)
                                                  : PF_BRIDGE_ANY;
    broker_send_to_agent (self, agent, &msg, now);
    pf_msg_reset (&msg);
    json_t *which = bridge && !json_is_null (bridge) ? json_incref (bridge) : json_null ();
    record_action (self, json_pack ("{s:s, s:s, s:O, s:s}", "action", "recycle", "agent", id,
                                    "bridge", which, "result", "recycling"));
    return json_pack ("{s:s, s:o, s:s}", "agent", id, "bridge", which, "result", "recycling");
}

static json_t *end_session (pf_broker_t *self, json_t *args, const char **error, int64_t now)
{
    const char *service = json_string_value (json_object_get (args, "service"));
    const char *id = json_string_value (json_object_get (args, "session"));
    if (!service || !id || !*service || !*id || strlen (service) > PF_MAX_NAME
        || strlen (id) > PF_MAX_NAME) {
        *error = "END_SESSION needs a service and a session";
        return NULL;
    }
    session_t *session = broker_session_find (self, service, id);
    if (!session) {
        *error = "no such session";
        return NULL;
    }
    broker_session_end (self, session, now);
    record_action (self, json_pack ("{s:s, s:s, s:s, s:s}", "action", "end_session", "service",
                                    service, "session", id, "result", "ended"));
    return json_pack ("{s:s, s:s, s:s}", "service", service, "session", id, "result", "ended");
}

//  --------------------------------------------------------------------------
//  Dispatch

static zmsg_t *reply (const char *status, const char *body)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "");
    zmsg_addstr (msg, "PFM1");
    zmsg_addstr (msg, status);
    zmsg_addstr (msg, body);
    return msg;
}

static zmsg_t *error_reply (int code, const char *message)
{
    json_t *body = json_pack ("{s:s, s:s}", "error", pf_error_name (code), "message", message);
    char *text = json_dumps (body, JSON_COMPACT);
    zmsg_t *msg = reply ("ERROR", text);
    free (text);
    json_decref (body);
    return msg;
}

zmsg_t *pf_broker_manage (pf_broker_t *self, zmsg_t **msg_p, int64_t now)
{
    zmsg_t *in = *msg_p;
    *msg_p = NULL;
    zmsg_t *out = NULL;
    char *delimiter = zmsg_popstr (in);
    char *header = zmsg_popstr (in);
    char *command = zmsg_popstr (in);
    char *text = zmsg_popstr (in);
    bool well_formed = delimiter && !*delimiter && header && streq (header, "PFM1");
    if (!well_formed) {
        self->stats.malformed++; //  not even PFM1: nothing to answer
        goto done;
    }
    json_t *args = text && *text ? json_loads (text, 0, NULL) : json_object ();
    if (!command || zmsg_size (in) > 0 || !json_is_object (args)) {
        self->stats.malformed++;
        out = error_reply (PF_BAD_REQUEST, "expected: \"\" PFM1 COMMAND {json arguments}");
        json_decref (args);
        goto done;
    }
    const char *error = NULL;
    json_t *result = NULL;
    if (streq (command, "STATUS"))
        result = status (self, now);
    else if (streq (command, "WORKERS"))
        result = workers (self, now);
    else if (streq (command, "SESSIONS"))
        result = sessions (self, args, now);
    else if (streq (command, "SERVICES"))
        result = services (self, now);
    else if (streq (command, "DRAIN"))
        result = drain (self, args, &error);
    else if (streq (command, "RECYCLE"))
        result = recycle (self, args, &error, now);
    else if (streq (command, "END_SESSION"))
        result = end_session (self, args, &error, now);
    else if (streq (command, "METRICS")) {
        char *body = metrics (self);
        out = reply ("OK", body);
        free (body);
    }
    else
        error = "unknown command";
    json_decref (args);
    if (result) {
        char *body = json_dumps (result, JSON_COMPACT | JSON_REAL_PRECISION (6));
        out = reply ("OK", body);
        free (body);
        json_decref (result);
    }
    else if (!out)
        out = error_reply (PF_BAD_REQUEST, error ? error : "could not build the answer");
done:
    zstr_free (&delimiter);
    zstr_free (&header);
    zstr_free (&command);
    zstr_free (&text);
    zmsg_destroy (&in);
    return out;
}
