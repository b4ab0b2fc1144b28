/* conv's grouped kernel for few channels a group, depthwise convolution above all
 * (tf.nn.depthwise_conv2d: one input channel a group). Memory bound, so built for
 * streaming: a task is one output row, which reads its KH input rows once.
 *
 *   x (N, H, W, C) unpadded; w (KH, KW, Cg, CO), HWIO as conv2d takes it; out (N, OH,
 *   OW, CO), or (N, CO, OH, OW) with out_nchw (each row moved into the channel planes).
 *   Group g = C / Cg groups reads x channels [g*Cg, (g+1)*Cg) and writes output
 *   channels [g*Mg, (g+1)*Mg), Mg = CO / (C / Cg). A depthwise filter (KH, KW, C, M) is
 *   w (KH, KW, 1, C*M): output channel c*M + m.
 *
 * Depthwise with multiplier 1 (Cg = Mg = 1, MobileNet's layers) has a register-blocked
 * path: CONV_DW_PX output pixels of a row at once, one vector of channels each, summed in
 * registers over the taps and stored once (3-wide filters at stride 1 and 2 load each
 * input vector once a kernel row). Where x starts off a vector boundary (NumPy's
 * large arrays start 16 bytes past a 64-byte line, so every load would span two lines:
 * measured 1.25-1.4x the time of aligned x), 3-wide stride-1 rows shift their vectors to
 * start on the boundary, lanes spilling into the neighbouring pixel, with the filters
 * rotated to match. Other grouped problems update each output pixel in the (L1-resident)
 * output row tap by tap. With x NCHW too (x_nchw: multiplier 1, row stride 1, rows of at
 * least CONV_DW_NCHW_MIN_VECTORS vectors) each channel plane is convolved as it lies,
 * vectorized along its rows. Every path starts each sum at zero and runs it over the taps
 * in the order (i, j, t) (t: the channel within the group), one multiply-add a term,
 * padded taps skipped, never multiplied (NaN/Inf propagate exactly as in the sum),
 * whatever the thread count: the paths give the same results.
 * Included by _kernels.pxi. */
#ifndef CONV_DEPTHWISE_H
#define CONV_DEPTHWISE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_simd.h"
#include "_pool.h"
#include "_drivers.h" /* conv_chunk */

typedef struct {
    const void *x, *w;               /* x (N, H, W, C), unpadded; w (KH, KW, Cg, CO) */
    void *out;                       /* (N, OH, OW, CO) */
    ptrdiff_t N, H, W, C, KH, KW, Cg, CO, OH, OW;
    ptrdiff_t sh, sw, dh, dw, pt, pl;
    conv_interrupt *intr;            /* checked between rows; NULL: not interruptible */
    /* scratch for the filters rotated by `shift` channels (KH*KW*C elements), or NULL:
     * the driver sets shift (the elements x lies past a vector boundary) and fills it
     * where the aligned path runs (see CONV_DEPTHWISE's NAME) */
    void *wrot;
    ptrdiff_t shift;
    int out_nchw;                    /* out is (N, CO, OH, OW): each row computed into the
                                      * thread's scratch, then moved into the planes */
    int x_nchw;                      /* x is (N, C, H, W) too (depthwise, multiplier 1,
                                      * stride 1 along rows; out_nchw): the planes path */
    int prefetch;                    /* set by the driver (see CONV_DW_PREFETCH_BYTES) */
    int failed;                      /* out: no scratch for a row */
} conv_dw_problem;

/* output pixels a register block holds: their sums plus one weight vector and one input
 * vector fit the vector registers with room to spare */
