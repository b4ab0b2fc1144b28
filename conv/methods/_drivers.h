/* conv's drivers: split a convolution into tasks (channel tile x block of BLOCK pixel
 * tiles of one image), hand them to the pool (_pool.h), and run each task's tiles on the
 * micro-kernel (_ukernel.h, _tile.h). Included by _kernels.pxi.
 *
 * Every output element is summed in the order (i, j, c_in) whatever the thread count or
 * the order tasks run in, so threads=1, threads=k and the serial build agree bit for bit,
 * and the "direct" and "matmul" orders agree bit for bit.
 */
#ifndef CONV_DRIVERS_H
#define CONV_DRIVERS_H
#include <stddef.h>
#include "_ukernel.h"
#include "_pack.h"
#include "_pool.h"
#include "_transpose.h"

/* Pixel tiles per task: one channel tile's weights serve BLOCK tiles in a row, and in the
 * tap-by-tap ("matmul") order the block being accumulated (MR*BLOCK pixels x NR channels)
 * stays in L1. */
#define CONV_BLOCK 8

/* NCHW output: tiles computed into a buffer are moved into their channels' planes
 * CONV_PUT_TILES at a time: the fewest tiles whose pixels are a whole number of the
 * transposed squares (_transpose.h: 8 floats, 4 or 8 doubles), doubled until they are
 * at least a cache line a channel (float32 with 8-pixel tiles: 2 tiles; with AVX2's
 * 6-pixel tiles: 4, where 2 left 4 of their 12 pixels to the one-value-at-a-time loop).
 * Measured (2 threads, interleaved, NCHW time over NHWC's): with 8-pixel tiles 1, 2, 4
 * and 8 tiles gave pointwise 1.10-1.20 / 1.08-1.18 / 1.18-1.37 / 1.17-1.38, k5
 * 1.04-1.11 / 1.03-1.25 / 1.09-1.13 / 1.07-1.11, no order between them above the
 * machine's noise. */
#define CONV_PUT_SQ(T) (sizeof(T) == sizeof(float) ? CONV_SWAP_SQ_F : CONV_PUT_SQ_D)
#define CONV_PUT_K0(T) (CONV_MR % CONV_PUT_SQ(T) == 0 ? 1                                  \
                        : 2 * CONV_MR % CONV_PUT_SQ(T) == 0 ? 2                            \
                        : 4 * CONV_MR % CONV_PUT_SQ(T) == 0 ? 4 : 8)
#define CONV_PUT_TILES(T) (CONV_PUT_K0(T) * CONV_MR * (ptrdiff_t)sizeof(T) >= 64            \
                           ? CONV_PUT_K0(T) : 2 * CONV_PUT_K0(T))

typedef struct {
    const void *x, *wp, *zeros;
    void *out;
    const void *w;                /* NULL, or the weights (KH*KW*CI, CO) to pack into wp
                                   * in the tasks: each chunk of tasks is then one channel
                                   * tile, which it packs before its first tile */
    ptrdiff_t N, H, W, CI;        /* input (N, H, W, CI), unpadded */
    ptrdiff_t ncot, KH, KW, nr;   /* packed weights (ncot, KH, KW, CI, nr) */
    ptrdiff_t OH, OW, CO;         /* output (N, OH, OW, CO) */
    ptrdiff_t sh, sw, dh, dw, pt, pl;
    int zeros_exact;              /* every weight finite: padded taps may read zeros (with
                                   * w: may, where the channel tile's weights are finite) */
    int blocks_outer;             /* task order: input block outer (speed only) */
    int out_nchw;                 /* out is (N, CO, OH, OW): each tile is computed into a
                                   * buffer and stored channel-major (direct order only) */
    conv_interrupt *intr;         /* checked between tasks; NULL: not interruptible */
} conv_problem;

/* Tasks per chunk handed out at once: about 16 chunks per thread balance the load. */
static ptrdiff_t conv_chunk(ptrdiff_t ntask, int threads) {
    ptrdiff_t c = ntask / (16 * (ptrdiff_t)(threads > 0 ? threads : 1));
    return c > 1 ? c : 1;
}

static ptrdiff_t conv_tasks(const conv_problem *p) {
    ptrdiff_t tiles = (p->OH * p->OW + CONV_MR - 1) / CONV_MR;
    ptrdiff_t per_image = (tiles + CONV_BLOCK - 1) / CONV_BLOCK;
    return p->ncot * p->N * per_image;
}

