/* One output tile of the convolution: MR consecutive output pixels of image n (in
 * the flattened (oy, ox) order, so a tile may cross the end of an output row) times
 * NR output channels, summed over kernel taps and input channels. Included by
 * _ukernel.h once per element type with T (element), V (a 32-byte vector of T), L
 * (lanes of V), LOADV/STOREV and TILE (the function's name) defined.
 *
 * x      image n of the input, (H, W, CI) contiguous, unpadded
 * wp     packed weights of this channel tile, (KH, KW, CI, NR), zero past C_out
 * zeros  KW*CI zeros, read in place of a tap that falls in the padding
 * out    output pixel p0 of image n at this channel tile; CO elements between pixels
 * mr     pixels in the tile (<= MR); nc: channels to store (<= NR)
 * oy, ox the tile's first pixel (the driver tracks them; no division here)
 * pt, pl top/left padding
 * zeros_exact  1 when every weight is finite: then 0 * w == 0 and reading zeros for
 *        a padded tap is the same as skipping it. 0 when a weight is Inf/NaN: padded
 *        taps are then skipped row by row (Inf * 0 would be NaN).
 * accumulate   0: overwrite the tile; 1: continue the sums from the values in out
 *        (the tap-by-tap "matmul" order, which then equals the direct order bit for bit)
 *
 * Each output element is accumulated in the order (i, j, c_in) whatever the path,
 * tile position or thread count.
 */
#define NR (2 * L)
/* Below this many rows in range, running just those rows beats the 6-row path fed
 * with zeros. Either way each sum is the same (skipping a tap adds nothing). */
#ifndef CONV_MIN_ROWS
#define CONV_MIN_ROWS 4
#endif

#define CONV_FMA_ROW(A, CA, CB) do { const T a_ = (A); CA += w0 * a_; CB += w1 * a_; } while (0)

/* All MR rows, K consecutive (input, weight row) pairs from row pointers Q[0..5]. */
#define CONV_FULL(Q, WT, K)                                                    \
    do {                                                                       \
        const T *q0 = (Q)[0], *q1 = (Q)[1], *q2 = (Q)[2];                      \
        const T *q3 = (Q)[3], *q4 = (Q)[4], *q5 = (Q)[5];                      \
        const T *wt_ = (WT);                                                   \
        const ptrdiff_t kk_ = (K);                                             \
        for (ptrdiff_t k = 0; k < kk_; k++) {                                  \
            const V w0 = LOADV(wt_ + k * NR), w1 = LOADV(wt_ + k * NR + L);    \
            CONV_FMA_ROW(q0[k], c00, c01);                                     \
            CONV_FMA_ROW(q1[k], c10, c11);                                     \
            CONV_FMA_ROW(q2[k], c20, c21);                                     \
            CONV_FMA_ROW(q3[k], c30, c31);                                     \
            CONV_FMA_ROW(q4[k], c40, c41);                                     \
            CONV_FMA_ROW(q5[k], c50, c51);                                     \
        }                                                                      \
    } while (0)

/* One row R only (the skip path for non-finite weights). */
#define CONV_ONE(R, Q, WT, CA, CB)                                             \
    do {                                                                       \
        const T *q_ = (Q);                                                     \
        for (ptrdiff_t k = 0; k < CI; k++) {                                   \
            const V w0 = LOADV((WT) + k * NR), w1 = LOADV((WT) + k * NR + L);  \
            CONV_FMA_ROW(q_[k], CA, CB);                                       \
        }                                                                      \
    } while (0)

