/* dist_vpg's native hot path: the acting loop and the LSTM's backward recurrence.
 *
 * Built by dist_vpg/native/build.py with the system C compiler (-O3 -march=native) into a shared
 * library loaded through ctypes; no Python and no torch dispatch per trial. The torch rollouts in
 * dist_vpg/rollout.py compute the same functions and are the reference the tests compare against.
 *
 * Layouts (all row-major float32 unless said): time first, then episode, then feature.
 * Gate order is nn.LSTM's: input, forget, cell, output.
 *
 * Both loops run time outermost and episodes in tiles (TILE: four or six, by target): the matrix
 * products of a trial are [TILE, K] x [K, N] tiles whose accumulators stay in vector registers, so
 * each row of weights loaded serves TILE episodes. Weight rows are padded by the caller to a
 * multiple of 16 floats (VW), a multiple of every vector length VL the kernels are built for: 16
 * floats with AVX-512, 8 with AVX, 4 otherwise. The gates' nonlinearities are written on vectors
 * too, not left to the compiler's vectorizer, which vectorizes them for some targets and not for
 * others: with gcc 12 for znver3 (AVX2) it left them scalar, and with the vectors then 16 floats
 * wide the update at 64 episodes took 118 ms, against 12 ms with both put right.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "interface.h"
#include "task.h"

/* A task's step (task.h), called through the address its unit hands over. */
typedef Outcome (*Step)(void *state, int64_t b, int32_t action, const float *u, int32_t t, float *obs);

/* exp by range reduction to [-ln2/2, ln2/2] and a degree-7 polynomial: within 2 ulp of expf over
 * the clamped range, branch-free, so the compiler vectorizes the loops that call it. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    /* n = round(x / ln2) by the 1.5 * 2^23 trick, which leaves n in the low bits of `shifted`. */
    const float shifted = x * 1.44269504088896341f + 12582912.0f;
    const float n = shifted - 12582912.0f;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    __builtin_memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23; /* 2^n as a float's exponent */
    float scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* VL floats a vector. The products run in chunks of TILE episodes (ROWS rows of a weight gradient)
 * by NVMAX vectors of columns, so that their accumulators, the NVMAX vectors loaded and a broadcast
 * fit the registers there are: 32 with AVX-512, 16 otherwise. Each weight row loaded serves TILE
 * episodes, and the weights (40 KB for the default agent) are read from L2: with AVX2 on znver3,
 * 6 x 2 was 1.14-1.21 times faster than 4 x 3, and 4 x 3 1.07 times faster than 4 x 2
 * (bench_kernels, 64 and 256 episodes; 8 x 1 was no faster). */
#if defined(__AVX512F__)
enum { VL = 16, NVMAX = 4, TILE = 4, ROWS = 4 };
#elif defined(__AVX__)
enum { VL = 8, NVMAX = 2, TILE = 6, ROWS = 6 };
#else
enum { VL = 4, NVMAX = 2, TILE = 4, ROWS = 4 };
#endif
_Static_assert(VW % VL == 0, "the padding must hold whole vectors");

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* The first n <= VL floats at p, zeros after; and the first n lanes of v stored at p. */
static inline vf vload_n(const float *p, int n) {
    if (n == VL) return vload(p);
    vf v = {0};
    memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
}
static inline void vstore_n(float *p, vf v, int n) {
    if (n == VL) vstore(p, v);
    else memcpy(p, &v, sizeof(float) * (size_t)n);
}

static inline vf vsplat(float x) { return (vf){0} + x; }

/* Lane by lane: where `take`, a; elsewhere b. */
static inline vf vselect(vi take, vf a, vf b) { return (vf)((take & (vi)a) | (~take & (vi)b)); }

