/* One output tile of the direct convolution: MR consecutive output pixels of one
 * output row times NR output channels, summed over every kernel tap and input
 * channel. Included by _ukernel.h once per element type with T (element), V (a
 * 32-byte vector of T), L (lanes of V) and TILE (function name) defined.
 *
 * x     input image n, (H, W, CI) contiguous
 * wp    packed weights of this channel tile: (KH, KW, CI, NR), zero-filled past C_out
 * out   first output element of the tile; ldo = C_out (elements between pixels)
 * mr    output pixels in this tile (<= MR); nc: output channels to store (<= NR)
 * iy0   input row of tap i = 0 (oy*sh - pad_top); ix0: input column of the tile's first
 *       pixel at tap j = 0 (ox0*sw - pad_left)
 * accumulate  0: the tile is overwritten; 1: the sums continue from the values in out
 *       (the tap-by-tap "matmul" order, which then equals the direct order bit for bit)
 * Taps that land in the padding are skipped, never multiplied. Each output element
 * is accumulated in the order (i, j, c_in) whatever the path or thread count.
 */
#define NR (2 * L)

static void TILE(const T *restrict x, const T *restrict wp, T *restrict out, ptrdiff_t ldo,
                 int mr, int nc, ptrdiff_t H, ptrdiff_t W, ptrdiff_t CI, ptrdiff_t KH,
                 ptrdiff_t KW, ptrdiff_t iy0, ptrdiff_t ix0, ptrdiff_t sw, ptrdiff_t dh,
                 ptrdiff_t dw, int accumulate)
{
    V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    V c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    const ptrdiff_t xs = sw * CI; /* elements between the tile's pixels in x */
    ptrdiff_t i, j, k;
    int r;

    if (accumulate) {
        T tmp[CONV_MR * NR];
        const T *src = tmp;
        ptrdiff_t ld = NR;
        if (mr == CONV_MR && nc == NR) {
            src = out;
            ld = ldo;
        } else {
            memset(tmp, 0, sizeof tmp);
            for (r = 0; r < mr; r++)
                memcpy(tmp + r * NR, out + r * ldo, (size_t)nc * sizeof(T));
        }
        c00 = LOADV(src);          c01 = LOADV(src + L);
        c10 = LOADV(src + ld);     c11 = LOADV(src + ld + L);
        c20 = LOADV(src + 2 * ld); c21 = LOADV(src + 2 * ld + L);
        c30 = LOADV(src + 3 * ld); c31 = LOADV(src + 3 * ld + L);
        c40 = LOADV(src + 4 * ld); c41 = LOADV(src + 4 * ld + L);
        c50 = LOADV(src + 5 * ld); c51 = LOADV(src + 5 * ld + L);
    }

/* Every row of the tile, K consecutive (input value, weight row) pairs. */
#define CONV_FULL(XP, WT, K)                                                   \
    do {                                                                       \
        const T *xp_ = (XP), *wt_ = (WT);                                      \
        for (k = 0; k < (K); k++) {                                            \
            V w0 = LOADV(wt_ + k * NR), w1 = LOADV(wt_ + k * NR + L);          \
            T a;                                                               \
            a = xp_[k];          c00 += w0 * a; c01 += w1 * a;                 \
            a = xp_[xs + k];     c10 += w0 * a; c11 += w1 * a;                 \
            a = xp_[2 * xs + k]; c20 += w0 * a; c21 += w1 * a;                 \
            a = xp_[3 * xs + k]; c30 += w0 * a; c31 += w1 * a;                 \
            a = xp_[4 * xs + k]; c40 += w0 * a; c41 += w1 * a;                 \
            a = xp_[5 * xs + k]; c50 += w0 * a; c51 += w1 * a;                 \
        }                                                                      \
    } while (0)
/* One row R of the tile, one tap. */
#define CONV_ROW(R, CA, CB)                                                    \
    for (k = 0; k < CI; k++) {                                                 \
        T a = xp[(R) * xs + k];                                                \
        CA += LOADV(wt + k * NR) * a;                                          \
        CB += LOADV(wt + k * NR + L) * a;                                      \
    }

    for (i = 0; i < KH; i++) {
        const ptrdiff_t iy = iy0 + i * dh;
        if (iy < 0 || iy >= H)
            continue;
        const T *xrow = x + iy * W * CI;
        const T *wrow = wp + i * KW * CI * NR;
        if (dw == 1 && mr == CONV_MR && ix0 >= 0 && ix0 + (CONV_MR - 1) * sw + KW - 1 < W) {
            /* the whole kernel row is inside: its KW*CI inputs are contiguous */
            CONV_FULL(xrow + ix0 * CI, wrow, KW * CI);
            continue;
        }
        for (j = 0; j < KW; j++) {
            const ptrdiff_t ix = ix0 + j * dw;
            const T *xp = xrow + ix * CI;
            const T *wt = wrow + j * CI * NR;
            /* rows r with 0 <= ix + r*sw < W, r < mr */
            const ptrdiff_t lo_ = ix >= 0 ? 0 : (-ix + sw - 1) / sw;
            const ptrdiff_t hi_ = ix <= W - 1 ? (W - 1 - ix) / sw + 1 : 0;
            const int lo = lo_ < mr ? (int)lo_ : mr;
            const int hi = hi_ < mr ? (int)hi_ : mr;
            if (lo == 0 && hi == CONV_MR) {
                CONV_FULL(xp, wt, CI);
                continue;
            }
            for (r = lo; r < hi; r++) {
                switch (r) {
                case 0: CONV_ROW(0, c00, c01) break;
                case 1: CONV_ROW(1, c10, c11) break;
                case 2: CONV_ROW(2, c20, c21) break;
                case 3: CONV_ROW(3, c30, c31) break;
                case 4: CONV_ROW(4, c40, c41) break;
                default: CONV_ROW(5, c50, c51) break;
                }
            }
        }
    }
#undef CONV_FULL
#undef CONV_ROW

    if (mr == CONV_MR && nc == NR) {
        STOREV(out, c00); STOREV(out + L, c01); out += ldo;
        STOREV(out, c10); STOREV(out + L, c11); out += ldo;
        STOREV(out, c20); STOREV(out + L, c21); out += ldo;
        STOREV(out, c30); STOREV(out + L, c31); out += ldo;
        STOREV(out, c40); STOREV(out + L, c41); out += ldo;
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
            memcpy(out + r * ldo, tmp + r * NR, (size_t)nc * sizeof(T));
    }
}

#undef NR
