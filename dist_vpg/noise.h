/* noise.c's function, as dist_vpg/native/interface.py reads it. */
#ifndef DIST_VPG_NOISE_H
#define DIST_VPG_NOISE_H

#include <stdint.h>

void dv_uniforms(uint64_t key_hash, int64_t B, const int64_t *episodes, int32_t rows, int32_t cols, const uint64_t *cells, uint64_t *per_episode, float *out);

#endif
