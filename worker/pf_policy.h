/*  pf_policy — when a bridge is due for recycling, as pure logic.

    Each bridge gets its own limits when it is spawned: the configured
    request count and age, each moved by a random jitter (default +/-10 %)
    so a fleet started together never recycles in step. The RSS limit is
    not jittered: it is a memory bound, not a schedule. Randomness and
    measured times come in as arguments, so the policy is testable without
    processes or clocks. */
#ifndef PF_POLICY_H_INCLUDED
#define PF_POLICY_H_INCLUDED

#include <stdint.h>

typedef struct {
    uint64_t max_requests; //  0 = no limit
    uint64_t max_age_ms;   //  0 = no limit
    uint64_t max_rss_kb;   //  0 = no limit
    uint32_t jitter_pct;   //  0..50
} pf_policy_t;

typedef struct {
    uint64_t max_requests; //  this bridge's limits; 0 = none
    uint64_t max_age_ms;
    uint64_t max_rss_kb;
} pf_policy_limits_t;

//  value moved by up to +/- pct percent: r in [0, 1) picks where (0.5 = no
//  change). Never below 1 unless value is 0 (no limit stays no limit).
uint64_t pf_policy_jitter (uint64_t value, uint32_t pct, double r);

//  One bridge's limits; r_requests and r_age are uniform in [0, 1).
void pf_policy_limits (const pf_policy_t *policy, double r_requests, double r_age,
                       pf_policy_limits_t *limits);

//  Why a bridge with these counters is due for recycling ("max requests
//  50 reached"...), written into reason; returns 1 if due, 0 if not.
//  rss_kb < 0 means unknown (not checked).
int pf_policy_due (const pf_policy_limits_t *limits, uint64_t requests, uint64_t age_ms,
                   long rss_kb, char *reason, int reason_size);

//  Whether a bridge not yet due should get its replacement started now, so
//  that the replacement is ready when the limit is hit (no gap in capacity,
//  no latency spike at the swap). True once the bridge reached prespawn_pct
//  percent of its request limit, or when it is expected to reach its
//  request or age limit within lead_ms (the time a replacement needs to
//  get ready, with margin). service_us is the bridge's time per request
//  (0 = not measured yet). The RSS limit cannot be foreseen: never early
//  for memory. Returns 1 or 0.
int pf_policy_prepare (const pf_policy_limits_t *limits, uint64_t requests, uint64_t age_ms,
                       uint64_t service_us, uint64_t lead_ms, uint32_t prespawn_pct);

#endif
