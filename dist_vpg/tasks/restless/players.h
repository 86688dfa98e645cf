/* The restless players' native functions (players.c), as dist_vpg/native/interface.py reads them. */
#ifndef DIST_VPG_RESTLESS_PLAYERS_H
#define DIST_VPG_RESTLESS_PLAYERS_H

#include <stdint.h>

void dv_rw_fits(int32_t T, int64_t N, int32_t K, const double *alphas, const double *seen, const double *sign, double beta_max, int32_t steps, double tol, double *x, double *betas, double *log_likelihoods);
void dv_filter_update(int64_t B, int32_t G, const double *belief, const double *outcome, const double *centres, const double *kernels, const int32_t *bands, double *out, double *scratch);

#endif
