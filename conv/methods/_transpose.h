/* Transposed copies shared by the layout changes (_layout.h) and the drivers' NCHW
 * output (_drivers.h): squares of 8x8 floats or 4x4 doubles moved in registers (and
 * 8x8 doubles with AVX-512), and output tiles (pixels x channels, as the micro-kernel
 * stores them) written channel-major.
 * Copies: every value moved as it is. */
#ifndef CONV_TRANSPOSE_H
#define CONV_TRANSPOSE_H
#include <stddef.h>
#include <string.h>
#include "_simd.h"

/* One 8x8 (float) or 4x4 (double) square, o[b * lo + a] = x[a * lx + b]: in registers
 * with AVX (the 256-bit shuffles every AVX2 and AVX-512 CPU has), else one value at a
 * time. */
#if defined(__AVX__)
#include <immintrin.h>
#define CONV_SWAP_SQ_F 8
#define CONV_SWAP_SQ_D 4
static inline void conv_swap_square_f(const float *x, ptrdiff_t lx, float *o, ptrdiff_t lo) {
    __m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + lx);
    __m256 r2 = _mm256_loadu_ps(x + 2 * lx), r3 = _mm256_loadu_ps(x + 3 * lx);
    __m256 r4 = _mm256_loadu_ps(x + 4 * lx), r5 = _mm256_loadu_ps(x + 5 * lx);
    __m256 r6 = _mm256_loadu_ps(x + 6 * lx), r7 = _mm256_loadu_ps(x + 7 * lx);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    r0 = _mm256_shuffle_ps(t0, t2, 0x44); r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    r2 = _mm256_shuffle_ps(t1, t3, 0x44); r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    r4 = _mm256_shuffle_ps(t4, t6, 0x44); r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    r6 = _mm256_shuffle_ps(t5, t7, 0x44); r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(r0, r4, 0x20));
    _mm256_storeu_ps(o + lo, _mm256_permute2f128_ps(r1, r5, 0x20));
    _mm256_storeu_ps(o + 2 * lo, _mm256_permute2f128_ps(r2, r6, 0x20));
    _mm256_storeu_ps(o + 3 * lo, _mm256_permute2f128_ps(r3, r7, 0x20));
    _mm256_storeu_ps(o + 4 * lo, _mm256_permute2f128_ps(r0, r4, 0x31));
    _mm256_storeu_ps(o + 5 * lo, _mm256_permute2f128_ps(r1, r5, 0x31));
    _mm256_storeu_ps(o + 6 * lo, _mm256_permute2f128_ps(r2, r6, 0x31));
    _mm256_storeu_ps(o + 7 * lo, _mm256_permute2f128_ps(r3, r7, 0x31));
}
static inline void conv_swap_square_d(const double *x, ptrdiff_t lx, double *o, ptrdiff_t lo) {
    __m256d r0 = _mm256_loadu_pd(x), r1 = _mm256_loadu_pd(x + lx);
    __m256d r2 = _mm256_loadu_pd(x + 2 * lx), r3 = _mm256_loadu_pd(x + 3 * lx);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(o, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(o + lo, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(o + 2 * lo, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(o + 3 * lo, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#else
#define CONV_SWAP_SQ_F 8
#define CONV_SWAP_SQ_D 4
#define CONV_SWAP_SQUARE(T, NAME, SQ)                                                      \
static inline void NAME(const T *x, ptrdiff_t lx, T *o, ptrdiff_t lo) {                    \
    int a, b;                                                                              \
    for (b = 0; b < SQ; b++)                                                               \
        for (a = 0; a < SQ; a++)                                                           \
            o[b * lo + a] = x[a * lx + b];                                                 \
}
CONV_SWAP_SQUARE(float, conv_swap_square_f, CONV_SWAP_SQ_F)
CONV_SWAP_SQUARE(double, conv_swap_square_d, CONV_SWAP_SQ_D)
#endif


/* With AVX-512, squares of 8x8 doubles for the NCHW output (a float64 tile's 8 pixels a
 * channel: one cache line each): 3 rounds of two-register shuffles, 0.375 shuffles a value
 * where two 4x4 squares take 0.5. Measured (direct kernel, 2 threads, NCHW time over
 * NHWC's, four alternations): seed in float64 1.14-1.24 against 1.29-1.38. A 16x16 float
 * square (0.25 shuffles a value against 0.375) was slower: pointwise 1.41-1.47 against
 * 1.10-1.16, the rest unchanged; float32 keeps the 8x8 squares. */
#if defined(__AVX512F__)
#define CONV_PUT_SQ_D 8
static inline void conv_put_square_d(const double *x, ptrdiff_t lx, double *o, ptrdiff_t lo) {
    __m512d r[8], t[8];
    int i, j;
    for (i = 0; i < 8; i++) r[i] = _mm512_loadu_pd(x + i * lx);
    for (i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 2; i++)
        for (j = 0; j < 2; j++) {
            r[4 * i + j] = _mm512_shuffle_f64x2(t[4 * i + j], t[4 * i + 2 + j], 0x88);
            r[4 * i + 2 + j] = _mm512_shuffle_f64x2(t[4 * i + j], t[4 * i + 2 + j], 0xdd);
        }
    for (j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f64x2(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f64x2(r[j], r[4 + j], 0xdd);
    }
    for (i = 0; i < 8; i++) _mm512_storeu_pd(o + i * lo, t[i]);
}
#else
#define CONV_PUT_SQ_D CONV_SWAP_SQ_D
#define conv_put_square_d conv_swap_square_d
#endif

/* Output tiles t (mr pixels x nc channels, ld elements between pixels) into NCHW:
 * channel c of pixel r at o[c * P + r] (P: the output pixels of an image). Big squares
 * (SQB, a multiple of SQ) where they fit, then small ones, the rest one value at a time. */
#define CONV_PUT_NCHW(T, NAME, SQB, SQUAREB, SQ, SQUARE)                                   \
static inline void NAME(const T *t, ptrdiff_t ld, int mr, int nc, T *o, ptrdiff_t P) {     \
    const int rb = mr / (SQB) * (SQB), cb = nc / (SQB) * (SQB);                            \
    const int rs = mr / (SQ) * (SQ), cs = nc / (SQ) * (SQ);                                \
    int r, c;                                                                              \
    for (c = 0; c < cb; c += (SQB))                                                        \
        for (r = 0; r < rb; r += (SQB))                                                    \
            SQUAREB(t + r * ld + c, ld, o + c * P + r, P);                                 \
    for (c = 0; c < cs; c += (SQ)) /* rows past rb, channels past cb */                    \
        for (r = c < cb ? rb : 0; r < rs; r += (SQ))                                       \
            SQUARE(t + r * ld + c, ld, o + c * P + r, P);                                  \
    for (c = 0; c < nc; c++) /* what the squares left: rows past rs, channels past cs */   \
        for (r = c < cs ? rs : 0; r < mr; r++)                                             \
            o[c * P + r] = t[r * ld + c];                                                  \
}
CONV_PUT_NCHW(float, conv_put_nchw_f, CONV_SWAP_SQ_F, conv_swap_square_f, CONV_SWAP_SQ_F,
              conv_swap_square_f)
CONV_PUT_NCHW(double, conv_put_nchw_d, CONV_PUT_SQ_D, conv_put_square_d, CONV_SWAP_SQ_D,
              conv_swap_square_d)

/* Vectors y[0..wm) of the kernels' lanes (_simd.h: channels, one vector a pixel) stored
 * lane-major: o[l * ld + v] = y[v][l] for every lane l and v < wm; a row of a Winograd
 * output tile (wm = 2 or 4 pixels) into its channels' NCHW planes. One value at a time
 * (conv_put_lanes_one_*); with AVX's 32-byte vectors wm = 2 and 4 are transposed in
 * registers instead (unpacks and shuffles, then 8- or 16-byte runs, or whole vectors of
 * 4 doubles). */
#define CONV_PUT_LANES_ONE(T, V, NAME)                                                     \
static inline void NAME(const V *y, int wm, T *o, ptrdiff_t ld) {                          \
    const int lanes = (int)(sizeof(V) / sizeof(T));                                        \
    int l, v;                                                                              \
    for (v = 0; v < wm; v++) {                                                             \
        T val[sizeof(V) / sizeof(T)];                                                      \
        memcpy(val, &y[v], sizeof val);                                                    \
        for (l = 0; l < lanes; l++) o[l * ld + v] = val[l];                                \
    }                                                                                      \
}
CONV_PUT_LANES_ONE(float, conv_vf32, conv_put_lanes_one_f32)
CONV_PUT_LANES_ONE(double, conv_vf64, conv_put_lanes_one_f64)
#undef CONV_PUT_LANES_ONE

#if defined(__AVX__) && CONV_VECTOR_EXT && CONV_VBYTES == 32
static inline void conv_put_lanes_f32(const conv_vf32 *y, int wm, float *o, ptrdiff_t ld) {
    if (wm == 4) { /* t: pairs of pixels a lane; c: lanes l | l + 4, 4 pixels each */
        const __m256 t0 = _mm256_unpacklo_ps((__m256)y[0], (__m256)y[1]);
        const __m256 t1 = _mm256_unpackhi_ps((__m256)y[0], (__m256)y[1]);
        const __m256 t2 = _mm256_unpacklo_ps((__m256)y[2], (__m256)y[3]);
        const __m256 t3 = _mm256_unpackhi_ps((__m256)y[2], (__m256)y[3]);
        const __m256 c[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                             _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
        int l;
        for (l = 0; l < 4; l++) {
            _mm_storeu_ps(o + l * ld, _mm256_castps256_ps128(c[l]));
            _mm_storeu_ps(o + (l + 4) * ld, _mm256_extractf128_ps(c[l], 1));
        }
    } else if (wm == 2) { /* t0: lanes 0, 1 | 4, 5, two pixels each; t1: 2, 3 | 6, 7 */
        const __m256 t[2] = {_mm256_unpacklo_ps((__m256)y[0], (__m256)y[1]),
                             _mm256_unpackhi_ps((__m256)y[0], (__m256)y[1])};
        int h;
        for (h = 0; h < 2; h++) {
            const __m128 lo = _mm256_castps256_ps128(t[h]), hi = _mm256_extractf128_ps(t[h], 1);
            _mm_storel_pi((__m64 *)(o + 2 * h * ld), lo);
            _mm_storeh_pi((__m64 *)(o + (2 * h + 1) * ld), lo);
            _mm_storel_pi((__m64 *)(o + (2 * h + 4) * ld), hi);
            _mm_storeh_pi((__m64 *)(o + (2 * h + 5) * ld), hi);
        }
    } else {
        conv_put_lanes_one_f32(y, wm, o, ld);
    }
}
static inline void conv_put_lanes_f64(const conv_vf64 *y, int wm, double *o, ptrdiff_t ld) {
    if (wm == 4) { /* a 4 x 4 square: lanes 0 and 2 from t0, t2; 1 and 3 from t1, t3 */
        const __m256d t0 = _mm256_unpacklo_pd((__m256d)y[0], (__m256d)y[1]);
        const __m256d t1 = _mm256_unpackhi_pd((__m256d)y[0], (__m256d)y[1]);
        const __m256d t2 = _mm256_unpacklo_pd((__m256d)y[2], (__m256d)y[3]);
        const __m256d t3 = _mm256_unpackhi_pd((__m256d)y[2], (__m256d)y[3]);
        _mm256_storeu_pd(o, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(o + ld, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(o + 2 * ld, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(o + 3 * ld, _mm256_permute2f128_pd(t1, t3, 0x31));
    } else if (wm == 2) { /* t0: lanes 0 | 2, two pixels each; t1: 1 | 3 */
        const __m256d t0 = _mm256_unpacklo_pd((__m256d)y[0], (__m256d)y[1]);
        const __m256d t1 = _mm256_unpackhi_pd((__m256d)y[0], (__m256d)y[1]);
        _mm_storeu_pd(o, _mm256_castpd256_pd128(t0));
        _mm_storeu_pd(o + ld, _mm256_castpd256_pd128(t1));
        _mm_storeu_pd(o + 2 * ld, _mm256_extractf128_pd(t0, 1));
        _mm_storeu_pd(o + 3 * ld, _mm256_extractf128_pd(t1, 1));
    } else {
        conv_put_lanes_one_f64(y, wm, o, ld);
    }
}
#else
#define conv_put_lanes_f32 conv_put_lanes_one_f32
#define conv_put_lanes_f64 conv_put_lanes_one_f64
#endif

#endif /* CONV_TRANSPOSE_H */
