/* Restless bandits' players in C: the Rescorla-Wagner fits and the exact filter's step, each the
 * reference's function in dist_vpg/tasks/restless/players.py computed in one call. Built into a
 * library of its own (dist_vpg/native/build.py), its functions typed from players.h. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "players.h"

enum { LANES = 8 }; /* doubles side by side: the Newton sums run on vectors of LANES */

typedef double vlanes __attribute__((vector_size(LANES * sizeof(double))));
typedef int64_t vmask __attribute__((vector_size(LANES * sizeof(int64_t))));

static inline vlanes vsplat(double x) { return (vlanes){0} + x; }

/* Lane by lane: where `take`, a; elsewhere b. */
static inline vlanes vselect(vmask take, vlanes a, vlanes b) { return (vlanes)((take & (vmask)a) | (~take & (vmask)b)); }

/* exp in double precision on each lane: n = round(x / ln2) by the 1.5 * 2^52 trick, ln2 split in
 * two for the reduction, and Taylor's series to degree 13 on [-ln2/2, ln2/2] (remainder below 2e-16
 * relative); x clamped to [-708, 708]. Written on vectors rather than left to the compiler's
 * vectorizer, which leaves the clamp's branches scalar for some targets (gcc 12 for znver3: the
 * restless players' evaluation took 152 s there, against 11-13 s on AVX-512). */
