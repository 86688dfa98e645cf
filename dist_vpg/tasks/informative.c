/* Dependent arms II's native step (task.h): the torch step of informative.py. */
#include "task.h"

typedef struct {
    int32_t arms;
    const float *payouts; /* [B, arms] what each arm pays, every time */
    const float *best;    /* [B] the most an arm pays */
} PayoutStep;

int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws) {
    const PayoutStep *s = state;
    (void)trial_draws;
    return B > 0 && s->arms == actions && s->payouts && s->best ? DV_OK : DV_BAD_TASK;
}

Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs) {
    const PayoutStep *s = state;
    const float reward = s->payouts[b * s->arms + action];
    (void)u, (void)t, (void)obs; /* nothing to observe */
    return (Outcome){reward, s->best[b] - reward};
}
