/* dist_vpg's native interface, declared once: the constants, the structs and the functions that
 * kernels.c defines and the Python side calls. kernels.c includes this file; dist_vpg/native/
 * interface.py parses it into ctypes structures and signatures, and the build adds a table of the
 * compiler's sizes and offsets (dv_layout) that the Python side checks its structures against
 * before the first call. A task's native step is not declared here: task.h is its contract. Written in a small subset of C so that the parser stays small: one
 * declaration per line or per field list, fixed-width integer types, float, double and pointers.
 */
#ifndef DIST_VPG_INTERFACE_H
#define DIST_VPG_INTERFACE_H

#include <stdint.h>

/* Floats per vector: weight rows are padded to a multiple of it. */
enum { VW = 16 };

/* What dv_act, dv_lstm_backward, dv_a2c_loss and dv_update return; dv_error names each in a sentence. */
enum { DV_OK = 0, DV_BAD_SIZE = 1, DV_BAD_PADDING = 2, DV_BAD_TASK = 3, DV_MISSING = 4, DV_BAD_ACTION = 5 };

/* The agent's weights, transposed where the loops want rows of 4H gates. */
typedef struct {
    int32_t inputs, hidden, actions, gates_padded, actions_padded; /* Gp, Ap: rounded up to VW */
    const float *w_t;     /* [I + H, Gp]: W_ih^T over W_hh^T, zero columns past 4H */
    const float *bias;    /* [Gp] b_ih + b_hh */
    const float *w_pol_t; /* [H, Ap]: the policy head's W^T, then the value head's w, zeros past A + 1 */
    const float *b_pol;   /* [Ap]: the policy head's bias, then the value head's */
} Weights;

/* The task dv_act plays: its native step (task.h) as the task's unit hands it over. */
typedef struct {
    void *state;           /* the task's own state struct, filled by its unit's native_state */
    const void *step;      /* its dv_task_step */
    int32_t trial_draws;   /* uniforms per episode and trial that its step reads */
    int32_t obs;           /* observation size: the first floats of every input */
    const float *first_obs; /* [B, obs] what the first trial shows; NULL: nothing (zeros) */
} Task;

/* The A2C loss's settings (dist_vpg/losses.py: a2c_loss). */
typedef struct {
    float gamma, lam, beta_v, beta_e;
    int32_t value_scale;       /* the value head predicts a return per trial left */
    int32_t episodes_per_task; /* K > 1: advantages relative to the K - 1 others of the same task */
} LossSpec;

/* What dv_update's loss learns from (dist_vpg/losses.py: training_signal). */
enum { SIGNAL_REWARD = 0, SIGNAL_REGRET = 1 };

/* One rollout's whole native pass (dv_update): the agent's parameters in torch's layouts, the
 * buffers of their gradients, to which it adds grad_scale times this rollout's gradient, and the
 * buffers it keeps between calls (dv_update_kept floats: the staged weights, what the rollout
 * recorded for the backward, every scratch). */
typedef struct {
    int32_t trials, inputs, hidden, actions;
    int64_t episodes;
    int32_t trial_input, signal; /* a SIGNAL_ */
    float reward_scale, grad_scale;
    const float *w_ih, *w_hh, *b_ih, *b_hh, *w_pol, *b_pol, *w_val, *b_val;
    float *g_w_ih, *g_w_hh, *g_b_ih, *g_b_hh, *g_w_pol, *g_b_pol, *g_w_val, *g_b_val;
    float *kept;
} Update;

/* The staged weights' parts, in order (dv_stage_parts writes their sizes in floats). */
enum { STAGE_W_T = 0, STAGE_BIAS = 1, STAGE_W_POL_T = 2, STAGE_B_POL = 3, STAGE_W_HH = 4, STAGE_W_HEADS = 5, STAGE_PARTS = 6 };

const char *dv_error(int32_t status);
int64_t dv_layout(int32_t index);
void dv_stage_parts(int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap, int64_t *sizes);
int64_t dv_stage_size(int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap);
void dv_stage(int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap, const float *w_ih, const float *w_hh, const float *b_ih, const float *b_hh, const float *w_pol, const float *b_pol, const float *w_val, const float *b_val, float *out);
int64_t dv_act_scratch(int64_t B, int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap);
int32_t dv_act(int32_t T, int64_t B, int32_t trial_input, float reward_scale, const Weights *w, const Task *task, const float *trial_noise, const float *action_noise, float *x, int64_t *actions, float *rewards, float *regrets, float *h, float *gates, float *c, float *heads, float *scratch);
int64_t dv_backward_scratch(int64_t B, int32_t H, int32_t Hp, int32_t Gp);
int32_t dv_lstm_backward(int32_t T, int64_t B, int32_t I, int32_t H, int32_t Hp, int32_t Gp, const float *w_hh, const float *x, const float *h, const float *gates, const float *c, const float *dh_out, int32_t dh_stride, float *dw_t, float *dbias, float *scratch);
int64_t dv_loss_scratch(int32_t T, int64_t B, int32_t A, int32_t Ap, int32_t Hp);
int32_t dv_a2c_loss(int32_t T, int64_t B, int32_t H, int32_t Hp, int32_t A, int32_t Ap, const LossSpec *spec, const float *w_heads, const float *h, const float *outputs, const int64_t *actions, const float *signal, float *dh, float *d_heads_t, float *d_b_heads, double *terms, float *scratch);
int64_t dv_update_kept(int32_t T, int64_t B, int32_t I, int32_t H, int32_t A);
int32_t dv_update(const Update *u, const LossSpec *spec, const Task *task, const float *trial_noise, const float *action_noise, float *x, int64_t *actions, float *rewards, float *regrets, double *terms);
double dv_clip_rmsprop(int32_t n, float *const *params, float *const *grads, float *const *square_avg, float *const *steps, const int64_t *sizes, double max_norm, float lr, float alpha, float eps);

#endif