#define CONV_DW_PX (CONV_VREGS >= 32 ? 8 : 6)
/* Prefetching (register-blocked rows): where x and out together exceed
 * CONV_DW_PREFETCH_BYTES (more than the last-level cache keeps of them), each output
 * row prefetches the input rows the row above it did not read, CONV_DW_AHEAD pixels
 * ahead of its block. Data from memory otherwise came at 4-5 GB/s a thread: one block
 * reads PX + 2 pixels of C channels from each of three rows, lines far apart, which the
 * hardware prefetchers did not follow. Measured on AMD Zen 3 (2 threads, interleaved with
 * PyTorch): 56x56x144 float32 per image 0.95 -> 0.46 ms on one thread at batch 8, 0.83
 * -> 0.20 at batch 4 (0.17 at batch 1, whose 1.8 MB stays in cache); MobileNet-v2's
 * batch-8 depthwise total 1.09-1.34x PyTorch's time -> 0.89-1.00x; 16, 32 or 48 pixels
 * ahead (into L1 or L2) were the same within the noise. Not measured on the AVX-512 Xeon,
 * where an earlier prefetch of whole rows, at any size, was 1.08-1.29x slower at batch 8. */
#define CONV_DW_AHEAD 16
#define CONV_DW_PREFETCH_BYTES (8 << 20)
/* kernel rows the register-blocked path takes (taller filters take the other) */
#define CONV_DW_MAXKH 64

/* Rows a chunk of tasks: the pool's usual 1/16 of a thread's share, unless that is under
 * CONV_DW_MIN_CHUNK rows; then one block of rows a thread. A chunk reads the KH - 1 input
 * rows above its first again (a chunk of 3 rows, 5 input rows), and a thread that keeps
 * one block keeps its rows in its own cache. Measured (float32 3x3 SAME, 2 threads,
 * interleaved, time over 1/16's): MobileNet-v2's depthwise layers at batch 1 0.80-0.97
 * (112x112x32 0.80, 112x112x96 stride 2 0.83), at batch 8 where 1/16 is under 8 rows
 * 0.87-0.95; at batch 8 on 112x112x32 (28 rows a chunk) one block a thread took 1.05. */
#define CONV_DW_MIN_CHUNK 8
static ptrdiff_t conv_dw_chunk(ptrdiff_t rows, int threads) {
    const ptrdiff_t chunk = conv_chunk(rows, threads);
    return chunk >= CONV_DW_MIN_CHUNK || threads <= 1 ? chunk
                                                      : (rows + threads - 1) / threads;
}

/* The NCHW planes path: vectors a block of interior pixels, and the widest filter it takes
 * (its weights for one row of output are copied to the stack). It runs where output rows
 * are at least CONV_DW_NCHW_MIN_VECTORS vectors wide (elem: the element's bytes): its
 * border pixels, and the interior of a row narrower than a vector, go one at a time.
 * Measured (3x3 SAME, 2 threads, NCHW time over NHWC, against moving x and storing rows
 * NCHW): float32 112 and 56 wide 1.52-1.78 against 2.39-3.05, 28 wide 3.2-3.7 against
 * 3.1-3.3, 14 wide 14.4 against 3.2; float64 112 to 28 wide 1.17-2.58 against 2.36-3.70,
 * 14 wide 2.81 against 2.73. */
#define CONV_DW_NCHW_VB 4
#define CONV_DW_NCHW_MAXKW 16
#define CONV_DW_NCHW_MIN_VECTORS 3
static int conv_dw_planes_apply(const conv_dw_problem *p, size_t elem) {
    const ptrdiff_t lanes = elem == sizeof(float) ? CONV_LANES_F32 : CONV_LANES_F64;
    return p->out_nchw && p->Cg == 1 && p->CO == p->C && p->sw == 1
           && p->KH <= CONV_DW_MAXKH && p->KW <= CONV_DW_NCHW_MAXKW
           && p->OW >= CONV_DW_NCHW_MIN_VECTORS * lanes;
}

/* The first output column whose taps all fall inside the row, and one past the last. */
static void conv_dw_interior(const conv_dw_problem *p, ptrdiff_t *lo, ptrdiff_t *hi) {
    const ptrdiff_t reach = (p->KW - 1) * p->dw, last = p->W - 1 + p->pl - reach;
    *lo = (p->pl + p->sw - 1) / p->sw;
    *hi = last < 0 ? 0 : last / p->sw + 1;
    if (*hi > p->OW) *hi = p->OW;
    if (*lo > *hi) *lo = *hi;
}