/* exp_approx on each lane: the same operations in the same order. */
static inline vf vexp(vf x) {
    x = vselect(x < -87.0f, vsplat(-87.0f), x);
    x = vselect(x > 88.0f, vsplat(88.0f), x);
    const vf shifted = x * 1.44269504088896341f + 12582912.0f;
    const vf n = shifted - 12582912.0f;
    vf r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    vf p = vsplat(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;
    vf scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

static inline vf vtanh(vf x) { return 2.0f / (1.0f + vexp(-2.0f * x)) - 1.0f; }

/* A chunk of NV vectors of columns from n0: out[e][n0 : n0 + NV * VW] = init + sum_k in[e][k] * w[k]
 * for the TILE rows e, the TILE * NV accumulators held in registers. Inlined with NV a constant. */
static inline __attribute__((always_inline)) void matmul_chunk(
    int K, int N, int n0, const int NV, const float *restrict w, const float *restrict init,
    const float *const in[TILE], float *const out[TILE]) {
    vf a[TILE][4];
    for (int v = 0; v < NV; v++) {
        const vf start = init ? vload(init + n0 + v * VL) : (vf){0};
        for (int e = 0; e < TILE; e++) a[e][v] = start;
    }
    const float *row = w + n0;
    for (int k = 0; k < K; k++, row += N) {
        vf wv[4];
        for (int v = 0; v < NV; v++) wv[v] = vload(row + v * VL);
        for (int e = 0; e < TILE; e++) {
            const float s = in[e][k];
            for (int v = 0; v < NV; v++) a[e][v] += s * wv[v];
        }
    }
    for (int e = 0; e < TILE; e++)
        for (int v = 0; v < NV; v++) vstore(out[e] + n0 + v * VL, a[e][v]);
}

/* out[e][0:N] = init[0:N] + sum_k in[e][k] * w[k][0:N] for the TILE rows e; w is [K, N] with N a
 * multiple of VW; init may be NULL (zeros). NVMAX vectors of columns at a time, then the rest in
 * one chunk, so every weight row loaded serves TILE episodes and as many accumulators as fit. */
static void matmul_tile(int K, int N, const float *restrict w, const float *restrict init,
                        const float *const in[TILE], float *const out[TILE]) {
    int n0 = 0;
    for (; n0 + NVMAX * VL <= N; n0 += NVMAX * VL) matmul_chunk(K, N, n0, NVMAX, w, init, in, out);
    switch ((N - n0) / VL) {
    case 3: matmul_chunk(K, N, n0, 3, w, init, in, out); break;
    case 2: matmul_chunk(K, N, n0, 2, w, init, in, out); break;
    case 1: matmul_chunk(K, N, n0, 1, w, init, in, out); break;
    default: break;
    }
}

/* dw[k][n0 : n0 + NV * VL] += sum_b z[b][k0 + j] * dg[b][n0 : ...] for the ROWS rows k = k0 + j
 * below K: ROWS * NV accumulators over all B episodes, added to dw once. z rows are zs floats apart. */
static inline __attribute__((always_inline)) void outer_chunk(
    int64_t B, int K, int k0, int n0, const int NV, const float *restrict z, int zs,
    const float *restrict dg, int Gp, float *restrict dw) {
    vf a[ROWS][4];
    for (int j = 0; j < ROWS; j++)
        for (int v = 0; v < NV; v++) a[j][v] = (vf){0};
    int ks[ROWS]; /* rows past K read row K - 1 again; their sums are dropped */
    for (int j = 0; j < ROWS; j++) ks[j] = k0 + j < K ? k0 + j : K - 1;
    for (int64_t b = 0; b < B; b++) {
        const float *zb = z + b * zs, *gb = dg + b * Gp + n0;
        vf g[4];
        for (int v = 0; v < NV; v++) g[v] = vload(gb + v * VL);
        for (int j = 0; j < ROWS; j++) {
            const float s = zb[ks[j]];
            for (int v = 0; v < NV; v++) a[j][v] += s * g[v];
        }
    }
    for (int j = 0; j < ROWS && k0 + j < K; j++)
        for (int v = 0; v < NV; v++) {
            float *d = dw + (int64_t)(k0 + j) * Gp + n0 + v * VL;
            vstore(d, vload(d) + a[j][v]);
        }
}

/* dw [K, Gp] += z^T dg: z [B, K] (rows zs apart), dg [B, Gp]. One trial's share of a weight
 * gradient, summed over the episodes while its rows are still in cache. */
static void outer_accumulate(int64_t B, int K, const float *restrict z, int zs, const float *restrict dg,
                             int Gp, float *restrict dw) {
    for (int k0 = 0; k0 < K; k0 += ROWS) {
        int n0 = 0;
        for (; n0 + NVMAX * VL <= Gp; n0 += NVMAX * VL) outer_chunk(B, K, k0, n0, NVMAX, z, zs, dg, Gp, dw);
        switch ((Gp - n0) / VL) {
        case 3: outer_chunk(B, K, k0, n0, 3, z, zs, dg, Gp, dw); break;
        case 2: outer_chunk(B, K, k0, n0, 2, z, zs, dg, Gp, dw); break;
        case 1: outer_chunk(B, K, k0, n0, 1, z, zs, dg, Gp, dw); break;
        default: break;
        }
    }
}

/* One episode's cell update from its gate pre-activations pre[4H]: writes the gates after their
 * nonlinearities g[4H], the cell c[H] and the hidden state h[H]. */
static void cell_forward(int H, const float *restrict pre, const float *restrict c_prev,
                         float *restrict g, float *restrict h, float *restrict c) {
    for (int j = 0; j < H; j += VL) {
        const int n = H - j < VL ? H - j : VL;
        const vf i = vsigmoid(vload_n(pre + j, n)), f = vsigmoid(vload_n(pre + H + j, n));
        const vf gg = vtanh(vload_n(pre + 2 * H + j, n)), o = vsigmoid(vload_n(pre + 3 * H + j, n));
        const vf cj = f * vload_n(c_prev + j, n) + i * gg;
        vstore_n(g + j, i, n);
        vstore_n(g + H + j, f, n);
        vstore_n(g + 2 * H + j, gg, n);
        vstore_n(g + 3 * H + j, o, n);
        vstore_n(c + j, cj, n);
        vstore_n(h + j, o * vtanh(cj), n);
    }
}

/* A softmax of the policy's logits[A], then inverse-CDF sampling with the uniform u: the action
 * is the number of cumulative probabilities (all but the last) that u exceeds, as in
 * rollout.sample_actions. */
static int32_t sample(int A, const float *logits, float u, float *probs) {
    float top = -3.4e38f, total = 0.0f;
    for (int a = 0; a < A; a++) top = logits[a] > top ? logits[a] : top;
    for (int a = 0; a < A; a++) {
        probs[a] = exp_approx(logits[a] - top);
        total += probs[a];
    }
    int32_t action = 0;
    float cdf = 0.0f;
    for (int a = 0; a + 1 < A; a++) {
        cdf += probs[a] / total;
        action += u > cdf;
    }
    return action;
}

/* The rest of the next trial's input after the task's observation (its first `obs` floats, which
 * the task's step wrote): one-hot action, reward (times agent.reward_scale), [trial index t / T]. */
static void next_input(float *x, int obs, int A, int trial_input, int32_t action, float reward, int t_next, int T) {
    int i = obs;
    for (int a = 0; a < A; a++) x[i++] = a == action ? 1.0f : 0.0f;
    x[i++] = reward;
    if (trial_input) x[i++] = (float)t_next / (float)T;
}

/* What each status of interface.h means, as the Python wrapper says it. */
const char *dv_error(int32_t status) {
    switch (status) {
    case DV_OK: return "no error";
    case DV_BAD_SIZE:
        return "a size is out of range (trials, episodes, inputs, hidden units, actions and the reward's "
               "scale must be positive, a row no narrower than its data, the episodes whole tasks)";
    case DV_BAD_PADDING: return "a padded width is not a multiple of VW floats or is narrower than what it pads";
    case DV_BAD_TASK: return "the task's native state lacks what its step reads (an array, or uniforms per trial)";
    case DV_MISSING: return "an array the kernel reads or writes was not given";
    case DV_BAD_ACTION: return "a recorded action is not one of the policy's actions";
    default: return "an unknown status";
    }
}

static int padded_ok(int64_t width, int64_t needed) { return width % VW == 0 && width >= needed; }

/* The weights as the kernels read them, from the agent's parameters in torch's layouts: w_ih
 * [4H, I], w_hh [4H, H], b_ih, b_hh [4H], w_pol [A, H], b_pol [A], w_val [H], b_val [1]. Writes
 * into `out` (dv_stage_size floats), the parts of dv_stage_parts one after another with zeros in the padding: dv_act's w_t
 * [I + H, Gp], bias [Gp], w_pol_t [H, Ap] and b_pol [Ap]; then dv_lstm_backward's w_hh [4H, Hp]
 * and dv_a2c_loss's w_heads [A + 1, Hp] (the policy's rows, then the value's). One call where
 * torch took a dozen small ops. */
void dv_stage_parts(int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap, int64_t *sizes) {
    const int64_t Hp = (H + VW - 1) / VW * VW;
    sizes[STAGE_W_T] = (int64_t)(I + H) * Gp;
    sizes[STAGE_BIAS] = Gp;
    sizes[STAGE_W_POL_T] = (int64_t)H * Ap;
    sizes[STAGE_B_POL] = Ap;
    sizes[STAGE_W_HH] = 4 * (int64_t)H * Hp;
    sizes[STAGE_W_HEADS] = (int64_t)(A + 1) * Hp;
}

int64_t dv_stage_size(int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap) {
    int64_t sizes[STAGE_PARTS], total = 0;
    dv_stage_parts(I, H, A, Gp, Ap, sizes);
    for (int k = 0; k < STAGE_PARTS; k++) total += sizes[k];
    return total;
}

void dv_stage(int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap, const float *w_ih, const float *w_hh,
              const float *b_ih, const float *b_hh, const float *w_pol, const float *b_pol,
              const float *w_val, const float *b_val, float *out) {
    const int G = 4 * H, K = I + H, Hp = (H + VW - 1) / VW * VW;
    float *w_t = out, *bias = w_t + (int64_t)K * Gp, *w_pol_t = bias + Gp, *b_heads = w_pol_t + (int64_t)H * Ap;
    float *w_hh_p = b_heads + Ap, *w_heads = w_hh_p + (int64_t)G * Hp;
    memset(out, 0, sizeof(float) * dv_stage_size(I, H, A, Gp, Ap));
    for (int g = 0; g < G; g++) memcpy(w_hh_p + (int64_t)g * Hp, w_hh + (int64_t)g * H, sizeof(float) * H);
    for (int a = 0; a < A; a++) memcpy(w_heads + (int64_t)a * Hp, w_pol + (int64_t)a * H, sizeof(float) * H);
    memcpy(w_heads + (int64_t)A * Hp, w_val, sizeof(float) * H);
    for (int g = 0; g < G; g++) {
        for (int k = 0; k < I; k++) w_t[(int64_t)k * Gp + g] = w_ih[(int64_t)g * I + k];
        for (int k = 0; k < H; k++) w_t[(int64_t)(I + k) * Gp + g] = w_hh[(int64_t)g * H + k];
        bias[g] = b_ih[g] + b_hh[g];
    }
    for (int k = 0; k < H; k++) {
        for (int a = 0; a < A; a++) w_pol_t[(int64_t)k * Ap + a] = w_pol[(int64_t)a * H + k];
        w_pol_t[(int64_t)k * Ap + A] = w_val[k];
    }
    for (int a = 0; a < A; a++) b_heads[a] = b_pol[a];
    b_heads[A] = b_val[0];
}

/* Play T trials of B episodes from a zero state. Writes inputs x [T, B, I], actions [T, B],
 * rewards and regrets [T, B], and h [T, B, H]; with `gates` and `c` non-null also the gates after
 * their nonlinearities [T, B, 4H] and the cells [T, B, H] that the backward needs, and with
 * `heads` non-null the heads' outputs [T, B, A + 1]: the logits, then the value. `scratch` holds
 * dv_act_scratch(B, I, H, A, Gp) floats. */
int64_t dv_act_scratch(int64_t B, int32_t I, int32_t H, int32_t A, int32_t Gp, int32_t Ap) {
    return (TILE + 1) * (int64_t)(I + H) + (TILE + 2) * (int64_t)Gp + 4 * (int64_t)H + A + (TILE + 1) * (int64_t)Ap +
           2 * B * H;
}

int32_t dv_act(int32_t T, int64_t B, int32_t trial_input, float reward_scale, const Weights *w, const Task *task,
               const float *trial_noise, const float *action_noise, float *x, int64_t *actions,
               float *rewards, float *regrets, float *h, float *gates, float *c, float *heads,
               float *scratch) {
    const int H = w->hidden, G = 4 * H, Gp = w->gates_padded, I = w->inputs, A = w->actions;
    const int K = I + H, D = task->trial_draws, Ap = w->actions_padded;
    if (T <= 0 || B <= 0 || I <= 0 || H <= 0 || A <= 0) return DV_BAD_SIZE;
    if (!(reward_scale > 0.0f && reward_scale < INFINITY)) return DV_BAD_SIZE;
    if (!padded_ok(Gp, G) || !padded_ok(Ap, A + 1)) return DV_BAD_PADDING;
    if (!x || !actions || !rewards || !regrets || !h || !scratch || !trial_noise || !action_noise) return DV_MISSING;
    if (!w->w_t || !w->bias || !w->w_pol_t || !w->b_pol || (gates != NULL) != (c != NULL)) return DV_MISSING;
    if (!task->state || !task->step || (task->obs > 0 && !task->first_obs)) return DV_MISSING;
    if (task->obs < 0 || task->obs > I || D < 0) return DV_BAD_TASK;
    const Step step = (Step)task->step;
    float *zeros = scratch, *z = zeros + K + Gp, *pre = z + TILE * K, *dummy = pre + TILE * Gp;
    float *g_tmp = dummy + Gp, *probs = g_tmp + G, *logits = probs + A, *no_logits = logits + TILE * Ap;
    float *cells = no_logits + Ap; /* [2, B, H]: the cells of the last two trials, in inference */
    memset(zeros, 0, sizeof(float) * (K + Gp));
    memset(x, 0, sizeof(float) * (size_t)T * B * I);
    if (task->obs > 0) /* the first trial's observation; no action, reward or trial index yet */
        for (int64_t b = 0; b < B; b++) memcpy(x + b * I, task->first_obs + b * task->obs, sizeof(float) * task->obs);
    const float *z_rows[TILE], *h_rows[TILE];
    float *pre_rows[TILE], *logit_rows[TILE];
    for (int t = 0; t < T; t++) {
        for (int64_t b0 = 0; b0 < B; b0 += TILE) {
            for (int e = 0; e < TILE; e++) {
                const int64_t b = b0 + e, tb = (int64_t)t * B + b;
                z_rows[e] = b < B ? z + e * K : zeros;
                pre_rows[e] = b < B ? pre + e * Gp : dummy;
                h_rows[e] = b < B ? h + tb * H : zeros;
                logit_rows[e] = b < B ? logits + e * Ap : no_logits;
                if (b >= B) continue;
                memcpy(z + e * K, x + tb * I, sizeof(float) * I);
                memcpy(z + e * K + I, t > 0 ? h + (tb - B) * H : zeros, sizeof(float) * H);
            }
            matmul_tile(K, Gp, w->w_t, w->bias, z_rows, pre_rows);
            for (int e = 0; e < TILE && b0 + e < B; e++) {
                const int64_t b = b0 + e, tb = (int64_t)t * B + b;
                const float *c_prev = t == 0 ? zeros : c ? c + (tb - B) * H : cells + ((t + 1) % 2 * B + b) * H;
                float *c_now = c ? c + tb * H : cells + (t % 2 * B + b) * H;
                cell_forward(H, pre + e * Gp, c_prev, gates ? gates + tb * G : g_tmp, h + tb * H, c_now);
            }
            matmul_tile(H, Ap, w->w_pol_t, w->b_pol, h_rows, logit_rows);
            for (int e = 0; e < TILE && b0 + e < B; e++) {
                const int64_t b = b0 + e, tb = (int64_t)t * B + b;
                const int32_t action = sample(A, logits + e * Ap, action_noise[tb], probs);
                if (heads) memcpy(heads + tb * (A + 1), logits + e * Ap, sizeof(float) * (A + 1));
                float *next = t + 1 < T ? x + (tb + B) * I : NULL; /* the next trial's input */
                const Outcome out = step(task->state, b, action, trial_noise + tb * D, t, task->obs > 0 ? next : NULL);
                actions[tb] = action;
                rewards[tb] = out.reward;
                regrets[tb] = out.regret;
                if (next) next_input(next, task->obs, A, trial_input, action, reward_scale * out.reward, t + 1, T);
            }
        }
    }
    return DV_OK;
}

/* One trial of one episode: dh (what reaches h_t) and dc (what reaches c_t from trial t+1) ->
 * the gate gradients dg[4H]; dc becomes what reaches c_{t-1}. */
static void cell_backward(int H, const float *restrict g, const float *restrict c_now,
                          const float *restrict c_prev, const float *restrict dh,
                          float *restrict dc, float *restrict dg) {
    for (int k = 0; k < H; k += VL) {
        const int n = H - k < VL ? H - k : VL;
        const vf i = vload_n(g + k, n), f = vload_n(g + H + k, n);
        const vf gg = vload_n(g + 2 * H + k, n), o = vload_n(g + 3 * H + k, n);
        const vf tc = vtanh(vload_n(c_now + k, n)), dhk = vload_n(dh + k, n);
        const vf dck = dhk * o * (1.0f - tc * tc) + vload_n(dc + k, n);
        vstore_n(dg + k, dck * gg * i * (1.0f - i), n);
        vstore_n(dg + H + k, dck * vload_n(c_prev + k, n) * f * (1.0f - f), n);
        vstore_n(dg + 2 * H + k, dck * i * (1.0f - gg * gg), n);
        vstore_n(dg + 3 * H + k, dhk * tc * o * (1.0f - o), n);
        vstore_n(dc + k, dck * f, n);
    }
}

/* Back-propagation through time of the LSTM with its weight gradients: from dL/dh [T, B, H] (what
 * the heads sent back; rows dh_stride floats apart) to dw_t [I + H, Gp] = d[W_ih | W_hh]^T (zero
 * columns past 4H) and dbias [Gp].
 * Each trial's gate gradients [B, Gp] are used at once, while in cache: for the next trial back
 * (dh_{t-1} = dg W_hh) and for the weights (x_t and h_{t-1} against dg), so nothing [T, B, 4H]
 * is written. x [T, B, I], h [T, B, H], gates [T, B, 4H], c [T, B, H] are the rollout's; w_hh is
 * [4H, Hp], H rounded up to VW with zero columns; scratch holds dv_backward_scratch(B, H, Hp, Gp)
 * floats. dw_t and dbias are overwritten. */
int64_t dv_backward_scratch(int64_t B, int32_t H, int32_t Hp, int32_t Gp) {
    return B * (int64_t)(2 * H + Hp + Gp) + 2 * (int64_t)Gp + Hp;
}

int32_t dv_lstm_backward(int32_t T, int64_t B, int32_t I, int32_t H, int32_t Hp, int32_t Gp,
                         const float *w_hh, const float *x, const float *h, const float *gates,
                         const float *c, const float *dh_out, int32_t dh_stride, float *dw_t, float *dbias,
                         float *scratch) {
    const int G = 4 * H;
    if (T <= 0 || B <= 0 || I <= 0 || H <= 0 || dh_stride < H) return DV_BAD_SIZE;
    if (!padded_ok(Hp, H) || !padded_ok(Gp, G)) return DV_BAD_PADDING;
    if (!w_hh || !x || !h || !gates || !c || !dh_out || !dw_t || !dbias || !scratch) return DV_MISSING;
    float *dc = scratch, *dh_next = dc + B * H, *dh = dh_next + B * Hp, *dg = dh + B * H;
    float *zeros = dg + B * Gp, *dummy = zeros + Gp;
    memset(scratch, 0, sizeof(float) * dv_backward_scratch(B, H, Hp, Gp));
    memset(dw_t, 0, sizeof(float) * (size_t)(I + H) * Gp);
    memset(dbias, 0, sizeof(float) * Gp);
    const float *dg_rows[TILE];
    float *out_rows[TILE];
    for (int t = T - 1; t >= 0; t--) {
        for (int64_t b = 0; b < B; b++) {
            const int64_t tb = (int64_t)t * B + b;
            float *dhb = dh + b * H, *dgb = dg + b * Gp;
            for (int k = 0; k < H; k++) dhb[k] = dh_out[tb * dh_stride + k] + dh_next[b * Hp + k];
            const float *c_prev = t > 0 ? c + (tb - B) * H : zeros;
            cell_backward(H, gates + tb * G, c + tb * H, c_prev, dhb, dc + b * H, dgb);
            for (int k = 0; k < G; k++) dbias[k] += dgb[k];
        }
        outer_accumulate(B, I, x + (int64_t)t * B * I, I, dg, Gp, dw_t);
        if (t == 0) break;
        outer_accumulate(B, H, h + (int64_t)(t - 1) * B * H, H, dg, Gp, dw_t + (int64_t)I * Gp);
        for (int64_t b0 = 0; b0 < B; b0 += TILE) {
            for (int e = 0; e < TILE; e++) {
                const int64_t b = b0 + e;
                dg_rows[e] = b < B ? dg + b * Gp : zeros;
                out_rows[e] = b < B ? dh_next + b * Hp : dummy;
            }
            matmul_tile(G, Hp, w_hh, NULL, dg_rows, out_rows);
        }
    }
    return DV_OK;
}

/* The A2C loss (dist_vpg/losses.py: a2c_loss) of a played batch, and its gradient back to the
 * hidden states, from the heads' outputs dv_act wrote (logits = h W_pol^T + b_pol, then the value
 * h w_val + b_val). Summed over the T trials, averaged over the B episodes.
 * scratch holds dv_loss_scratch(T, B, A, Ap, Hp) floats. The heads are w_heads [A + 1, Hp]: the
 * policy's rows, then the value's, zero columns past H. Writes dh [T, B, Hp] = dL/dh (zero
 * columns past H), the heads' gradients d_heads_t [H, Ap] = (dW_pol | dw_val)^T and d_b_heads [Ap]
 * (overwritten; zeros past A + 1), and terms [4]: total, policy, value, entropy. */
int64_t dv_loss_scratch(int32_t T, int64_t B, int32_t A, int32_t Ap, int32_t Hp) {
    return (int64_t)T * B * (3 + Ap) + T + 2 * (int64_t)A + Ap + Hp;
}

int32_t dv_a2c_loss(int32_t T, int64_t B, int32_t H, int32_t Hp, int32_t A, int32_t Ap, const LossSpec *spec,
                    const float *w_heads, const float *h, const float *outputs, const int64_t *actions,
                    const float *signal, float *dh, float *d_heads_t, float *d_b_heads, double *terms,
                    float *scratch) {
    const int64_t TB = (int64_t)T * B;
    if (T <= 0 || B <= 0 || H <= 0 || A <= 0 || spec->episodes_per_task < 1 || B % spec->episodes_per_task)
        return DV_BAD_SIZE;
    if (!padded_ok(Hp, H) || !padded_ok(Ap, A + 1)) return DV_BAD_PADDING;
    if (!w_heads || !h || !outputs || !actions || !signal || !dh || !d_heads_t || !d_b_heads || !terms || !scratch)
        return DV_MISSING;
    for (int64_t tb = 0; tb < TB; tb++)
        if (actions[tb] < 0 || actions[tb] >= A) return DV_BAD_ACTION;
    float *v = scratch, *adv = v + TB, *target = adv + TB, *dz = target + TB; /* dz [TB, Ap] */
    float *scale = dz + TB * Ap, *z = scale + T, *p = z + A, *zeros = p + A, *dummy = zeros + Ap;
    const float gamma = spec->gamma, decay = spec->gamma * spec->lam, inv_b = 1.0f / (float)B;
    const int K = spec->episodes_per_task;
    memset(dz, 0, sizeof(float) * TB * Ap);
    memset(zeros, 0, sizeof(float) * Ap);
    /* The horizons: the discounted count of trials left, the value head's unit under value_scale. */
    double left = 0.0;
    for (int t = T - 1; t >= 0; t--) {
        left = 1.0 + gamma * left;
        scale[t] = spec->value_scale ? (float)left : 1.0f;
    }
    for (int64_t tb = 0; tb < TB; tb++) v[tb] = outputs[tb * (A + 1) + A] * scale[tb / B];
    /* GAE(lambda), nothing bootstrapped past the last trial; the critic's target is adv + V. */
    for (int64_t b = 0; b < B; b++) {
        float acc = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            const int64_t tb = (int64_t)t * B + b;
            const float next = t + 1 < T ? v[tb + B] : 0.0f;
            acc = signal[tb] + gamma * next - v[tb] + decay * acc;
            adv[tb] = acc;
            target[tb] = acc + v[tb];
        }
    }
    if (K > 1) /* each advantage minus the mean of its group's others: k / (k - 1) * (a - mean) */
        for (int64_t g0 = 0; g0 < TB; g0 += K) {
            float mean = 0.0f;
            for (int j = 0; j < K; j++) mean += adv[g0 + j];
            mean /= (float)K;
            for (int j = 0; j < K; j++) adv[g0 + j] = (adv[g0 + j] - mean) * ((float)K / (float)(K - 1));
        }
    /* Each trial's gradient in the heads' outputs: dz[tb] = (d/dlogits, d/dvalue). */
    double policy = 0.0, value = 0.0, entropy = 0.0;
    for (int64_t tb = 0; tb < TB; tb++) {
        float top = -3.4e38f, total = 0.0f;
        for (int a = 0; a < A; a++) {
            z[a] = outputs[tb * (A + 1) + a];
            top = z[a] > top ? z[a] : top;
        }
        for (int a = 0; a < A; a++) total += exp_approx(z[a] - top);
        const float log_total = logf(total) + top;
        float ent = 0.0f;
        for (int a = 0; a < A; a++) {
            z[a] -= log_total; /* log p */
            p[a] = exp_approx(z[a]);
            ent -= p[a] * z[a];
        }
        const int64_t chosen = actions[tb];
        const float s = scale[tb / B], error = (target[tb] - v[tb]) / s;
        policy -= (double)z[chosen] * adv[tb];
        value += 0.5 * (double)error * error;
        entropy += ent;
        float *row = dz + tb * Ap;
        /* d/dlogit_a of -adv * log p_chosen - beta_e * entropy, each over B */
        for (int a = 0; a < A; a++)
            row[a] = inv_b * (-adv[tb] * ((a == chosen ? 1.0f : 0.0f) - p[a]) + spec->beta_e * p[a] * (z[a] + ent));
        row[A] = -inv_b * spec->beta_v * error; /* d/dvalue of beta_v * 0.5 * error^2 / B */
    }
    /* The heads' gradients (h against dz, summed over all trials) and dh = dz [W_pol; w_val]. */
    memset(d_heads_t, 0, sizeof(float) * (size_t)H * Ap);
    outer_accumulate(TB, H, h, H, dz, Ap, d_heads_t);
    memset(d_b_heads, 0, sizeof(float) * Ap);
    for (int64_t tb = 0; tb < TB; tb++)
        for (int j = 0; j < Ap; j++) d_b_heads[j] += dz[tb * Ap + j];
    const float *dz_rows[TILE];
    float *dh_rows[TILE];
    for (int64_t r0 = 0; r0 < TB; r0 += TILE) {
        for (int e = 0; e < TILE; e++) {
            dz_rows[e] = r0 + e < TB ? dz + (r0 + e) * Ap : zeros;
            dh_rows[e] = r0 + e < TB ? dh + (r0 + e) * Hp : dummy;
        }
        matmul_tile(A + 1, Hp, w_heads, NULL, dz_rows, dh_rows);
    }
    terms[1] = policy / B;
    terms[2] = value / B;
    terms[3] = entropy / B;
    terms[0] = terms[1] + spec->beta_v * terms[2] - spec->beta_e * terms[3];
    return DV_OK;
}

/* dst[r][c] += scale * src[c][r] for r < rows, c < cols: a gradient the kernels hold transposed
 * (src rows `stride` floats apart) added to torch's layout. The product is rounded before the sum,
 * as autograd scales a gradient and then accumulates it, and never fused into one: `tmp` holds the
 * rows * cols products until the barrier. */
static void add_transposed(int rows, int cols, const float *restrict src, int64_t stride, float scale,
                           float *restrict tmp, float *restrict dst) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) tmp[(int64_t)r * cols + c] = scale * src[(int64_t)c * stride + r];
    __asm__ volatile("" ::: "memory"); /* no fused multiply-add across it */
    for (int64_t i = 0; i < (int64_t)rows * cols; i++) dst[i] += tmp[i];
}

