/* Independent and dependent bandits' native step (task.h): the torch step of bandit/__init__.py. */
#include "task.h"

typedef struct {
    int32_t arms;
    const float *arm_probs; /* [B, arms] each arm's payout probability */
    const float *best;      /* [B] the best arm's */
} BanditStep;

int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws) {
    const BanditStep *s = state;
    return B > 0 && s->arms == actions && s->arm_probs && s->best && trial_draws >= 1 ? DV_OK : DV_BAD_TASK;
}

/* The chosen arm pays 1 with its probability; the regret is the best arm's probability less it. */
Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs) {
    const BanditStep *s = state;
    const float chosen = s->arm_probs[b * s->arms + action];
    (void)t, (void)obs; /* nothing to observe */
    return (Outcome){u[0] < chosen ? 1.0f : 0.0f, s->best[b] - chosen};
}
