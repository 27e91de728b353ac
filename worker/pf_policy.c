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

int pf_policy_prepare (const pf_policy_limits_t *limits, uint64_t requests, uint64_t age_ms,
                       uint64_t service_us, uint64_t lead_ms, uint32_t prespawn_pct)
{
    if (limits->max_requests) {
        //  Integer percent of the limit, rounded up: 80 % of 50 is 40.
        uint64_t mark = (limits->max_requests * prespawn_pct + 99) / 100;
        if (requests >= mark)
            return 1;
        uint64_t left = requests < limits->max_requests ? limits->max_requests - requests : 0;
        if (service_us && left * service_us <= lead_ms * 1000)
            return 1;
    }
    if (limits->max_age_ms && lead_ms && age_ms + lead_ms >= limits->max_age_ms)
        return 1;
    return 0;
}
