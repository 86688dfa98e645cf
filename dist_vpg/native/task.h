/* The contract of a task's native step: what one C file beside a task's unit defines, so that the
 * acting loop (kernels.c) plays the task without knowing its name or its state.
 *
 * The file declares its state as one `typedef struct {...} Name;` of fixed-width integers, floats,
 * doubles and pointers (dist_vpg/native/interface.py parses it into the ctypes structure the unit's
 * native_state fills), and defines the two functions below. It is compiled into a library of its
 * own, without fused multiply-adds (as torch computes the task's torch step), and its state's
 * layout is checked against the parsed one before the first call (dv_layout).
 */
#ifndef DIST_VPG_TASK_H
#define DIST_VPG_TASK_H

#include <stdint.h>

/* DV_OK, DV_BAD_TASK */
#include "interface.h"

/* What one trial's step returns for one episode. */
typedef struct {
    float reward, regret;
} Outcome;

/* DV_OK when `state` holds what the step reads for B episodes of a policy of `actions` actions
 * with trial_draws uniforms each per trial, else DV_BAD_TASK. Called once per rollout, before the
 * first step: the step may then index by the action without a check of its own. */
int32_t dv_task_check(const void *state, int64_t B, int32_t actions, int32_t trial_draws);

/* Episode b takes `action` at agent step t with the uniforms u[trial_draws]; the episode's state
 * is updated in place. Where obs is not NULL, the step writes what the episode shows at step t + 1,
 * the task's observation size of floats, as the torch step returns it (obs is NULL after the last
 * step and for a task without observations). */
Outcome dv_task_step(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs);

#endif