/* dv_update's kept buffer, part by part, each rounded up to VW floats. */
enum { KEPT_STAGE, KEPT_H, KEPT_GATES, KEPT_C, KEPT_HEADS, KEPT_SIGNAL, KEPT_DH, KEPT_D_HEADS, KEPT_D_B_HEADS,
       KEPT_DW, KEPT_DBIAS, KEPT_SCRATCH, KEPT_PARTS };

static int64_t round_vw(int64_t n) { return (n + VW - 1) / VW * VW; }

static void kept_parts(int32_t T, int64_t B, int32_t I, int32_t H, int32_t A, int64_t *sizes) {
    const int32_t Gp = (int32_t)round_vw(4 * H), Ap = (int32_t)round_vw(A + 1), Hp = (int32_t)round_vw(H);
    const int64_t TB = (int64_t)T * B;
    sizes[KEPT_STAGE] = dv_stage_size(I, H, A, Gp, Ap);
    sizes[KEPT_H] = TB * H;
    sizes[KEPT_GATES] = TB * 4 * H;
    sizes[KEPT_C] = TB * H;
    sizes[KEPT_HEADS] = TB * (A + 1);
    sizes[KEPT_SIGNAL] = TB;
    sizes[KEPT_DH] = TB * Hp;
    sizes[KEPT_D_HEADS] = (int64_t)H * Ap;
    sizes[KEPT_D_B_HEADS] = Ap;
    sizes[KEPT_DW] = (int64_t)(I + H) * Gp;
    sizes[KEPT_DBIAS] = Gp;
    int64_t scratch = dv_act_scratch(B, I, H, A, Gp, Ap);
    const int64_t loss = dv_loss_scratch(T, B, A, Ap, Hp), backward = dv_backward_scratch(B, H, Hp, Gp);
    const int64_t transposed = 4 * (int64_t)H * (I > H ? I : H) + (int64_t)(A + 1) * H;
    scratch = scratch > loss ? scratch : loss;
    scratch = scratch > backward ? scratch : backward;
    sizes[KEPT_SCRATCH] = scratch > transposed ? scratch : transposed;
    for (int k = 0; k < KEPT_PARTS; k++) sizes[k] = round_vw(sizes[k]);
}

