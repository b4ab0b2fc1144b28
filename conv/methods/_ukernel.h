/* conv's micro-kernels: one register-blocked output tile (see _tile.h), named like
 * XNNPACK's and BLIS's by element type, operation, geometry and ISA:
 *
 *     conv_f32_direct_6x16__avx2     conv_f64_direct_6x8__avx2
 *
 * (MR x NR = output pixels x output channels; the ISA is CONV_ISA, see _simd.h). Each
 * build compiles one kernel per element type, which the drivers call by the
 * build-independent names CONV_UKERNEL_F32 / CONV_UKERNEL_F64, and lists them all in
 * conv_ukernels (at the end).
 */
#ifndef CONV_UKERNEL_H
#define CONV_UKERNEL_H
#include <stddef.h>
#include <string.h>
#include "_simd.h"

/* ---- the geometry, for every kernel: literal numbers, as they are pasted into names */
#define CONV_NV 2    /* CONV_VBYTES-byte vectors per row */
#if CONV_VBYTES == 64
/* output pixels per tile, the rows of accumulators: 8 x 2 of AVX-512's 32 registers
 * (measured on one Xeon core, 6x32 kernel on L1-resident data, C_in 256, median of 5:
 * 150 GFLOP/s; 8x32: 167; 10x32: 168; the FMA loop: 168) */
#define CONV_MR 8
#define CONV_NR_F 32 /* output channels per tile, float32: CONV_NV vectors */
#define CONV_NR_D 16 /* output channels per tile, float64: CONV_NV vectors */
#else
#define CONV_MR 6    /* 6 x 2 of AVX2's 16 registers */
#define CONV_NR_F 16
#define CONV_NR_D 8
#endif

CONV_STATIC_ASSERT(CONV_NR_F * sizeof(float) == CONV_NV * CONV_VBYTES, "NR_F: NV vectors");
CONV_STATIC_ASSERT(CONV_NR_D * sizeof(double) == CONV_NV * CONV_VBYTES, "NR_D: NV vectors");
CONV_STATIC_ASSERT(CONV_NR_F % CONV_LANES_F32 == 0 && CONV_NR_D % CONV_LANES_F64 == 0,
                   "NR is a whole number of vectors");
/* The inner loop holds MR x NV accumulators, NV weight vectors and one broadcast input:
 * within the target's vector registers (16 ymm for AVX2, 32 zmm for AVX-512). */
CONV_STATIC_ASSERT(CONV_MR * CONV_NV + CONV_NV + 1 <= CONV_VREGS,
                   "tile exceeds the vector registers");
CONV_STATIC_ASSERT(1 <= CONV_MR && CONV_MR <= 8 && 1 <= CONV_NV && CONV_NV <= 4,
                   "CONV_ROWS / CONV_VECS below are spelled out up to 8 rows, 4 vectors");

/* Unrolling, for the templates: CONV_ROWS(X) is X(0) X(1) ... X(CONV_MR - 1), one per
 * row of the tile; CONV_VECS(X, r) is X(r, 0) ... X(r, CONV_NV - 1), one per vector. */
#define CONV_ROWS(X) CONV_ROWS_(CONV_MR, X)
#define CONV_ROWS_(n, X) CONV_ROWS__(n, X)
#define CONV_ROWS__(n, X) CONV_ROWS_##n(X)
#define CONV_ROWS_1(X) X(0)
#define CONV_ROWS_2(X) CONV_ROWS_1(X) X(1)
#define CONV_ROWS_3(X) CONV_ROWS_2(X) X(2)
#define CONV_ROWS_4(X) CONV_ROWS_3(X) X(3)
#define CONV_ROWS_5(X) CONV_ROWS_4(X) X(4)
#define CONV_ROWS_6(X) CONV_ROWS_5(X) X(5)
#define CONV_ROWS_7(X) CONV_ROWS_6(X) X(6)
#define CONV_ROWS_8(X) CONV_ROWS_7(X) X(7)
#define CONV_VECS(X, r) CONV_VECS_(NV, X, r) /* NV: the instantiation's vectors per row */
#define CONV_VECS_(n, X, r) CONV_VECS__(n, X, r)
#define CONV_VECS__(n, X, r) CONV_VECS_##n(X, r)
#define CONV_VECS_1(X, r) X(r, 0)
#define CONV_VECS_2(X, r) CONV_VECS_1(X, r) X(r, 1)
#define CONV_VECS_3(X, r) CONV_VECS_2(X, r) X(r, 2)
#define CONV_VECS_4(X, r) CONV_VECS_3(X, r) X(r, 3)