#define CONV_DEPTHWISE(T, V, LANES, LOAD, STORE, PUT, NAME)                                \
/* one output pixel, any groups: padded taps skipped, sums updated in o */                 \
static void NAME##_pixel(const conv_dw_problem *p, const T *xn, const T *w, T *o,          \
                         ptrdiff_t oy, ptrdiff_t ox) {                                     \
    const ptrdiff_t Cg = p->Cg, CO = p->CO, Mg = CO / (p->C / Cg);                         \
    ptrdiff_t i, j, t, g, m, k;                                                            \
    for (k = 0; k < CO; k++)                                                               \
        o[k] = 0;                                                                          \
    for (i = 0; i < p->KH; i++) {                                                          \
        const ptrdiff_t iy = oy * p->sh - p->pt + i * p->dh;                               \
        if (iy < 0 || iy >= p->H) continue;                                                \
        for (j = 0; j < p->KW; j++) {                                                      \
            const ptrdiff_t ix = ox * p->sw - p->pl + j * p->dw;                           \
            const T *xp, *wt;                                                              \
            if (ix < 0 || ix >= p->W) continue;                                            \
            xp = xn + (iy * p->W + ix) * p->C;                                             \
            wt = w + (i * p->KW + j) * Cg * CO;                                            \
            if (Cg == 1 && Mg == 1) {                                                      \
                for (k = 0; k < CO; k++)                                                   \
                    o[k] += xp[k] * wt[k];                                                 \
            } else if (Cg == 1) {                                                          \
                for (g = 0; g < p->C; g++)                                                 \
                    for (m = 0; m < Mg; m++)                                               \
                        o[g * Mg + m] += xp[g] * wt[g * Mg + m];                           \
            } else {                                                                       \
                for (t = 0; t < Cg; t++)                                                   \
                    for (g = 0; g * Cg < p->C; g++)                                        \
                        for (m = 0; m < Mg; m++)                                           \
                            o[g * Mg + m] += xp[g * Cg + t] * wt[t * CO + g * Mg + m];     \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* channels c0.. (fewer than a vector) of NAME##_block's pixels, one at a time */          \
static void NAME##_tail(const conv_dw_problem *p, const T *const *xr, const ptrdiff_t *ir, \
                        ptrdiff_t nr, const T *w, T *o, ptrdiff_t ox, ptrdiff_t c0,        \
                        const int PX, const int CHECK) {                                   \
    const ptrdiff_t C = p->C, KW = p->KW, step = p->sw * C, tap = p->dw * C;               \
    const ptrdiff_t ix0 = ox * p->sw - p->pl;                                              \
    ptrdiff_t c, r, j, q;                                                                  \
    for (c = c0; c < C; c++) {                                                             \
        T acc[CONV_DW_PX];                                                                 \
        for (q = 0; q < PX; q++)                                                           \
            acc[q] = 0;                                                                    \
        for (r = 0; r < nr; r++) {                                                         \
            const T *xp = xr[r] + c, *wp = w + ir[r] * KW * C + c;                         \
            for (j = 0; j < KW; j++, xp += tap, wp += C) {                                 \
                if (CHECK && (ix0 + j * p->dw < 0 || ix0 + j * p->dw >= p->W)) continue;   \
                for (q = 0; q < PX; q++)                                                   \
                    acc[q] += xp[q * step] * *wp;                                          \
            }                                                                              \
        }                                                                                  \
        for (q = 0; q < PX; q++)                                                           \
            o[q * C + c] = acc[q];                                                         \
    }                                                                                      \
}                                                                                          \
/* PX output pixels ox.. of a depthwise (multiplier 1) row, summed in registers: xr[r] is  \
 * the first pixel's first tap in valid input row r (kernel row ir[r]); with CHECK (one    \
 * pixel at the border) taps outside the row are skipped. K3 (3-wide filters at stride 1,  \
 * dilation 1: most depthwise layers): each input vector is loaded once a kernel row and   \
 * feeds the (up to) three sums that read it, in the same tap order (j = 0, 1, 2 for every \
 * sum), so the same results. K3 == 2: the same at stride 2 (MobileNet's downsampling      \
 * layers), where PX pixels read 2 PX + 1 input vectors a row, not 3 PX: an even one is    \
 * tap 0 of one sum and tap 2 of the one before, an odd one tap 1, each sum's taps still   \
 * in order. EDGE (K3 == 1, C a whole number of vectors): 1, the first                     \
 * pixel's first tap column is left of the row, or 2, the last pixel's last one is right   \
 * of it (SAME padding's border pixels): that column is neither loaded nor summed, as the  \
 * per-tap skip would. SHIFT (K3 only; x SHIFT elements past a vector boundary, C          \
 * a whole number of vectors): the vectors start SHIFT channels early, so that every load  \
 * is aligned; the first one's first SHIFT lanes are pixel ox - 1's last channels (which   \
 * must be interior too), pixel ox + PX - 1's last SHIFT channels are left to the next     \
 * block, and w holds the filters rotated by SHIFT channels (lane t of the vector at       \
 * channel c reads w[c + SHIFT + t]: filter channel (c + t) mod C). */                     \
static inline void NAME##_block(const conv_dw_problem *p, const T *const *xr,              \
                                const ptrdiff_t *ir, ptrdiff_t nr, const T *w, T *o,       \
                                ptrdiff_t ox, const int PX, const int CHECK, const int K3, \
                                const ptrdiff_t SHIFT, const int EDGE) {                   \
    const ptrdiff_t C = p->C, KW = p->KW, step = p->sw * C, tap = p->dw * C;               \
    const ptrdiff_t ix0 = ox * p->sw - p->pl;                                              \
    ptrdiff_t c, r, j;                                                                     \
    int q;                                                                                 \
    for (c = -SHIFT; c + LANES <= C - SHIFT; c += LANES) {                                 \
        V acc[CONV_DW_PX];                                                                 \
        for (q = 0; q < PX; q++)                                                           \
            acc[q] = (V){0};                                                               \
        for (r = 0; r < nr; r++) {                                                         \
            const T *xp = xr[r] + c, *wp = w + ir[r] * KW * C + c + SHIFT;                 \
            if (K3 == 2) {                                                                 \
                const V w0 = LOAD(wp), w1 = LOAD(wp + C), w2 = LOAD(wp + 2 * C);           \
                acc[0] += LOAD(xp) * w0;                                                   \
                for (q = 0; q < PX; q++) { /* a loop of PX turns, which GCC unrolls */     \
                    const V xv = LOAD(xp + (2 * q + 2) * C);                               \
                    acc[q] += LOAD(xp + (2 * q + 1) * C) * w1;                             \
                    acc[q] += xv * w2;                                                     \
                    if (q + 1 < PX) acc[q + 1] += xv * w0;                                 \
                }                                                                          \
                continue;                                                                  \
            }                                                                              \
            if (K3) {                                                                      \
                const V w0 = LOAD(wp), w1 = LOAD(wp + C), w2 = LOAD(wp + 2 * C);           \
                for (q = 0; q < PX + 2; q++) {                                             \
                    V xv;                                                                  \
                    if ((EDGE == 1 && q == 0) || (EDGE == 2 && q == PX + 1)) continue;     \
                    xv = LOAD(xp + q * C);                                                 \
                    if (q < PX) acc[q] += xv * w0;                                         \
                    if (q >= 1 && q <= PX) acc[q - 1] += xv * w1;                          \
                    if (q >= 2) acc[q - 2] += xv * w2;                                     \
                }                                                                          \
                continue;                                                                  \
            }                                                                              \
            for (j = 0; j < KW; j++, xp += tap, wp += C) {                                 \
                const V wv = LOAD(wp);                                                     \
                if (CHECK && (ix0 + j * p->dw < 0 || ix0 + j * p->dw >= p->W)) continue;   \
                for (q = 0; q < PX; q++)                                                   \
                    acc[q] += LOAD(xp + q * step) * wv;                                    \
            }                                                                              \
        }                                                                                  \
        for (q = 0; q < PX; q++)                                                           \
            STORE(o + q * C + c, acc[q]);                                                  \
    }                                                                                      \
    if (!SHIFT && c < C) /* the channels past the last whole vector */                     \
        NAME##_tail(p, xr, ir, nr, w, o, ox, c, PX, CHECK);                                \
}                                                                                          \
/* one depthwise (multiplier 1) output row, in register blocks of CONV_DW_PX pixels, then  \
 * fewer, the border pixels one at a time (3-wide filters: SAME's two with a neighbour or  \
 * alone, NAME##_block's EDGE); with a shift (x off a vector boundary), the interior       \
 * pixels after the first on the aligned path (NAME##_block's SHIFT), and the last one's   \
 * last channels apart */                                                                  \
static void NAME##_row(const conv_dw_problem *p, const T *xn, const T *w, T *o,            \
                       ptrdiff_t oy, ptrdiff_t lo, ptrdiff_t hi) {                         \
    const ptrdiff_t C = p->C, shift = p->shift;                                            \
    const T *wrot = (const T *)p->wrot;                                                    \
    const int k3 = p->KW == 3 && p->dw == 1 ? (p->sw == 1 ? 1 : p->sw == 2 ? 2 : 0) : 0;  \
    const int edges = k3 == 1 && C % LANES == 0;                                           \
    const T *xr[CONV_DW_MAXKH], *xb[CONV_DW_MAXKH];                                        \
    ptrdiff_t ir[CONV_DW_MAXKH], nr = 0, i, ox = 0, r, npf = 0, done = 0;                  \
    const T *pf[CONV_DW_MAXKH];                                                            \
    for (i = 0; i < p->KH; i++) {                                                          \
        const ptrdiff_t iy = oy * p->sh - p->pt + i * p->dh;                               \
        if (iy < 0 || iy >= p->H) continue;                                                \
        xb[nr] = xn + iy * p->W * C;                                                       \
        ir[nr++] = i;                                                                      \
    }                                                                                      \
    for (r = 0; p->prefetch && r < nr; r++) /* the rows the row above did not read */   \
        if (oy == 0 || oy * p->sh + ir[r] * p->dh > (oy - 1) * p->sh + (p->KH - 1) * p->dh) \
            pf[npf++] = xb[r];                                                             \
    while (ox < p->OW) {                                                                   \
        const ptrdiff_t left = ox >= lo ? hi - ox : 0;                                     \
        const ptrdiff_t ix0 = ox * p->sw - p->pl;                                          \
        if (npf) { /* up to CONV_DW_AHEAD pixels past this block's, a line at a time */    \
            ptrdiff_t until = (ix0 + (CONV_DW_PX + CONV_DW_AHEAD) * p->sw) * C;            \
            if (until > p->W * C) until = p->W * C;                                        \
            for (; done < until; done += 64 / (ptrdiff_t)sizeof(T))                        \
                for (r = 0; r < npf; r++)                                                  \
                    CONV_PREFETCH(pf[r] + done);                                           \
        }                                                                                  \
        for (r = 0; r < nr; r++)                                                           \
            xr[r] = xb[r] + ix0 * C;                                                       \
        if (edges && ox == 0 && ix0 == -1 && lo == 1 && hi >= 2) {                         \
            /* the left border pixel (tap column 0 left of the row), pixel 1 with it */    \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 2, 0, 1, 0, 1);                 \
            ox += 2;                                                                       \
        } else if (edges && ox == hi && ox == p->OW - 1 && ix0 >= 0 && ix0 + 2 == p->W) {  \
            /* the right border pixel: tap column 2 right of the row */                    \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 1, 0, 1, 0, 2);                 \
            ox += 1;                                                                       \
        } else if (shift && ox == lo && left >= 2) { /* first interior pixel, unaligned */ \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 1, 0, 1, 0, 0);                 \
            ox += 1;                                                                       \
        } else if (shift && ox > lo && left >= 1) { /* aligned: pixel ox - 1 interior */   \
            if (left >= CONV_DW_PX) {                                                      \
                NAME##_block(p, xr, ir, nr, wrot, o + ox * C, ox, CONV_DW_PX, 0, 1, shift, \
                             0);                                                           \
                ox += CONV_DW_PX;                                                          \
            } else if (left >= 4) {                                                        \
                NAME##_block(p, xr, ir, nr, wrot, o + ox * C, ox, 4, 0, 1, shift, 0);      \
                ox += 4;                                                                   \
            } else {                                                                       \
                NAME##_block(p, xr, ir, nr, wrot, o + ox * C, ox, 1, 0, 1, shift, 0);      \
                ox += 1;                                                                   \
            }                                                                              \
            if (ox == hi) { /* the last interior pixel's last channels: no next block */   \
                for (r = 0; r < nr; r++)                                                   \
                    xr[r] = xb[r] + ((hi - 1) - p->pl) * C;                                \
                NAME##_tail(p, xr, ir, nr, w, o + (hi - 1) * C, hi - 1, C - shift, 1, 0);  \
            }                                                                              \
        } else if (left >= CONV_DW_PX && k3 == 1) {                                        \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, CONV_DW_PX, 0, 1, 0, 0);        \
            ox += CONV_DW_PX;                                                              \
        } else if (left >= CONV_DW_PX && k3 == 2) {                                        \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, CONV_DW_PX, 0, 2, 0, 0);        \
            ox += CONV_DW_PX;                                                              \
        } else if (left >= 4 && k3 == 2) {                                                 \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 4, 0, 2, 0, 0);                 \
            ox += 4;                                                                       \
        } else if (left >= CONV_DW_PX) {                                                   \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, CONV_DW_PX, 0, 0, 0, 0);        \
            ox += CONV_DW_PX;                                                              \
        } else if (left >= 4) {                                                            \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 4, 0, 0, 0, 0);                 \
            ox += 4;                                                                       \
        } else if (left >= 1) {                                                            \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 1, 0, 0, 0, 0);                 \
            ox += 1;                                                                       \
        } else {                                                                           \
            NAME##_block(p, xr, ir, nr, w, o + ox * C, ox, 1, 1, 0, 0, 0);                 \
            ox += 1;                                                                       \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
static void NAME##_rows(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                 \
    const conv_dw_problem *p = (const conv_dw_problem *)ctx;                               \
    const T *x = (const T *)p->x, *w = (const T *)p->w;                                    \
    const int blocked = p->Cg == 1 && p->CO == p->C && p->KH <= CONV_DW_MAXKH;             \
    const ptrdiff_t P = p->OH * p->OW;                                                     \
    T *rowbuf = NULL;                                                                      \
    ptrdiff_t row, lo, hi;                                                                 \
    conv_dw_interior(p, &lo, &hi);                                                         \
    if (p->out_nchw) {                                                                     \
        rowbuf = (T *)conv_scratch((size_t)(p->OW * p->CO) * sizeof(T));                   \
        if (rowbuf == NULL) {                                                              \
            CONV_STORE_RELAXED(&((conv_dw_problem *)ctx)->failed, 1);                      \
            return;                                                                        \
        }                                                                                  \
    }                                                                                      \
    for (row = begin; row < end; row++) {                                                  \
        const ptrdiff_t n = row / p->OH, oy = row - n * p->OH;                             \
        const T *xn = x + n * p->H * p->W * p->C;                                          \
        T *o = rowbuf ? rowbuf : (T *)p->out + row * p->OW * p->CO;                        \
        ptrdiff_t ox;                                                                      \
        if (conv_interrupted(p->intr, row)) return;  /* Ctrl-C: every thread stops */      \
        if (blocked) {                                                                     \
            NAME##_row(p, xn, w, o, oy, lo, hi);                                           \
        } else {                                                                           \
            for (ox = 0; ox < p->OW; ox++)                                                 \
                NAME##_pixel(p, xn, w, o + ox * p->CO, oy, ox);                            \
        }                                                                                  \
        if (rowbuf) /* the row's pixels into each channel's plane */                       \
            PUT(rowbuf, p->CO, (int)p->OW, (int)p->CO,                                     \
                (T *)p->out + n * p->CO * P + oy * p->OW, P);                              \
    }                                                                                      \
}                                                                                          \
/* NCHW x and out, depthwise with multiplier 1, stride 1 along rows: each channel plane    \
 * is its own convolution, vectorized along the output row (a task: one row of one         \
 * channel). Interior pixels CONV_DW_NCHW_VB vectors at a time, then one at a time, the    \
 * last vector ending at the interior's end (overlapping the one before: the same values   \
 * stored again); border pixels, and interiors narrower than a vector, one by one, their   \
 * padded taps skipped. Each sum runs over the taps in the order (i, j), one multiply-add  \
 * a term, as on the NHWC paths: the same results. xr: the valid rows of x (nr), wr: their \
 * taps' weights (KW a row), ix0: the first pixel's first tap column. */                   \
