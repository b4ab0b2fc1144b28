/* conv's micro-kernels: one register-blocked output tile (see _tile.h).
 *
 * With GCC/Clang the tile's 12 accumulators are 32-byte vector-extension values,
 * so the compiler keeps them in registers and emits whatever the build's target
 * allows: AVX2+FMA in the _avx2 extension (compiled with -mavx2 -mfma), pairs of
 * SSE2 registers in the portable one. Other compilers get a plain C tile with the
 * same summation order.
 */
#ifndef CONV_UKERNEL_H
#define CONV_UKERNEL_H
#include <stddef.h>
#include <string.h>

#define CONV_MR 6
#define CONV_NR_F 16
#define CONV_NR_D 8

#if defined(__AVX2__) && defined(__FMA__)
#define CONV_SIMD "avx2+fma"
#elif defined(__AVX__)
#define CONV_SIMD "avx"
#elif defined(__SSE2__) || defined(_M_X64)
#define CONV_SIMD "sse2"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define CONV_SIMD "neon"
#else
#define CONV_SIMD "scalar"
#endif

/* CONV_NO_VECTOR_EXT=1 forces the scalar tile (to test it with GCC). */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(CONV_NO_VECTOR_EXT)

typedef float conv_vf __attribute__((vector_size(32)));
typedef double conv_vd __attribute__((vector_size(32)));

static inline conv_vf conv_load_f(const float *p) { conv_vf v; memcpy(&v, p, sizeof v); return v; }
static inline void conv_store_f(float *p, conv_vf v) { memcpy(p, &v, sizeof v); }
static inline conv_vd conv_load_d(const double *p) { conv_vd v; memcpy(&v, p, sizeof v); return v; }
static inline void conv_store_d(double *p, conv_vd v) { memcpy(p, &v, sizeof v); }

#define T float
#define V conv_vf
#define L 8
#define LOADV conv_load_f
#define STOREV conv_store_f
#define TILE conv_tile_f
#include "_tile.h"
#undef T
#undef V
#undef L
#undef LOADV
#undef STOREV
#undef TILE

#define T double
#define V conv_vd
#define L 4
#define LOADV conv_load_d
#define STOREV conv_store_d
#define TILE conv_tile_d
#include "_tile.h"
#undef T
#undef V
#undef L
#undef LOADV
#undef STOREV
#undef TILE

#else /* no vector extensions: the same tile, scalar, padded taps always skipped */

#undef CONV_SIMD
#define CONV_SIMD "scalar"

#define CONV_SCALAR_TILE(NAME, T, NR)                                                      \
static void NAME(const T *x, const T *wp, const T *zeros, T *out, ptrdiff_t CO, int mr,   \
                 int nc, ptrdiff_t oy0, ptrdiff_t ox0, ptrdiff_t OW, ptrdiff_t H, ptrdiff_t W, \
                 ptrdiff_t CI, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t sh, ptrdiff_t sw,     \
                 ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t pt, ptrdiff_t pl, int zeros_exact,  \
                 int accumulate)                                                           \
{                                                                                          \
    T acc[CONV_MR * NR];                                                                   \
    ptrdiff_t i, j, k, c; int r;                                                           \
    (void)zeros; (void)zeros_exact;                                                        \
    for (c = 0; c < CONV_MR * NR; c++) acc[c] = 0;                                         \
    if (accumulate)                                                                        \
        for (r = 0; r < mr; r++) memcpy(acc + r * NR, out + r * CO, (size_t)nc * sizeof(T)); \
    for (r = 0; r < mr; r++) {                                                             \
        ptrdiff_t p = oy0 * OW + ox0 + r, oy = p / OW, ox = p - (p / OW) * OW;             \
        for (i = 0; i < KH; i++) {                                                         \
            ptrdiff_t iy = oy * sh - pt + i * dh;                                          \
            if (iy < 0 || iy >= H) continue;                                               \
            for (j = 0; j < KW; j++) {                                                     \
                ptrdiff_t ix = ox * sw - pl + j * dw;                                      \
                const T *xp, *wt;                                                          \
                if (ix < 0 || ix >= W) continue;                                           \
                xp = x + (iy * W + ix) * CI;                                               \
                wt = wp + (i * KW + j) * CI * NR;                                          \
                for (k = 0; k < CI; k++)                                                   \
                    for (c = 0; c < NR; c++) acc[r * NR + c] += xp[k] * wt[k * NR + c];     \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    for (r = 0; r < mr; r++) memcpy(out + r * CO, acc + r * NR, (size_t)nc * sizeof(T));  \
}
CONV_SCALAR_TILE(conv_tile_f, float, CONV_NR_F)
CONV_SCALAR_TILE(conv_tile_d, double, CONV_NR_D)

#endif
#endif /* CONV_UKERNEL_H */
