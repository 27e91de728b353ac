/*  pf_options — see pf_options.h. */
#include "pf_options.h"
#include "pf_curve.h"
#include "pf_log.h"
#include "pf_parse.h"
#include "pf_setup.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pf_worker_options_init (pf_worker_options_t *options)
{
    memset (options, 0, sizeof *options);
    pf_agent_config_defaults (&options->config);
    if (getenv ("PYFLEET_PYTHON") && *getenv ("PYFLEET_PYTHON"))
        options->config.python = getenv ("PYFLEET_PYTHON");
    options->log_level = PF_LOG_INFO;
}

static void list_add (pf_worker_options_t *options, int list, const char *value, bool from_flag)
{
    if (from_flag && !options->list_from_flags[list]) {
        //  The first flag for a list replaces what the file said.
        options->list_from_flags[list] = true;
        options->list_size[list] = 0;
    }
    int size = options->list_size[list];
    const char **grown = realloc (options->lists[list], (size_t) (size + 2) * sizeof (char *));
    if (!grown)
        return;
    grown[size] = value;
    grown[size + 1] = NULL;
    options->lists[list] = grown;
    options->list_size[list] = size + 1;
}

typedef struct {
    const char *key;
    long long min, max;
    uint32_t *field;
} number_option_t;

int pf_worker_options_apply (pf_worker_options_t *options, const char *key, const char *value, bool from_flag,
                  char *why, size_t whylen)
{
    pf_agent_config_t *config = &options->config;
    number_option_t numbers[] = {
        {"heartbeat", 10, 3600000, &config->heartbeat_ms},
        {"liveness", 1, 1000, &config->liveness},
        {"beat", 10, 60000, &config->beat_ms},
        {"wedged-beats", 2, 1000, &config->wedged_beats},
        {"startup-timeout", 100, 3600000, &config->startup_timeout_ms},
        {"dump-grace", 0, 60000, &config->dump_grace_ms},
        {"stop-grace", 0, 600000, &config->stop_grace_ms},
        {"max-requests", 0, 1000000000, &config->max_requests},
        {"max-age", 0, 100000000, &config->max_age_s},
        {"max-rss", 0, 100000000, &config->max_rss_mb},
        {"jitter", 0, 50, &config->jitter_pct},
        {"max-recycling", 1, 64, &config->max_recycling},
        {"prespawn", 0, 100, &config->prespawn_pct},
        {"drain-cap", 0, 100000000, &config->drain_cap_s},
        {"pipeline", 1, 64, &config->pipeline},
        {"hold", 0, 3600000, &config->hold_ms},
    };
    long long number;
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (streq (key, numbers[i].key)) {
            if (pf_parse_number (value, numbers[i].min, numbers[i].max, &number) != 0) {
                snprintf (why, whylen, "expected an integer from %lld to %lld", numbers[i].min,
                          numbers[i].max);
                return -1;
            }
            *numbers[i].field = (uint32_t) number;
            return 0;
        }
    if (streq (key, "bridges")) {
        if (pf_parse_number (value, 1, 1024, &number) != 0) {
            snprintf (why, whylen, "expected an integer from 1 to 1024");
            return -1;
        }
        config->bridges = (int) number;
    }
    else if (streq (key, "broker") || streq (key, "python") || streq (key, "python-path")) {
        if (!*value) {
            snprintf (why, whylen, "must not be empty");
            return -1;
        }
        if (streq (key, "broker"))
            config->broker = value;
        else if (streq (key, "python"))
            config->python = value;
        else
            config->python_path = value;
    }
    else if (streq (key, "curve-cert")) {
        //  Read now, so a bad file is refused before anything starts.
        zcert_t *cert = pf_curve_cert_load (value, why, whylen);
        if (!cert)
            return -1;
        zcert_destroy (&cert);
        config->curve_cert = value;
    }
    else if (streq (key, "broker-key")) {
        char key_text[PF_CURVE_KEY_LEN + 1];
        if (pf_curve_public_key (value, key_text, why, whylen) != 0)
            return -1;
        config->broker_key = value;
    }
    else if (streq (key, "service")) {
        if (!*value || strlen (value) > 255) {
            snprintf (why, whylen, "expected 1 to 255 bytes");
            return -1;
        }
        config->service = value;
    }
    else if (streq (key, "module"))
        list_add (options, PF_LIST_MODULE, value, from_flag);
    else if (streq (key, "setup")) {
        pf_setup_t *check = pf_setup_new ();
        int rc = pf_setup_add_text (check, value, why, whylen);
        pf_setup_destroy (&check);
        if (rc != 0)
            return -1;
        list_add (options, PF_LIST_SETUP, value, from_flag);
    }
    else if (streq (key, "env")) {
        const char *equals = strchr (value, '=');
        if (!equals || equals == value) {
            snprintf (why, whylen, "expected KEY=VALUE");
            return -1;
        }
        list_add (options, PF_LIST_ENV, value, from_flag);
    }
    else if (streq (key, "log-level")) {
        options->log_level = pf_log_level_parse (value);
        if (options->log_level < 0) {
            snprintf (why, whylen, "expected debug, info, warn or error");
            return -1;
        }
    }
    else
        return -2;
    return 0;
}

int pf_worker_options_load (pf_worker_options_t *options, const char *path, const char *program)
{
    if (!zsys_file_exists (path)) {
        fprintf (stderr, "%s: config file '%s' not found\n", program, path);
        return -1;
    }
    zconfig_t *tree = zconfig_load (path);
    if (!tree) {
        fprintf (stderr, "%s: config file '%s' is not valid ZPL\n", program, path);
        return -1;
    }
    options->tree = tree;
    for (zconfig_t *section = zconfig_child (tree); section; section = zconfig_next (section)) {
        if (!streq (zconfig_name (section), "worker")) {
            fprintf (stderr, "%s: %s: unknown section '%s' (expected 'worker')\n",
                     program, path, zconfig_name (section));
            return -1;
        }
        for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
            const char *key = zconfig_name (item);
            const char *value = zconfig_value (item) ? zconfig_value (item) : "";
            char why[256] = "";
            int rc = pf_worker_options_apply (options, key, value, false, why, sizeof why);
            if (rc == -2) {
                fprintf (stderr, "%s: %s: unknown key 'worker/%s'\n", program, path, key);
                return -1;
            }
            if (rc != 0) {
                fprintf (stderr, "%s: %s: invalid value '%s' for key 'worker/%s': %s\n",
                         program, path, value, key, why);
                return -1;
            }
        }
    }
    return 0;
}


void pf_worker_options_finish (pf_worker_options_t *options)
{
    options->config.modules = options->lists[PF_LIST_MODULE];
    options->config.setup = options->lists[PF_LIST_SETUP];
    options->config.env = options->lists[PF_LIST_ENV];
}

void pf_worker_options_free (pf_worker_options_t *options)
{
    for (int i = 0; i < PF_LIST_COUNT; i++)
        free (options->lists[i]);
    zconfig_destroy (&options->tree);
}