/* ---- names and signature */
#define CONV_UKERNEL_NAME(dt, nr) CONV_UKERNEL_NAME_(dt, CONV_MR, nr, CONV_ISA)
#define CONV_UKERNEL_NAME_(dt, mr, nr, isa) CONV_UKERNEL_NAME__(dt, mr, nr, isa)
#define CONV_UKERNEL_NAME__(dt, mr, nr, isa) conv_##dt##_direct_##mr##x##nr##__##isa
#define CONV_UKERNEL_F32 CONV_UKERNEL_NAME(f32, CONV_NR_F)
#define CONV_UKERNEL_F64 CONV_UKERNEL_NAME(f64, CONV_NR_D)
#define CONV_PWKERNEL_F32 CONV_PWKERNEL_NAME(f32, CONV_NR_F)
#define CONV_PWKERNEL_F64 CONV_PWKERNEL_NAME(f64, CONV_NR_D)
/* Each kernel's 1x1 form (PWTILE in _tile.h: a tile of a matrix product, rows found by
 * the driver): conv_f32_gemm_8x32__avx512 beside conv_f32_direct_8x32__avx512. */
#define CONV_PWKERNEL_NAME(dt, nr) CONV_PWKERNEL_NAME_(dt, CONV_MR, nr, CONV_ISA)
#define CONV_PWKERNEL_NAME_(dt, mr, nr, isa) CONV_PWKERNEL_NAME__(dt, mr, nr, isa)
#define CONV_PWKERNEL_NAME__(dt, mr, nr, isa) conv_##dt##_gemm_##mr##x##nr##__##isa

/* Half-width tiles (one vector a row) where a vector is 64 bytes: the AVX-512 build also
 * has 8x16 float32 and 8x8 float64 kernels, so that few output channels (C_out = 16, the
 * article's) are not padded to 32. conv.methods._compiled picks the width per problem;
 * every width sums in the same order, so the results do not depend on it. */
#if CONV_VBYTES == 64 && CONV_VECTOR_EXT
#define CONV_HALF_TILES 1
#define CONV_NR_F_HALF 16
#define CONV_NR_D_HALF 8
#define CONV_UKERNEL_F32_HALF CONV_UKERNEL_NAME(f32, CONV_NR_F_HALF)
#define CONV_UKERNEL_F64_HALF CONV_UKERNEL_NAME(f64, CONV_NR_D_HALF)
#define CONV_PWKERNEL_F32_HALF CONV_PWKERNEL_NAME(f32, CONV_NR_F_HALF)
#define CONV_PWKERNEL_F64_HALF CONV_PWKERNEL_NAME(f64, CONV_NR_D_HALF)
CONV_STATIC_ASSERT(CONV_NR_F_HALF * sizeof(float) == CONV_VBYTES, "half tile: one vector");
CONV_STATIC_ASSERT(CONV_NR_D_HALF * sizeof(double) == CONV_VBYTES, "half tile: one vector");
#else
#define CONV_NR_F_HALF 0 /* none */
#define CONV_NR_D_HALF 0
#endif
#define CONV_STR(s) CONV_STR_(s)
#define CONV_STR_(s) #s
/* Every kernel's signature (see _tile.h for the arguments); R: restrict or nothing. */
#define CONV_UKERNEL_SIGNATURE(NAME, T, R)                                                 \
    void NAME(const T *R x, const T *R wp, const T *R zeros, T *R out, ptrdiff_t CO,       \
              int mr, int nc, ptrdiff_t oy, ptrdiff_t ox, ptrdiff_t OW, ptrdiff_t H,       \
              ptrdiff_t W, ptrdiff_t CI, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t sh,         \
              ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t pt, ptrdiff_t pl,        \
              int zeros_exact, int accumulate)