static inline T NAME##_plane_px(const T *const *xr, const T *wr, ptrdiff_t nr,            \
                                ptrdiff_t KW, ptrdiff_t ix0, ptrdiff_t dw, ptrdiff_t W) {  \
    T acc = 0;                                                                             \
    ptrdiff_t r, j;                                                                        \
    for (r = 0; r < nr; r++)                                                               \
        for (j = 0; j < KW; j++) {                                                         \
            const ptrdiff_t ix = ix0 + j * dw;                                             \
            if (ix < 0 || ix >= W) continue;                                               \
            acc += xr[r][ix] * wr[r * KW + j];                                             \
        }                                                                                  \
    return acc;                                                                            \
}                                                                                          \
/* VB vectors of interior pixels from ix0 into o */                                        \
static inline void NAME##_plane_vecs(const T *const *xr, const T *wr, ptrdiff_t nr,       \
                                     ptrdiff_t KW, ptrdiff_t ix0, ptrdiff_t dw, T *o,      \
                                     const int VB) {                                       \
    V acc[CONV_DW_NCHW_VB];                                                                \
    ptrdiff_t r, j;                                                                        \
    int q;                                                                                 \
    for (q = 0; q < VB; q++) acc[q] = (V){0};                                              \
    for (r = 0; r < nr; r++)                                                               \
        for (j = 0; j < KW; j++) {                                                         \
            const T wv = wr[r * KW + j];                                                   \
            for (q = 0; q < VB; q++)                                                       \
                acc[q] += LOAD(xr[r] + ix0 + q * LANES + j * dw) * wv;                     \
        }                                                                                  \
    for (q = 0; q < VB; q++)                                                               \
        STORE(o + q * LANES, acc[q]);                                                      \
}                                                                                          \
static void NAME##_nchw_rows(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {            \
    const conv_dw_problem *p = (const conv_dw_problem *)ctx;                               \
    const T *x = (const T *)p->x, *w = (const T *)p->w;                                    \
    const ptrdiff_t C = p->C, KW = p->KW, W = p->W, dw = p->dw, pl = p->pl;                \
    ptrdiff_t row, lo, hi;                                                                 \
    conv_dw_interior(p, &lo, &hi);                                                         \
    for (row = begin; row < end; row++) {                                                  \
        const ptrdiff_t plane = row / p->OH, oy = row - plane * p->OH, c = plane % C;      \
        const T *xp = x + plane * p->H * W, *xr[CONV_DW_MAXKH];                            \
        T *o = (T *)p->out + row * p->OW;                                                  \
        T wr[CONV_DW_MAXKH * CONV_DW_NCHW_MAXKW];                                          \
        ptrdiff_t nr = 0, i, j, ox;                                                        \
        if (conv_interrupted(p->intr, row)) return;  /* Ctrl-C: every thread stops */      \
        for (i = 0; i < p->KH; i++) { /* the rows in x, and their taps' weights */         \
            const ptrdiff_t iy = oy * p->sh - p->pt + i * p->dh;                           \
            if (iy < 0 || iy >= p->H) continue;                                            \
            xr[nr] = xp + iy * W;                                                          \
            for (j = 0; j < KW; j++)                                                       \
                wr[nr * KW + j] = w[(i * KW + j) * C + c];                                 \
            nr++;                                                                          \
        }                                                                                  \
        for (ox = 0; ox < lo && ox < p->OW; ox++) /* the left border */                    \
            o[ox] = NAME##_plane_px(xr, wr, nr, KW, ox - pl, dw, W);                       \
        if (hi - lo >= LANES) { /* the interior in vectors; the last one may overlap */    \
            for (ox = lo; ox + CONV_DW_NCHW_VB * LANES <= hi; ox += CONV_DW_NCHW_VB * LANES) \
                NAME##_plane_vecs(xr, wr, nr, KW, ox - pl, dw, o + ox, CONV_DW_NCHW_VB);   \
            for (; ox + LANES <= hi; ox += LANES)                                          \
                NAME##_plane_vecs(xr, wr, nr, KW, ox - pl, dw, o + ox, 1);                 \
            if (ox < hi) /* recomputes a few of the vector before: the same values */      \
                NAME##_plane_vecs(xr, wr, nr, KW, hi - LANES - pl, dw, o + hi - LANES, 1); \
            ox = hi;                                                                       \
        }                                                                                  \
        for (; ox < p->OW; ox++) /* the interior's few pixels, or the right border */      \
            o[ox] = NAME##_plane_px(xr, wr, nr, KW, ox - pl, dw, W);                       \
    }                                                                                      \
}                                                                                          \
/* The aligned path (NAME##_block's SHIFT) runs where every pixel of x starts the same     \
 * whole number of elements past a vector boundary, not zero (NumPy's large arrays start   \
 * 16 bytes past a 64-byte line: each load then spans two cache lines), for depthwise      \
 * multiplier-1 3-wide filters at stride 1 and dilation 1, given the scratch to rotate     \
 * the filters in. */                                                                      \
