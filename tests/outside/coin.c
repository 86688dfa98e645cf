/* The coin task's native step (dist_vpg/native/task.h): Coin.step of coin.py, in C. */
#include "task.h"

typedef struct {
    const float *heads; /* [B] P(heads) of each episode's coin */
} CoinStep;

int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws) {
    const CoinStep *s = state;
    return B > 0 && actions == 2 && s->heads && trial_draws >= 1 ? DV_OK : DV_BAD_TASK;
}

/* The coin falls tails where the flip's uniform reaches P(heads); a right call pays 1. The agent
 * then sees how it fell, one-hot: heads, tails. */
Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs) {
    const CoinStep *s = state;
    const float heads = s->heads[b], called = action == 0 ? heads : 1.0f - heads;
    const int64_t tails = u[0] >= heads;
    (void)t;
    if (obs) {
        obs[0] = tails == 0 ? 1.0f : 0.0f;
        obs[1] = tails == 1 ? 1.0f : 0.0f;
    }
    return (Outcome){action == tails ? 1.0f : 0.0f, (heads > 1.0f - heads ? heads : 1.0f - heads) - called};
}