typedef CONV_UKERNEL_SIGNATURE((*conv_ukernel_f32_fn), float, );
typedef CONV_UKERNEL_SIGNATURE((*conv_ukernel_f64_fn), double, );
/* The 1x1 forms' (PWTILE's) signature: MR row pointers, K, weights (K rows of NR, ldw
 * apart), the tile. */
typedef void (*conv_pwkernel_f32_fn)(const float *const *q, const float *wt, ptrdiff_t K,
                                     ptrdiff_t ldw, float *out, ptrdiff_t CO, int mr, int nc);
typedef void (*conv_pwkernel_f64_fn)(const double *const *q, const double *wt, ptrdiff_t K,
                                     ptrdiff_t ldw, double *out, ptrdiff_t CO, int mr,
                                     int nc);

/* Entry assertions of every kernel (CONV_DEBUG builds only). */
#define CONV_UKERNEL_CHECK_ARGS(NR)                                                        \
    do {                                                                                   \
        CONV_ASSERT(x != NULL && wp != NULL && zeros != NULL && out != NULL);              \
        CONV_ASSERT(1 <= mr && mr <= CONV_MR && 1 <= nc && nc <= (NR));                    \
        CONV_ASSERT(mr == 1 || CO >= nc);                                                  \
        CONV_ASSERT(oy >= 0 && 0 <= ox && ox < OW);                                        \
        CONV_ASSERT(H >= 0 && W >= 0 && CI >= 0 && KH >= 1 && KW >= 1);                    \
        CONV_ASSERT(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1);                             \
        CONV_ASSERT(KW * CI == 0 || (zeros[0] == 0 && zeros[KW * CI - 1] == 0));           \
    } while (0)

#if CONV_VECTOR_EXT

#define T float
#define V conv_vf32
#define L CONV_LANES_F32
#define LOADV conv_load_f32
#define STOREV conv_store_f32
#define NV CONV_NV
#define NR CONV_NR_F
#define TILE CONV_UKERNEL_F32
#define PWTILE CONV_PWKERNEL_F32
#include "_tile.h" /* consumes NV, NR, TILE, PWTILE */
#ifdef CONV_HALF_TILES
#define NV 1
#define NR CONV_NR_F_HALF
#define TILE CONV_UKERNEL_F32_HALF
#define PWTILE CONV_PWKERNEL_F32_HALF
#include "_tile.h"
#endif
#undef T
#undef V
#undef L
#undef LOADV
#undef STOREV

#define T double
#define V conv_vf64
#define L CONV_LANES_F64
#define LOADV conv_load_f64
#define STOREV conv_store_f64
#define NV CONV_NV
#define NR CONV_NR_D
#define TILE CONV_UKERNEL_F64
#define PWTILE CONV_PWKERNEL_F64
#include "_tile.h" /* consumes NV, NR, TILE, PWTILE */
#ifdef CONV_HALF_TILES
#define NV 1
#define NR CONV_NR_D_HALF
#define TILE CONV_UKERNEL_F64_HALF
#define PWTILE CONV_PWKERNEL_F64_HALF
#include "_tile.h"
#endif
#undef T
#undef V
#undef L
#undef LOADV
#undef STOREV

#else /* no vector extensions: the same tile, scalar, padded taps always skipped */