/* One task body per (element type, order), from one template; TILE is the micro-kernel,
 * whose tiles are NR channels wide (the packed weights' nr), PWTILE its 1x1 form, PACK
 * the packing of a channel tile's rows (_pack.h), PUT the channel-major store of a tile
 * (_transpose.h). */
#define CONV_DRIVER(T, TILE, PWTILE, PACK, PUT, NR, NAME, MATMUL)                          \
static void NAME##_tasks(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                \
    const conv_problem *p = (const conv_problem *)ctx;                                     \
    const T *x = (const T *)p->x, *wp = (const T *)p->wp, *zeros = (const T *)p->zeros;   \
    T *out = (T *)p->out;                                                                  \
    ptrdiff_t packed = -1;        /* with p->w: the channel tile this call packed last */  \
    int exact = p->zeros_exact;                                                            \
    const ptrdiff_t P = p->OH * p->OW, tiles = (P + CONV_MR - 1) / CONV_MR;               \
    const ptrdiff_t per_image = (tiles + CONV_BLOCK - 1) / CONV_BLOCK;                     \
    const ptrdiff_t blocks = p->N * per_image, OW = p->OW, CO = p->CO, nr = p->nr;        \
    const ptrdiff_t KH = p->KH, KW = p->KW, CI = p->CI;                                    \
    /* 1x1 and every output pixel inside the input (no padding before, none reached      \
     * after): a matrix product, on the 1x1 tile (PWTILE), which reads MR input pixels    \
     * found here, any stride, tiles crossing output rows (same sums, same bits) */        \
    const int pw = !(MATMUL) && KH == 1 && KW == 1 && p->pt == 0 && p->pl == 0            \
                   && (p->OH - 1) * p->sh < p->H && (p->OW - 1) * p->sw < p->W;            \
    const ptrdiff_t xrow = p->sh * p->W * CI, xcol = p->sw * CI;                           \
    /* NCHW output: CONV_PUT_TILES tiles into tb, then moved channel-major into out (the \
     * same sums) */                                                                       \
    const int nchw = !(MATMUL) && p->out_nchw;                                             \
    const ptrdiff_t ldo = nchw ? (NR) : CO;                                                \
    T tb[CONV_PUT_TILES(T) * CONV_MR * (NR)];                                              \
    ptrdiff_t task;                                                                        \
    for (task = begin; task < end; task++) {                                               \
        ptrdiff_t block, cot, n, t0, t1, t, tp, i, j, oy, ox;                              \
        int nc;                                                                            \
        const T *xn;                                                                       \
        if (conv_interrupted(p->intr, task)) return;  /* Ctrl-C: every thread stops */     \
        if (p->blocks_outer) {  /* one input block stays hot while every channel tile passes */ \
            block = task / p->ncot;                                                        \
            cot = task - block * p->ncot;                                                  \
        } else {                /* one channel tile's weights stay hot while input streams */ \
            cot = task / blocks;                                                           \
            block = task - cot * blocks;                                                   \
        }                                                                                  \
        n = block / per_image;                                                             \
        t0 = (block - n * per_image) * CONV_BLOCK;                                         \
        t1 = t0 + CONV_BLOCK < tiles ? t0 + CONV_BLOCK : tiles;                            \
        nc = (int)(CO - cot * nr < nr ? CO - cot * nr : nr);                               \
        xn = x + n * p->H * p->W * CI;                                                     \
        if (p->w && cot != packed) {  /* this chunk's channel tile: into wp, checked */    \
            const ptrdiff_t rows = KH * KW * CI;                                           \
            exact = p->zeros_exact &&                                                      \
                    !PACK((const T *)p->w, (T *)p->wp, rows, CO, nr, cot, 0, rows);        \
            packed = cot;                                                                  \
        }                                                                                  \
        for (i = 0; i < (MATMUL ? KH : 1); i++) {                                          \
            for (j = 0; j < (MATMUL ? KW : 1); j++) {                                      \
                oy = (t0 * CONV_MR) / OW;  /* one division per block; then stepped */      \
                ox = t0 * CONV_MR - oy * OW;                                               \
                tp = t0;   /* NCHW: the first tile in tb */                                \
                for (t = t0; t < t1; t++) {                                                \
                    const ptrdiff_t p0 = t * CONV_MR;                                      \
                    const int mr = (int)(P - p0 < CONV_MR ? P - p0 : CONV_MR);             \
                    T *o = nchw ? tb + (p0 - tp * CONV_MR) * (NR)                          \
                                : out + n * P * CO + p0 * CO + cot * nr;                   \
                    if (MATMUL)  /* one tap: a (pixels x CI) @ (CI x NR) product, summed */ \
                        TILE(xn, wp + ((cot * KH + i) * KW + j) * CI * nr, zeros, o, ldo,  \
                             mr, nc, oy, ox, OW, p->H, p->W, CI, 1, 1, p->sh, p->sw,       \
                             p->dh, p->dw, p->pt - i * p->dh, p->pl - j * p->dw,           \
                             exact, i + j > 0);                                            \
                    else if (pw) {                                                         \
                        const T *q[CONV_MR];                                               \
                        ptrdiff_t qy = oy, qx = ox;                                        \
                        int r;                                                             \
                        for (r = 0; r < CONV_MR; r++) {                                    \
                            q[r] = r < mr ? xn + qy * xrow + qx * xcol : zeros;            \
                            if (++qx == OW) { qx = 0; qy++; }                              \
                        }                                                                  \
                        PWTILE(q, wp + cot * CI * nr, CI, NR, o, ldo, mr, nc);             \
                    }                                                                      \
                    else         /* every tap before the tile is stored */                 \
                        TILE(xn, wp + cot * KH * KW * CI * nr, zeros, o, ldo, mr, nc, oy,  \
                             ox, OW, p->H, p->W, CI, KH, KW, p->sh, p->sw, p->dh, p->dw,   \
                             p->pt, p->pl, exact, 0);                                      \
                    ox += CONV_MR;                                                         \
                    while (ox >= OW) { ox -= OW; oy++; }                                   \
                    if (nchw && (t + 1 - tp == CONV_PUT_TILES(T) || t + 1 == t1)) {        \
                        PUT(tb, NR, (int)(p0 + mr - tp * CONV_MR), nc,                     \
                            out + (n * CO + cot * nr) * P + tp * CONV_MR, P);              \
                        tp = t + 1;                                                        \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
static void NAME(const conv_problem *p, int threads) {                                     \
    ptrdiff_t ntask;                                                                       \
    CONV_ASSERT(p->nr == (NR) && p->x && p->wp && p->zeros);                               \
    CONV_ASSERT(!p->w || !p->blocks_outer);                                                \
    CONV_ASSERT(!(MATMUL) || !p->out_nchw);                                                \
    if (p->CO == 0) return;                                                                \
    ntask = conv_tasks(p);                                                                 \
    /* packing in the tasks: a chunk is one channel tile's blocks (chunks start at        \
     * multiples of the chunk), so each tile is packed once, by the thread that uses it */ \
    conv_pool_run(threads, ntask, p->w ? ntask / p->ncot : conv_chunk(ntask, threads),    \
                  NAME##_tasks, p);                                                        \
}

CONV_DRIVER(float, CONV_UKERNEL_F32, CONV_PWKERNEL_F32, conv_pack_f_rows, conv_put_nchw_f,
            CONV_NR_F, conv_direct_f, 0)
CONV_DRIVER(double, CONV_UKERNEL_F64, CONV_PWKERNEL_F64, conv_pack_d_rows, conv_put_nchw_d,
            CONV_NR_D, conv_direct_d, 0)
CONV_DRIVER(float, CONV_UKERNEL_F32, CONV_PWKERNEL_F32, conv_pack_f_rows, conv_put_nchw_f,
            CONV_NR_F, conv_matmul_f, 1)
CONV_DRIVER(double, CONV_UKERNEL_F64, CONV_PWKERNEL_F64, conv_pack_d_rows, conv_put_nchw_d,
            CONV_NR_D, conv_matmul_d, 1)
#ifdef CONV_HALF_TILES /* the same drivers on the half-width tiles */
CONV_DRIVER(float, CONV_UKERNEL_F32_HALF, CONV_PWKERNEL_F32_HALF, conv_pack_f_rows,
            conv_put_nchw_f, CONV_NR_F_HALF, conv_direct_f_half, 0)
CONV_DRIVER(double, CONV_UKERNEL_F64_HALF, CONV_PWKERNEL_F64_HALF, conv_pack_d_rows,
            conv_put_nchw_d, CONV_NR_D_HALF, conv_direct_d_half, 0)
CONV_DRIVER(float, CONV_UKERNEL_F32_HALF, CONV_PWKERNEL_F32_HALF, conv_pack_f_rows,
            conv_put_nchw_f, CONV_NR_F_HALF, conv_matmul_f_half, 1)
CONV_DRIVER(double, CONV_UKERNEL_F64_HALF, CONV_PWKERNEL_F64_HALF, conv_pack_d_rows,
            conv_put_nchw_d, CONV_NR_D_HALF, conv_matmul_d_half, 1)
#else /* none in this build: _kernels.pxi sees null drivers */
#define conv_direct_f_half NULL
#define conv_direct_d_half NULL
#define conv_matmul_f_half NULL
#define conv_matmul_d_half NULL
#endif

/* A 1x1 convolution without padding on NCHW x and out, with no layout change: each
 * image's output is a matrix product, out[n] (CO x P) = w^T (CO x CI) . x[n] (CI x P, P
 * the output pixels, taken from x's channel planes at the stride). A task is one panel of
 * NR output pixels, read where it lies (a run of NR pixels in each of the CI planes, rows
 * HW apart) or, where it is not one whole run or the planes fall into few cache sets
 * (CONV_PW_ALIAS_BYTES), copied (CI x NR, zeros past the image's last pixel) into the
 * thread's scratch; times tiles of MR output channels (cob of them, see conv_pw_shape) on
 * the 1x1 micro-kernel with the roles swapped: its MR rows are output channels, from
 * w^T's rows, its NR columns pixels, from the panel; each tile stores MR runs of NR
 * pixels, one per channel's plane. The next panel's input and output lines are fetched
 * ahead. Each out[n, c, p] is the sum over c_in in order of w[c_in, c] *
 * x[n, c_in, p] from zero, as in the NHWC call's 1x1 tiles: the same bits. */
typedef struct {
    const void *x, *wt, *zeros;  /* x (N, CI, H, W); wt (CO, CI); zeros: CI of them */
    void *out;                   /* (N, CO, OH, OW) */
    ptrdiff_t N, CI, H, W, CO, OH, OW, sh, sw;
    ptrdiff_t cob;               /* output channels a task (set by the driver) */
    int failed;                  /* out: a task had no scratch memory */
    conv_interrupt *intr;
} conv_pw_problem;

/* A task's output channels: all of them (each panel copied once), split into runs of
 * CONV_BLOCK tiles only while there are fewer than CONV_PW_TASKS_PER_THREAD tasks a
 * thread. */
#define CONV_PW_TASKS_PER_THREAD 4
/* Planes a multiple of this many bytes apart fall into few L1 sets: panels copied */
#define CONV_PW_ALIAS_BYTES 1024

static ptrdiff_t conv_pw_tasks(const conv_pw_problem *p, ptrdiff_t nr) {
    return p->N * ((p->OH * p->OW + nr - 1) / nr) * ((p->CO + p->cob - 1) / p->cob);
}

static void conv_pw_shape(conv_pw_problem *p, ptrdiff_t nr, int threads) {
    const ptrdiff_t run = CONV_BLOCK * CONV_MR;
    p->cob = (p->CO + run - 1) / run * run;
    while (p->cob > run && conv_pw_tasks(p, nr) < CONV_PW_TASKS_PER_THREAD * threads)
        p->cob = (p->cob / 2 + run - 1) / run * run;
}

#if defined(__GNUC__) || defined(__clang__)
#define CONV_PREFETCH(a) __builtin_prefetch((a), 0, 3)
#define CONV_PREFETCH_W(a) __builtin_prefetch((a), 1, 3)
#else
#define CONV_PREFETCH(a) ((void)0)
#define CONV_PREFETCH_W(a) ((void)0)
#endif

#define CONV_PW_NCHW(T, PWTILE, NR, NAME)                                                  \
static void NAME##_tasks(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                \
    conv_pw_problem *p = (conv_pw_problem *)ctx;                                           \
    const ptrdiff_t CI = p->CI, CO = p->CO, OW = p->OW, HW = p->H * p->W;                  \
    const ptrdiff_t P = p->OH * OW, npan = (P + (NR) - 1) / (NR);                          \
    const ptrdiff_t cob = p->cob, ncob = (CO + cob - 1) / cob;                             \
    const T *x = (const T *)p->x, *wt = (const T *)p->wt, *zeros = (const T *)p->zeros;    \
    T *out = (T *)p->out;                                                                  \
    T *panel = (T *)conv_scratch((size_t)(CI * (NR)) * sizeof(T));                         \
    /* planes in few cache sets (CONV_PW_ALIAS_BYTES): panels copied */                    \
    const int aliased = (HW * (ptrdiff_t)sizeof(T)) % CONV_PW_ALIAS_BYTES == 0;            \
    ptrdiff_t task;                                                                        \
    if (panel == NULL) {                                                                   \
        CONV_STORE_RELAXED(&p->failed, 1);                                                 \
        return;                                                                            \
    }                                                                                      \
    for (task = begin; task < end; task++) {                                               \
        const ptrdiff_t n = task / (npan * ncob), rest = task - n * npan * ncob;           \
        const ptrdiff_t p0 = rest / ncob * (NR);                                           \
        const ptrdiff_t co0 = (rest - rest / ncob * ncob) * cob;                           \
        const ptrdiff_t co1 = co0 + cob < CO ? co0 + cob : CO;                             \
        const int np = (int)(P - p0 < (NR) ? P - p0 : (NR));                               \
        const T *xn = x + n * CI * HW;                                                     \
        ptrdiff_t src[NR], oy = p0 / OW, ox = p0 - oy * OW, k, c, ldb;                     \
        const T *b;                                                                        \
        int j, run;                                                                        \
        if (conv_interrupted(p->intr, task)) return;  /* Ctrl-C: every thread stops */     \
        for (j = 0; j < np; j++) {  /* each pixel's place in an input plane */             \
            src[j] = oy * p->sh * p->W + ox * p->sw;                                       \
            if (++ox == OW) { ox = 0; oy++; }                                              \
        }                                                                                  \
        run = src[np - 1] - src[0] == np - 1;  /* one run of the plane (stride 1, a row or \
                                                * whole rows) */                           \
        if (run && np == (NR) && !aliased) {  /* read in place, rows a plane apart */      \
            b = xn + src[0];                                                               \
            ldb = HW;                                                                      \
        } else {                                                                           \
            for (k = 0; k < CI; k++) {                                                     \
                const T *xr = xn + k * HW;                                                 \
                T *pr = panel + k * (NR);                                                  \
                if (run)                                                                   \
                    memcpy(pr, xr + src[0], (size_t)np * sizeof(T));                       \
                else                                                                       \
                    for (j = 0; j < np; j++) pr[j] = xr[src[j]];                           \
                for (j = np; j < (NR); j++) pr[j] = 0;                                     \
            }                                                                              \
            b = panel;                                                                     \
            ldb = NR;                                                                      \
        }                                                                                  \
        if (run && p0 + 2 * (NR) <= P) {  /* the next panel's runs, and its output's,     \
                                           * fetched while this one computes (the hardware \
                                           * does not follow streams a plane apart) */     \
            for (k = 0; k < CI; k++)                                                       \
                for (j = 0; j < (NR); j += 64 / (int)sizeof(T))                            \
                    CONV_PREFETCH(xn + k * HW + src[0] + (NR) + j);                        \
            for (c = co0; c < co1; c++)                                                    \
                for (j = 0; j < (NR); j += 64 / (int)sizeof(T))                            \
                    CONV_PREFETCH_W(out + (n * CO + c) * P + p0 + (NR) + j);               \
        }                                                                                  \
        for (c = co0; c < co1; c += CONV_MR) {                                             \
            const int mr = (int)(co1 - c < CONV_MR ? co1 - c : CONV_MR);                   \
            const T *q[CONV_MR];                                                           \
            int r;                                                                         \
            for (r = 0; r < CONV_MR; r++)                                                  \
                q[r] = r < mr ? wt + (c + r) * CI : zeros;                                 \
            PWTILE(q, b, CI, ldb, out + (n * CO + c) * P + p0, P, mr, np);                 \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
static void NAME(conv_pw_problem *p, int threads) {                                        \
    ptrdiff_t ntask;                                                                       \
    CONV_ASSERT(p->x && p->wt && p->zeros && p->out && p->CO > 0);                         \
    p->failed = 0;                                                                         \
    conv_pw_shape(p, NR, threads);                                                         \
    ntask = conv_pw_tasks(p, NR);                                                          \
    if (ntask == 0) return;                                                                \
    conv_pool_run(threads, ntask, conv_chunk(ntask, threads), NAME##_tasks, p);            \
}

CONV_PW_NCHW(float, CONV_PWKERNEL_F32, CONV_NR_F, conv_pw_nchw_f)
CONV_PW_NCHW(double, CONV_PWKERNEL_F64, CONV_NR_D, conv_pw_nchw_d)

#endif /* CONV_DRIVERS_H */