int64_t dv_update_kept(int32_t T, int64_t B, int32_t I, int32_t H, int32_t A) {
    if (T <= 0 || B <= 0 || I <= 0 || H <= 0 || A <= 0) return -1;
    int64_t sizes[KEPT_PARTS], total = 0;
    kept_parts(T, B, I, H, A, sizes);
    for (int k = 0; k < KEPT_PARTS; k++) total += sizes[k];
    return total;
}

/* One rollout of an update, whole, in one call: the weights staged from torch's layouts (dv_stage),
 * B episodes of T trials played (dv_act, writing x [T, B, I], actions, rewards and regrets [T, B]),
 * the signal the loss learns from, the heads and the A2C loss with its gradient back to the hidden
 * states (dv_a2c_loss: terms [4] as there), the LSTM's backward (dv_lstm_backward), and
 * grad_scale times the whole gradient added to the gradients' buffers in torch's layouts. The same
 * numbers as those calls one after another with autograd accumulating their gradient. */
int32_t dv_update(const Update *u, const LossSpec *spec, const Task *task, const float *trial_noise,
                  const float *action_noise, float *x, int64_t *actions, float *rewards, float *regrets,
                  double *terms) {
    const int32_t T = u->trials, I = u->inputs, H = u->hidden, A = u->actions;
    const int64_t B = u->episodes;
    if (T <= 0 || B <= 0 || I <= 0 || H <= 0 || A <= 0) return DV_BAD_SIZE;
    if (u->signal != SIGNAL_REWARD && u->signal != SIGNAL_REGRET) return DV_BAD_SIZE;
    if (!u->w_ih || !u->w_hh || !u->b_ih || !u->b_hh || !u->w_pol || !u->b_pol || !u->w_val || !u->b_val)
        return DV_MISSING;
    if (!u->g_w_ih || !u->g_w_hh || !u->g_b_ih || !u->g_b_hh || !u->g_w_pol || !u->g_b_pol || !u->g_w_val ||
        !u->g_b_val || !u->kept || !terms)
        return DV_MISSING;
    const int32_t G = 4 * H, Gp = (int32_t)round_vw(G), Ap = (int32_t)round_vw(A + 1), Hp = (int32_t)round_vw(H);
    const int64_t TB = (int64_t)T * B;
    int64_t sizes[KEPT_PARTS], stage_sizes[STAGE_PARTS];
    float *part[KEPT_PARTS], *stage[STAGE_PARTS];
    kept_parts(T, B, I, H, A, sizes);
    part[0] = u->kept;
    for (int k = 1; k < KEPT_PARTS; k++) part[k] = part[k - 1] + sizes[k - 1];
    dv_stage_parts(I, H, A, Gp, Ap, stage_sizes);
    stage[0] = part[KEPT_STAGE];
    for (int k = 1; k < STAGE_PARTS; k++) stage[k] = stage[k - 1] + stage_sizes[k - 1];
    dv_stage(I, H, A, Gp, Ap, u->w_ih, u->w_hh, u->b_ih, u->b_hh, u->w_pol, u->b_pol, u->w_val, u->b_val,
             part[KEPT_STAGE]);
    const Weights w = {I, H, A, Gp, Ap, stage[STAGE_W_T], stage[STAGE_BIAS], stage[STAGE_W_POL_T], stage[STAGE_B_POL]};
    float *h = part[KEPT_H], *gates = part[KEPT_GATES], *c = part[KEPT_C], *heads = part[KEPT_HEADS];
    float *scratch = part[KEPT_SCRATCH];
    int32_t status = dv_act(T, B, u->trial_input, u->reward_scale, &w, task, trial_noise, action_noise, x, actions,
                            rewards, regrets, h, gates, c, heads, scratch);
    if (status != DV_OK) return status;
    float *signal = part[KEPT_SIGNAL];
    for (int64_t tb = 0; tb < TB; tb++) signal[tb] = u->signal == SIGNAL_REWARD ? rewards[tb] : -regrets[tb];
    float *dh = part[KEPT_DH], *d_heads_t = part[KEPT_D_HEADS], *d_b_heads = part[KEPT_D_B_HEADS];
    status = dv_a2c_loss(T, B, H, Hp, A, Ap, spec, stage[STAGE_W_HEADS], h, heads, actions, signal, dh, d_heads_t,
                         d_b_heads, terms, scratch);
    if (status != DV_OK) return status;
    float *dw_t = part[KEPT_DW], *dbias = part[KEPT_DBIAS];
    status = dv_lstm_backward(T, B, I, H, Hp, Gp, stage[STAGE_W_HH], x, h, gates, c, dh, Hp, dw_t, dbias, scratch);
    if (status != DV_OK) return status;
    const float s = u->grad_scale;
    add_transposed(G, I, dw_t, Gp, s, scratch, u->g_w_ih);
    add_transposed(G, H, dw_t + (int64_t)I * Gp, Gp, s, scratch, u->g_w_hh);
    add_transposed(G, 1, dbias, 1, s, scratch, u->g_b_ih);
    add_transposed(G, 1, dbias, 1, s, scratch, u->g_b_hh);
    add_transposed(A, H, d_heads_t, Ap, s, scratch, u->g_w_pol);
    add_transposed(A, 1, d_b_heads, 1, s, scratch, u->g_b_pol);
    add_transposed(1, H, d_heads_t + A, Ap, s, scratch, u->g_w_val);
    add_transposed(1, 1, d_b_heads + A, 1, s, scratch, u->g_b_val);
    return DV_OK;
}