#define CONV_SCALAR_TILE(NAME, T, NR)                                                      \
static CONV_UKERNEL_SIGNATURE(NAME, T, )                                                   \
{                                                                                          \
    T acc[CONV_MR * NR];                                                                   \
    ptrdiff_t i, j, k, c; int r;                                                           \
    CONV_UKERNEL_CHECK_ARGS(NR);                                                           \
    (void)zeros; (void)zeros_exact;                                                        \
    for (c = 0; c < CONV_MR * NR; c++) acc[c] = 0;                                         \
    if (accumulate)                                                                        \
        for (r = 0; r < mr; r++) memcpy(acc + r * NR, out + r * CO, (size_t)nc * sizeof(T)); \
    for (r = 0; r < mr; r++) {                                                             \
        ptrdiff_t p = oy * OW + ox + r, py = p / OW, px = p - (p / OW) * OW;               \
        for (i = 0; i < KH; i++) {                                                         \
            ptrdiff_t iy = py * sh - pt + i * dh;                                          \
            if (iy < 0 || iy >= H) continue;                                               \
            for (j = 0; j < KW; j++) {                                                     \
                ptrdiff_t ix = px * sw - pl + j * dw;                                      \
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
CONV_SCALAR_TILE(CONV_UKERNEL_F32, float, CONV_NR_F)
CONV_SCALAR_TILE(CONV_UKERNEL_F64, double, CONV_NR_D)
#undef CONV_SCALAR_TILE

/* The 1x1 form (_tile.h's PWTILE), scalar: the same sums in the same order. */
#define CONV_SCALAR_PWTILE(NAME, T, NR)                                                    \
static void NAME(const T *const *q, const T *wt, ptrdiff_t K, T *out, ptrdiff_t CO,       \
                 int mr, int nc)                                                           \
{                                                                                          \
    ptrdiff_t k; int r, c;                                                                 \
    for (r = 0; r < mr; r++)                                                               \
        for (c = 0; c < nc; c++) {                                                         \
            T acc = 0;                                                                     \
            for (k = 0; k < K; k++) acc += q[r][k] * wt[k * NR + c];                       \
            out[r * CO + c] = acc;                                                         \
        }                                                                                  \
}
CONV_SCALAR_PWTILE(CONV_PWKERNEL_F32, float, CONV_NR_F)
CONV_SCALAR_PWTILE(CONV_PWKERNEL_F64, double, CONV_NR_D)
#undef CONV_SCALAR_PWTILE

#endif

/* Every micro-kernel of this build, for the tests (UKERNELS and ukernel() in
 * _kernels.pxi). Called only through this table, so the drivers' direct calls are
 * compiled (inlined, specialized) exactly as without it. */
typedef struct {
    const char *name, *dtype, *isa;
    int mr, nr;
    conv_ukernel_f32_fn f32; /* the kernel, for float32 ... */
    conv_ukernel_f64_fn f64; /* ... or for float64; the other is NULL */
    conv_pwkernel_f32_fn pw32; /* its 1x1 form, likewise */
    conv_pwkernel_f64_fn pw64;
} conv_ukernel_entry;

static const conv_ukernel_entry conv_ukernels[] = {
    {CONV_STR(CONV_UKERNEL_F32), "float32", CONV_STR(CONV_ISA), CONV_MR, CONV_NR_F,
     CONV_UKERNEL_F32, NULL, CONV_PWKERNEL_F32, NULL},
    {CONV_STR(CONV_UKERNEL_F64), "float64", CONV_STR(CONV_ISA), CONV_MR, CONV_NR_D,
     NULL, CONV_UKERNEL_F64, NULL, CONV_PWKERNEL_F64},
#ifdef CONV_HALF_TILES
    {CONV_STR(CONV_UKERNEL_F32_HALF), "float32", CONV_STR(CONV_ISA), CONV_MR, CONV_NR_F_HALF,
     CONV_UKERNEL_F32_HALF, NULL, CONV_PWKERNEL_F32_HALF, NULL},
    {CONV_STR(CONV_UKERNEL_F64_HALF), "float64", CONV_STR(CONV_ISA), CONV_MR, CONV_NR_D_HALF,
     NULL, CONV_UKERNEL_F64_HALF, NULL, CONV_PWKERNEL_F64_HALF},
#endif
};
#define CONV_NUM_UKERNELS ((int)(sizeof conv_ukernels / sizeof conv_ukernels[0]))

#endif /* CONV_UKERNEL_H */
