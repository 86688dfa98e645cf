/* Restless bandits' native step (task.h): the torch step of restless/__init__.py. */
#include <math.h>

#include "task.h"

typedef struct {
    float *p;           /* [B] arm 0's payout probability, updated in place */
    const float *drift; /* [B] the s.d. of p's step (the trial noise's second column is its z) */
} RestlessStep;

int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws) {
    const RestlessStep *s = state;
    return B > 0 && actions == 2 && s->p && s->drift && trial_draws >= 2 ? DV_OK : DV_BAD_TASK;
}

/* p folded back into [0, 1] at both ends (restless/__init__.py: reflect); kept inside. */
static float reflect(float p) {
    if (p >= 0.0f && p <= 1.0f) return p;
    float r = fmodf(p, 2.0f);
    if (r != 0.0f && r < 0.0f) r += 2.0f; /* the remainder with the divisor's sign, as torch's */
    return 1.0f - fabsf(r - 1.0f);
}

/* Arm 0 pays with p, arm 1 with 1 - p; then p takes its step. */
Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs) {
    RestlessStep *s = state;
    const float p = s->p[b], chosen = action == 0 ? p : 1.0f - p;
    const Outcome out = {u[0] < chosen ? 1.0f : 0.0f, (p > 1.0f - p ? p : 1.0f - p) - chosen};
    (void)t, (void)obs; /* nothing to observe */
    s->p[b] = reflect(p + s->drift[b] * u[1]);
    return out;
}