static inline vlanes vexp(vlanes x) {
    x = vselect(x < -708.0, vsplat(-708.0), x);
    x = vselect(x > 708.0, vsplat(708.0), x);
    const vlanes shifted = x * 1.4426950408889634 + 6755399441055744.0;
    const vlanes n = shifted - 6755399441055744.0;
    const vlanes r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    vlanes p = vsplat(1.0 / 6227020800.0);
    static const double inverse_factorials[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                                1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                                                1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
#pragma GCC unroll 13
    for (int i = 0; i < 13; i++) p = p * r + inverse_factorials[i];
    vmask bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4338000000000000LL + 1023) << 52; /* 2^n as a double's exponent */
    vlanes scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* log(1 + e) for e in [0, 1] on each lane: 2 atanh(s) with s = e / (2 + e) in [0, 1/3], by its
 * series to s^37 (remainder below 1e-18). */
static inline vlanes vlog1p_unit(vlanes e) {
    const vlanes s = e / (2.0 + e), s2 = s * s;
    static const double odd_inverses[] = {1.0 / 35, 1.0 / 33, 1.0 / 31, 1.0 / 29, 1.0 / 27, 1.0 / 25,
                                          1.0 / 23, 1.0 / 21, 1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13,
                                          1.0 / 11, 1.0 / 9,  1.0 / 7,  1.0 / 5,  1.0 / 3,  1.0};
    vlanes p = vsplat(1.0 / 37);
#pragma GCC unroll 18
    for (int i = 0; i < 18; i++) p = p * s2 + odd_inverses[i];
    return 2.0 * s * p;
}

/* Rescorla-Wagner fits (dist_vpg.tasks.restless.players.rw_fits, the reference): for each learning
 * rate alphas[k], q_t the RW estimate before trial t of each of N episodes (q_0 = 1/2, q += alpha
 * (seen - q)), x = (2q - 1) * sign (+1 where arm 0 was chosen, -1 for arm 1), and the inverse
 * temperature in [0, beta_max] that maximizes sum log sigmoid(beta x) by Newton's method, each rate
 * stopped once its step is within tol * (1 + beta). The first rate starts from beta = 1, each next one
 * from the last one's beta where that lies inside the bounds. seen, sign: [T, N] float64; x: scratch
 * [T * N + 8]. Writes betas[k] and the log-likelihood log_likelihoods[k]. */
void dv_rw_fits(int32_t T, int64_t N, int32_t K, const double *alphas, const double *seen, const double *sign,
                double beta_max, int32_t steps, double tol, double *x, double *betas,
                double *log_likelihoods) {
    const int64_t M = (int64_t)T * N, padded = (M + LANES - 1) / LANES * LANES;
    double beta = 1.0;
    for (int32_t k = 0; k < K; k++) {
        const double alpha = alphas[k];
        for (int64_t n = 0; n < N; n++) {
            double q = 0.5;
            for (int32_t t = 0; t < T; t++) {
                const int64_t i = (int64_t)t * N + n;
                x[i] = (2.0 * q - 1.0) * sign[i];
                q = q + alpha * (seen[i] - q);
            }
        }
        for (int64_t i = M; i < padded; i++) x[i] = 0.0; /* adds 0 to the slope and the curve */
        if (!(beta > 0.0 && beta < beta_max)) beta = 1.0;
        for (int32_t step = 0; step < steps; step++) {
            vlanes slope = {0}, curve = {0};
            for (int64_t i = 0; i < padded; i += LANES) {
                vlanes xi;
                memcpy(&xi, x + i, sizeof xi);
                const vlanes p_wrong = 1.0 / (1.0 + vexp(beta * xi)); /* sigmoid(-z) */
                slope += xi * p_wrong;
                curve += xi * xi * p_wrong * (1.0 - p_wrong);
            }
            double slope_sum = 0.0, curve_sum = 0.0;
            for (int j = 0; j < LANES; j++) slope_sum += slope[j], curve_sum += curve[j];
            const double before = beta;
            beta += slope_sum / (curve_sum > 1e-12 ? curve_sum : 1e-12);
            beta = beta < 0.0 ? 0.0 : beta > beta_max ? beta_max : beta;
            if (fabs(beta - before) <= tol * (1.0 + beta)) break;
        }
        vlanes ll = {0}; /* log sigmoid(z) = -(max(0, -z) + log1p(exp(-|z|))) */
        for (int64_t i = 0; i < padded; i += LANES) {
            vlanes xi;
            memcpy(&xi, x + i, sizeof xi);
            const vlanes z = beta * xi, minus_abs = vselect(z < 0.0, z, -z), zero = {0};
            ll -= vselect(z < 0.0, -z, zero) + vlog1p_unit(vexp(minus_abs));
        }
        log_likelihoods[k] = (padded - M) * vlog1p_unit(vsplat(1.0))[0]; /* what the padding's x = 0 took */
        for (int j = 0; j < LANES; j++) log_likelihoods[k] += ll[j];
        betas[k] = beta;
    }
}

/* Restless bandits' exact filter (dist_vpg.tasks.restless.players.Filter.update, the reference): each
 * episode's posterior over (volatility c, cell g of p) weighed by the outcome's likelihood (centres[g]
 * for a 1 from arm 0's side, 1 - centres[g] for a 0), normalized, then moved through each
 * volatility's step kernel: out[b][c][h] = sum_g w[b][c][g] kernels[c][g][h]. float64 [B, 2, G] in
 * and out, G a multiple of 8. The product runs a strip of 16 columns of a kernel at a time (25 KB
 * for 200 cells: it stays in L1) over all episodes in tiles of eight, over the rows where the strip
 * is not all zeros (a band, for the slow volatility): bands [2, ceil(G / 16), 2] holds each strip's
 * first row and the row past its last (dist_vpg.native.filter_bands), the exact zeros skipped adding
 * nothing to the sums. scratch: [B + 16, 2, G]. */
/* DL doubles a vector, by target, and tiles of FILTER_TILE episodes (at most 8: the scratch's tail),
 * so that FILTER_TILE x 2 accumulators fit the registers: 32 with AVX-512, 16 otherwise. With the
 * vectors 8 doubles wide on AVX2 they spilled, and the restless evaluation took 152 s there. */
#if defined(__AVX512F__)
enum { DL = 8, FILTER_TILE = 8 };
#elif defined(__AVX__)
enum { DL = 4, FILTER_TILE = 6 };
#else
enum { DL = 2, FILTER_TILE = 6 };
#endif
typedef double vd __attribute__((vector_size(DL * sizeof(double))));

static inline vd vdload(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
static inline void vdstore(double *p, vd v) { memcpy(p, &v, sizeof v); }

/* out[e][h0 : h0 + NV * DL] = sum over g in [g0, g1) of w[e][g] kernel[g][h0 : ...] for the tile's
 * episodes e. */
static inline __attribute__((always_inline)) void filter_chunk(int G, int h0, const int NV, int g0, int g1,
                                                                const double *kernel, const double *w,
                                                                int64_t stride, double *out) {
    vd a[FILTER_TILE][2];
    for (int e = 0; e < FILTER_TILE; e++)
        for (int v = 0; v < NV; v++) a[e][v] = (vd){0};
    const double *row = kernel + (int64_t)g0 * G + h0;
    for (int g = g0; g < g1; g++, row += G) {
        vd k[2];
        for (int v = 0; v < NV; v++) k[v] = vdload(row + DL * v);
        for (int e = 0; e < FILTER_TILE; e++) {
            const double s = w[e * stride + g];
            for (int v = 0; v < NV; v++) a[e][v] += s * k[v];
        }
    }
    for (int e = 0; e < FILTER_TILE; e++)
        for (int v = 0; v < NV; v++) vdstore(out + e * stride + h0 + DL * v, a[e][v]);
}

void dv_filter_update(int64_t B, int32_t G, const double *belief, const double *outcome, const double *centres,
                      const double *kernels, const int32_t *bands, double *out, double *scratch) {
    const int64_t tiles = (B + FILTER_TILE - 1) / FILTER_TILE, stride = 2 * (int64_t)G;
    double *w_all = scratch, *tail = scratch + (B + FILTER_TILE) * stride; /* a last, partial tile's out */
    memset(scratch + B * stride, 0, FILTER_TILE * stride * sizeof *scratch);
    for (int64_t b = 0; b < B; b++) {
        const double *p = belief + b * stride, o = outcome[b];
        double *w = w_all + b * stride, total = 0.0;
        for (int c = 0; c < 2; c++)
            for (int g = 0; g < G; g++) {
                const double x = centres[g];
                w[c * G + g] = p[c * G + g] * (o * x + (1.0 - o) * (1.0 - x));
                total += w[c * G + g];
            }
        for (int i = 0; i < stride; i++) w[i] = w[i] / total;
    }
    for (int c = 0; c < 2; c++) {
        const double *kernel = kernels + (int64_t)c * G * G;
        for (int h0 = 0; h0 < G; h0 += 16) {
            const int width = h0 + 16 <= G ? 16 : 8;
            const int32_t *band = bands + 2 * ((int64_t)c * ((G + 15) / 16) + h0 / 16);
            const int g0 = band[0], g1 = band[1];
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t b0 = t * FILTER_TILE;
                const double *w = w_all + b0 * stride + c * G;
                double *o = (b0 + FILTER_TILE <= B ? out + b0 * stride : tail) + c * G;
                for (int h = h0; h < h0 + width; h += 2 * DL) { /* the strip in chunks of 2 vectors */
                    if (h + 2 * DL <= h0 + width) filter_chunk(G, h, 2, g0, g1, kernel, w, stride, o);
                    else filter_chunk(G, h, 1, g0, g1, kernel, w, stride, o);
                }
            }
        }
    }
    const int64_t done = B / FILTER_TILE * FILTER_TILE;
    if (done < B) memcpy(out + done * stride, tail, (B - done) * stride * sizeof *out);
}

