/* Harlow's native step (task.h): the torch step of harlow.py. */
#include "task.h"

typedef struct {
    const float *objects; /* [B, 2, features] the rewarded object, then the other */
    int64_t *left;        /* [B] the rewarded object stands on the left, updated in place */
    int32_t features, fixation;
} HarlowStep;

int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws) {
    const HarlowStep *s = state;
    return B > 0 && actions == 2 && s->objects && s->left && s->features > 0 && trial_draws >= 1 ? DV_OK : DV_BAD_TASK;
}

/* Whether agent step t is a choice (with fixation, every other step is a blank one). */
static int choosing(const HarlowStep *s, int32_t t) { return !s->fixation || t % 2 == 1; }

/* The objects, left then right, where a choice comes at step t; zeros at a blank step. */
static void show(const HarlowStep *s, int64_t b, int32_t t, float *obs) {
    const int F = s->features, shown = choosing(s, t), on_left = s->left[b] != 0;
    const float *rewarded = s->objects + b * 2 * F, *other = rewarded + F;
    for (int k = 0; k < F; k++) obs[k] = shown ? (on_left ? rewarded[k] : other[k]) : 0.0f;
    for (int k = 0; k < F; k++) obs[F + k] = shown ? (on_left ? other[k] : rewarded[k]) : 0.0f;
}

/* A blank step pays nothing; a choice pays on the rewarded object's side, which is then drawn anew.
 * Then the objects as step t + 1 shows them. */
Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs) {
    HarlowStep *s = state;
    Outcome out = {0.0f, 0.0f};
    if (choosing(s, t)) {
        out.reward = (action == 0) == (s->left[b] != 0) ? 1.0f : 0.0f;
        out.regret = 1.0f - out.reward;
        s->left[b] = u[0] < 0.5f;
    }
    if (obs) show(s, b, t + 1, obs);
    return out;
}
