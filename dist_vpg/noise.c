/* dist_vpg.noise's counter-based uniforms in C, bit for bit (built into a library of its own by
 * dist_vpg/native/build.py; noise.py keeps the numpy reference and falls back to it). */
#include <stdint.h>

#include "noise.h"

/* Counter-based uniforms (dist_vpg.noise.uniforms, the reference, in numpy): splitmix64's finalizer
 * over the key's hash absorbed with each episode's index, then each cell's own hash; the top 24 bits
 * of each as a float32 in [0, 1). out [rows, B, cols]; cells [rows * cols] the cells' hashes. */
static inline uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Rows r0 .. rows - 1 of dv_uniforms with `cols` a constant where inlined: the loop over episodes
 * vectorizes (64-bit multiplies in vector registers), its stores cols floats apart. */
static inline __attribute__((always_inline)) void uniforms_rows(int64_t B, int32_t rows, const int cols,
                                                                 const uint64_t *cells, const uint64_t *per_episode,
                                                                 float *out) {
    for (int32_t r = 0; r < rows; r++)
        for (int k = 0; k < cols; k++) {
            const uint64_t cell = cells[(int64_t)r * cols + k];
            float *o = out + (int64_t)r * B * cols + k;
            for (int64_t b = 0; b < B; b++) o[b * cols] = (float)(mix64(per_episode[b] ^ cell) >> 40) * 0x1p-24f;
        }
}

void dv_uniforms(uint64_t key_hash, int64_t B, const int64_t *episodes, int32_t rows, int32_t cols,
                 const uint64_t *cells, uint64_t *per_episode, float *out) {
    for (int64_t b = 0; b < B; b++)
        per_episode[b] = mix64(key_hash ^ mix64((uint64_t)episodes[b] + 0x9E3779B97F4A7C15ULL));
    switch (cols) {
    case 1: uniforms_rows(B, rows, 1, cells, per_episode, out); break;
    case 2: uniforms_rows(B, rows, 2, cells, per_episode, out); break;
    case 3: uniforms_rows(B, rows, 3, cells, per_episode, out); break;
    default: uniforms_rows(B, rows, cols, cells, per_episode, out); break;
    }
}