/* The optimizer step over n parameter tensors of sizes[i] floats: the gradients' global norm
 * (before clipping, as torch.nn.utils.clip_grad_norm_ returns it), then, when it is finite, the
 * gradients scaled by min(1, max_norm / (norm + 1e-6)) in place and one RMSprop step
 * (torch.optim.RMSprop without momentum, centering or weight decay): square_avg = alpha *
 * square_avg + (1 - alpha) g^2; p -= lr g / (sqrt(square_avg) + eps); each tensor's step count
 * (steps[i], one float) + 1. Returns the norm. */
double dv_clip_rmsprop(int32_t n, float *const *params, float *const *grads, float *const *square_avg,
                       float *const *steps, const int64_t *sizes, double max_norm, float lr, float alpha,
                       float eps) {
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        const float *g = grads[i];
        float part = 0.0f;
        for (int64_t k = 0; k < sizes[i]; k++) part += g[k] * g[k];
        total += part;
    }
    const double norm = sqrt(total);
    if (!isfinite(norm)) return norm;
    const double coef = max_norm / (norm + 1e-6);
    const float scale = coef < 1.0 ? (float)coef : 1.0f;
    for (int32_t i = 0; i < n; i++) {
        float *restrict p = params[i], *restrict g = grads[i], *restrict s = square_avg[i];
        for (int64_t k = 0; k < sizes[i]; k++) {
            const float gk = g[k] * scale;
            g[k] = gk;
            s[k] = s[k] * alpha + (1.0f - alpha) * gk * gk;
            p[k] -= lr * gk / (sqrtf(s[k]) + eps);
        }
        *steps[i] += 1.0f;
    }
    return norm;
}
