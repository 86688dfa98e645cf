/* The two-step task's native step (task.h): the torch step of two_step/__init__.py. */
#include "task.h"

typedef struct {
    float common_prob, reward_high, reward_low, swap_prob;
    int64_t *good; /* [B] the second-stage state that pays reward_high, updated in place */
} TwoStepStep;

int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws) {
    const TwoStepStep *s = state;
    return B > 0 && actions == 2 && s->good && trial_draws >= 3 ? DV_OK : DV_BAD_TASK;
}

/* Action a leads commonly to second-stage state a, which pays reward_high if it is the good state;
 * the good state then swaps with probability swap_prob. The regret is the expected reward's; the
 * observation, the second-stage state reached, one-hot. */
Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs) {
    TwoStepStep *s = state;
    const int64_t good = s->good[b];
    const float good_first = good == 0 ? 1.0f : 0.0f;
    const float p0 = good_first * s->reward_high + (1.0f - good_first) * s->reward_low;
    const float p1 = (s->reward_high + s->reward_low) - p0;
    const float c = s->common_prob;
    const float v0 = c * p0 + (1.0f - c) * p1, v1 = c * p1 + (1.0f - c) * p0;
    const int64_t reached = u[0] < s->common_prob ? action : 1 - action;
    const float p = reached == good ? s->reward_high : s->reward_low;
    (void)t;
    if (obs) {
        obs[0] = reached == 0 ? 1.0f : 0.0f;
        obs[1] = reached == 1 ? 1.0f : 0.0f;
    }
    if (u[2] < s->swap_prob) s->good[b] = 1 - good;
    return (Outcome){u[1] < p ? 1.0f : 0.0f, (v0 > v1 ? v0 : v1) - (action == 0 ? v0 : v1)};
}

