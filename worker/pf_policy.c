/*  pf_policy — recycling limits with per-bridge jitter; see pf_policy.h. */
#include "pf_policy.h"
#include <stdio.h>

uint64_t pf_policy_jitter (uint64_t value, uint32_t pct, double r)
{
    if (value == 0)
        return 0;
    if (pct > 50)
        pct = 50;
    if (r < 0)
        r = 0;
    if (r > 1)
        r = 1;
    double factor = 1.0 + (double) pct / 100.0 * (2.0 * r - 1.0);
    double moved = (double) value * factor + 0.5;
    return moved < 1 ? 1 : (uint64_t) moved;
}

void pf_policy_limits (const pf_policy_t *policy, double r_requests, double r_age,
                       pf_policy_limits_t *limits)
{
    limits->max_requests = pf_policy_jitter (policy->max_requests, policy->jitter_pct, r_requests);
    limits->max_age_ms = pf_policy_jitter (policy->max_age_ms, policy->jitter_pct, r_age);
    limits->max_rss_kb = policy->max_rss_kb;
}

int pf_policy_due (const pf_policy_limits_t *limits, uint64_t requests, uint64_t age_ms,
                   long rss_kb, char *reason, int reason_size)
{
    if (limits->max_requests && requests >= limits->max_requests) {
        snprintf (reason, (size_t) reason_size, "max requests %llu reached",
                  (unsigned long long) limits->max_requests);
        return 1;
    }
    if (limits->max_age_ms && age_ms >= limits->max_age_ms) {
        snprintf (reason, (size_t) reason_size, "max age %llu ms reached",
                  (unsigned long long) limits->max_age_ms);
        return 1;
    }
    if (limits->max_rss_kb && rss_kb >= 0 && (uint64_t) rss_kb > limits->max_rss_kb) {
        snprintf (reason, (size_t) reason_size, "RSS %ld KiB above max %llu KiB", rss_kb,
                  (unsigned long long) limits->max_rss_kb);
        return 1;
    }
    return 0;
}