static void NAME(conv_dw_problem *p, int threads) {                                        \
    const ptrdiff_t rows = p->N * p->OH, C = p->C;                                         \
    conv_dw_problem q = *p;                                                                \
    const size_t vb = LANES * sizeof(T), at = (size_t)(uintptr_t)p->x % vb;                \
    if (rows == 0 || p->OW == 0 || p->CO == 0) return;                                     \
    q.shift = 0;                                                                           \
    q.prefetch = (size_t)(p->N * (p->H * p->W * C + p->OH * p->OW * p->CO)) * sizeof(T)   \
                 > CONV_DW_PREFETCH_BYTES;                                                 \
    p->failed = q.failed = 0;                                                              \
    if (p->x_nchw) { /* the caller checked conv_dw_planes_apply */                         \
        conv_pool_run(threads, rows * C, conv_dw_chunk(rows * C, threads), NAME##_nchw_rows, \
                      &q);                                                                 \
        return;                                                                            \
    }                                                                                      \
    if (p->wrot && p->Cg == 1 && p->CO == C && C % LANES == 0 && p->KW == 3                \
        && p->sw == 1 && p->dw == 1 && p->KH <= CONV_DW_MAXKH && at % sizeof(T) == 0) {    \
        const T *w = (const T *)p->w;                                                      \
        T *wr = (T *)p->wrot;                                                              \
        const ptrdiff_t s = (ptrdiff_t)(at / sizeof(T));                                   \
        ptrdiff_t k;                                                                       \
        for (k = 0; s && k < p->KH * p->KW; k++) { /* wr[c] = w[(c - s) mod C] */          \
            memcpy(wr + k * C + s, w + k * C, (size_t)(C - s) * sizeof(T));                \
            memcpy(wr + k * C, w + k * C + C - s, (size_t)s * sizeof(T));                  \
        }                                                                                  \
        q.shift = s;                                                                       \
    }                                                                                      \
    conv_pool_run(threads, rows, conv_dw_chunk(rows, threads), NAME##_rows, &q);          \
    p->failed = q.failed;                                                                  \
}

CONV_DEPTHWISE(float, conv_vf32, CONV_LANES_F32, conv_load_f32, conv_store_f32,
               conv_put_nchw_f, conv_depthwise_f)
CONV_DEPTHWISE(double, conv_vf64, CONV_LANES_F64, conv_load_f64, conv_store_f64,
               conv_put_nchw_d, conv_depthwise_d)

#endif /* CONV_DEPTHWISE_H */