static void TILE(const T *restrict x, const T *restrict wp, const T *restrict zeros,
                 T *restrict out, ptrdiff_t CO, int mr, int nc, ptrdiff_t oy, ptrdiff_t ox,
                 ptrdiff_t OW,
                 ptrdiff_t H, ptrdiff_t W, ptrdiff_t CI, ptrdiff_t KH, ptrdiff_t KW,
                 ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t pt,
                 ptrdiff_t pl, int zeros_exact, int accumulate)
{
    V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    V c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    ptrdiff_t iy0[CONV_MR], ix0[CONV_MR];
    const T *rowp[CONV_MR], *q[CONV_MR];
    int rowok[CONV_MR], ok[CONV_MR];
    ptrdiff_t i, j;
    int r;

    if (accumulate) {
        T tmp[CONV_MR * NR];
        const T *src = tmp;
        ptrdiff_t ld = NR;
        if (mr == CONV_MR && nc == NR) {
            src = out;
            ld = CO;
        } else {
            memset(tmp, 0, sizeof tmp);
            for (r = 0; r < mr; r++)
                memcpy(tmp + r * NR, out + r * CO, (size_t)nc * sizeof(T));
        }
        c00 = LOADV(src);          c01 = LOADV(src + L);
        c10 = LOADV(src + ld);     c11 = LOADV(src + ld + L);
        c20 = LOADV(src + 2 * ld); c21 = LOADV(src + 2 * ld + L);
        c30 = LOADV(src + 3 * ld); c31 = LOADV(src + 3 * ld + L);
        c40 = LOADV(src + 4 * ld); c41 = LOADV(src + 4 * ld + L);
        c50 = LOADV(src + 5 * ld); c51 = LOADV(src + 5 * ld + L);
    }

    if (mr == CONV_MR && ox + CONV_MR <= OW) {
        const ptrdiff_t iy = oy * sh - pt, ix = ox * sw - pl;
        if (iy >= 0 && iy + (KH - 1) * dh < H && ix >= 0 &&
            ix + (CONV_MR - 1) * sw + (KW - 1) * dw < W) {
            /* Interior tile (one output row, every tap inside): pointers set up once and
             * stepped one kernel row at a time. Same summation order as below. */
            const ptrdiff_t rstep = dh * W * CI;
            for (r = 0; r < CONV_MR; r++)
                rowp[r] = x + (iy * W + ix + r * sw) * CI;
            for (i = 0; i < KH; i++) {
                const T *wrow = wp + i * KW * CI * NR;
                if (dw == 1 || KW == 1) {
                    CONV_FULL(rowp, wrow, KW * CI);
                } else {
                    for (j = 0; j < KW; j++) {
                        for (r = 0; r < CONV_MR; r++)
                            q[r] = rowp[r] + j * dw * CI;
                        CONV_FULL(q, wrow + j * CI * NR, CI);
                    }
                }
                for (r = 0; r < CONV_MR; r++)
                    rowp[r] += rstep;
            }
            goto store;
        }
    }

    /* input position of tap (0, 0) for each pixel of the tile (rows >= mr are unused) */
    for (r = 0; r < CONV_MR; r++) {
        iy0[r] = r < mr ? oy * sh - pt : 0;
        ix0[r] = r < mr ? ox * sw - pl : 0;
        if (++ox == OW) {
            ox = 0;
            oy++;
        }
    }

    for (i = 0; i < KH; i++) {
        const T *wrow = wp + i * KW * CI * NR;
        int any = 0, whole = (dw == 1 || KW == 1);
        for (r = 0; r < CONV_MR; r++) {
            const ptrdiff_t iy = iy0[r] + i * dh;
            rowok[r] = r < mr && iy >= 0 && iy < H;
            rowp[r] = rowok[r] ? x + iy * W * CI : zeros;
            any |= rowok[r];
            if (r < mr && !(rowok[r] && ix0[r] >= 0 && ix0[r] + (KW - 1) * dw < W))
                whole = 0;
        }
        if (!any)
            continue;
        if (whole && mr >= CONV_MIN_ROWS) {
            /* every pixel's whole kernel row is inside: KW*CI contiguous inputs each */
            for (r = 0; r < CONV_MR; r++)
                q[r] = r < mr ? rowp[r] + ix0[r] * CI : zeros;
            CONV_FULL(q, wrow, KW * CI);
            continue;
        }
        for (j = 0; j < KW; j++) {
            const T *wt = wrow + j * CI * NR;
            int nok = 0, exact = 1;
            for (r = 0; r < CONV_MR; r++) {
                const ptrdiff_t ix = ix0[r] + j * dw;
                ok[r] = rowok[r] && ix >= 0 && ix < W;
                q[r] = ok[r] ? rowp[r] + ix * CI : zeros;
                nok += ok[r];
                if (!ok[r] && r < mr)
                    exact = zeros_exact;
            }
            if (!nok)
                continue;
            if (exact && nok >= CONV_MIN_ROWS) {
                CONV_FULL(q, wt, CI);
                continue;
            }
            /* few rows in range (or non-finite weights): only those rows, one at a time */
            if (ok[0]) CONV_ONE(0, q[0], wt, c00, c01);
            if (ok[1]) CONV_ONE(1, q[1], wt, c10, c11);
            if (ok[2]) CONV_ONE(2, q[2], wt, c20, c21);
            if (ok[3]) CONV_ONE(3, q[3], wt, c30, c31);
            if (ok[4]) CONV_ONE(4, q[4], wt, c40, c41);
            if (ok[5]) CONV_ONE(5, q[5], wt, c50, c51);
        }
    }

store:
    if (mr == CONV_MR && nc == NR) {
        STOREV(out, c00); STOREV(out + L, c01); out += CO;
        STOREV(out, c10); STOREV(out + L, c11); out += CO;
        STOREV(out, c20); STOREV(out + L, c21); out += CO;
        STOREV(out, c30); STOREV(out + L, c31); out += CO;
        STOREV(out, c40); STOREV(out + L, c41); out += CO;
        STOREV(out, c50); STOREV(out + L, c51);
    } else {
        T tmp[CONV_MR * NR];
        STOREV(tmp + 0 * NR, c00); STOREV(tmp + 0 * NR + L, c01);
        STOREV(tmp + 1 * NR, c10); STOREV(tmp + 1 * NR + L, c11);
        STOREV(tmp + 2 * NR, c20); STOREV(tmp + 2 * NR + L, c21);
        STOREV(tmp + 3 * NR, c30); STOREV(tmp + 3 * NR + L, c31);
        STOREV(tmp + 4 * NR, c40); STOREV(tmp + 4 * NR + L, c41);
        STOREV(tmp + 5 * NR, c50); STOREV(tmp + 5 * NR + L, c51);
        for (r = 0; r < mr; r++)
            memcpy(out + r * CO, tmp + r * NR, (size_t)nc * sizeof(T));
    }
}

#undef CONV_FULL
#undef CONV_ONE
#undef CONV_FMA_ROW
#undef NR
