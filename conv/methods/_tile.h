/* One output tile of the convolution: MR consecutive output pixels of image n (in
 * the flattened (oy, ox) order, so a tile may cross the end of an output row) times
 * NR output channels, summed over kernel taps and input channels. A template: included
 * by _ukernel.h once per element type with T (element), V (a vector of T), L (lanes of
 * V), NV (vectors a row), NR (NV * L), LOADV/STOREV, TILE (the kernel's name) and PWTILE
 * (its 1x1 form's, at the end) defined. The MR x NV
 * accumulators c<r>_<v> are unrolled with CONV_ROWS / CONV_VECS (_ukernel.h).
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
CONV_STATIC_ASSERT(NR == NV * L, "a tile row is NV vectors");

/* Below this many rows in range, running just those rows beats the MR-row path fed
 * with zeros. Either way each sum is the same (skipping a tap adds nothing). */
#ifndef CONV_MIN_ROWS
#define CONV_MIN_ROWS 4
#endif

/* A border tile's kernel row of at most this many elements (KW*CI: few input channels)
 * is gathered, padded taps as zeros, and summed in one pass over KW*CI, not tap by tap:
 * with C_in = 3 a tap is 3 multiply-adds, too few to pay for a pass of their own. */
#ifndef CONV_GATHER_MAX
#define CONV_GATHER_MAX 128
#endif

/* Pieces of the unrolled code for row r and vector v: accumulator c<r>_<v>, weights w<v>
 * (of input k), row r's inputs q<r>_. CONV_ROW_STORE steps out by CO a row. */
#define CONV_ACC_ZERO(r, v) V c##r##_##v = {0};
#define CONV_ACC_LOAD(r, v) c##r##_##v = LOADV(src + r * ld + v * L);
#define CONV_ACC_STORE(r, v) STOREV(out + v * L, c##r##_##v);
#define CONV_ACC_STORE_TMP(r, v) STOREV(tmp + r * NR + v * L, c##r##_##v);
#define CONV_W_LOAD(_, v) const V w##v = LOADV(wt_ + k * ldw_ + v * L);
#define CONV_FMA(r, v) c##r##_##v += w##v * a_;
#define CONV_ROW_PTR(r) const T *const q##r##_ = qs_[r];
#define CONV_ROW_FMA(r) { const T a_ = q##r##_[k]; CONV_VECS(CONV_FMA, r) }
#define CONV_ROW_ZERO(r) CONV_VECS(CONV_ACC_ZERO, r)
#define CONV_ROW_LOAD(r) CONV_VECS(CONV_ACC_LOAD, r)
#define CONV_ROW_STORE(r) CONV_VECS(CONV_ACC_STORE, r) out += CO;
#define CONV_ROW_STORE_TMP(r) CONV_VECS(CONV_ACC_STORE_TMP, r)

/* All MR rows, K consecutive (input, weight row) pairs from row pointers Q[0..MR-1];
 * weight rows LDW elements apart (NR: packed). */
#define CONV_FULL(Q, WT, K) CONV_FULL_LD(Q, WT, K, NR)
#define CONV_FULL_LD(Q, WT, K, LDW)                                            \
    do {                                                                       \
        const T *const *qs_ = (Q);                                             \
        CONV_ROWS(CONV_ROW_PTR)                                                \
        const T *const wt_ = (WT);                                             \
        const ptrdiff_t kk_ = (K), ldw_ = (LDW);                               \
        for (ptrdiff_t k = 0; k < kk_; k++) {                                  \
            CONV_VECS(CONV_W_LOAD, _)                                          \
            CONV_ROWS(CONV_ROW_FMA)                                            \
        }                                                                      \
    } while (0)

/* The interior path's KH runs of KW*CI inputs, the tile's pixels' runs XC elements apart
 * (XC = sw * CI, a literal): one pointer and constant offsets in place of MR row
 * pointers, whose loads and steps weigh on a loop of a few inputs (C_in 1-4). The same
 * sums in the same order as CONV_FULL over the runs. */
#define CONV_ROW_FMA_APART(r) { const T a_ = b_[r * xc_ + k]; CONV_VECS(CONV_FMA, r) }
#define CONV_RUNS_APART(XC)                                                    \
    do {                                                                       \
        const ptrdiff_t xc_ = (XC), kk_ = KW * CI, ldw_ = NR;                  \
        for (i = 0; i < KH; i++) {                                             \
            const T *const b_ = x0 + i * rstep;                                \
            const T *const wt_ = wp + i * kk_ * NR;                            \
            for (ptrdiff_t k = 0; k < kk_; k++) {                              \
                CONV_VECS(CONV_W_LOAD, _)                                      \
                CONV_ROWS(CONV_ROW_FMA_APART)                                  \
            }                                                                  \
        }                                                                      \
    } while (0)

/* Store the accumulators: the mr x nc tile at out (CO elements between pixels), whole
 * tiles straight from the registers, partial ones through a buffer. */
#define CONV_TILE_STORE()                                                      \
    do {                                                                       \
        if (mr == CONV_MR && nc == NR) {                                       \
            CONV_ROWS(CONV_ROW_STORE)                                          \
        } else {                                                               \
            T tmp_[CONV_MR * NR];                                              \
            T *const tmp = tmp_;                                               \
            CONV_ROWS(CONV_ROW_STORE_TMP)                                      \
            for (int r_ = 0; r_ < mr; r_++)                                    \
                memcpy(out + r_ * CO, tmp + r_ * NR, (size_t)nc * sizeof(T));  \
        }                                                                      \
    } while (0)

/* Row r alone, CI pairs from q[r] and wt, if ok[r] (the skip path). */
#define CONV_ONE(r)                                                            \
    if (ok[r]) {                                                               \
        const T *const q##r##_ = q[r], *const wt_ = wt;                        \
        const ptrdiff_t ldw_ = NR;                                             \
        for (ptrdiff_t k = 0; k < CI; k++) {                                   \
            CONV_VECS(CONV_W_LOAD, _)                                          \
            CONV_ROW_FMA(r)                                                    \
        }                                                                      \
    }

static CONV_UKERNEL_SIGNATURE(TILE, T, restrict)
{
    CONV_ROWS(CONV_ROW_ZERO)
    ptrdiff_t iy0[CONV_MR], ix0[CONV_MR];
    const T *rowp[CONV_MR], *q[CONV_MR];
    int rowok[CONV_MR], ok[CONV_MR];
    ptrdiff_t i, j;
    int r;

    CONV_UKERNEL_CHECK_ARGS(NR);
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
        CONV_ROWS(CONV_ROW_LOAD)
    }

    if (mr == CONV_MR && ox + CONV_MR <= OW) {
        const ptrdiff_t iy = oy * sh - pt, ix = ox * sw - pl;
        if (iy >= 0 && iy + (KH - 1) * dh < H && ix >= 0 &&
            ix + (CONV_MR - 1) * sw + (KW - 1) * dw < W) {
            /* Interior tile (one output row, every tap inside): pointers set up once and
             * stepped one kernel row at a time. Same summation order as below. */
            const ptrdiff_t rstep = dh * W * CI;
            const T *const x0 = x + (iy * W + ix) * CI;
            if (dw == 1 || KW == 1) {
                switch (sw * CI) { /* few channels: one pointer, see CONV_RUNS_APART */
                case 1: CONV_RUNS_APART(1); goto store;
                case 2: CONV_RUNS_APART(2); goto store;
                case 3: CONV_RUNS_APART(3); goto store;
                case 4: CONV_RUNS_APART(4); goto store;
                case 6: CONV_RUNS_APART(6); goto store;
                case 8: CONV_RUNS_APART(8); goto store;
                default: break;
                }
            }
            for (r = 0; r < CONV_MR; r++)
                rowp[r] = x0 + r * sw * CI;
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

    /* Few channels and finite weights: gather (see CONV_GATHER_MAX). Padded taps are read
     * as zeros, the same sums as skipping them (see zeros_exact). Taps jlo[r]..jhi[r]-1
     * of pixel r are in x's columns (dw == 1: one run); the others' zeros are set once. */
    const int gather = zeros_exact && mr >= CONV_MIN_ROWS && KW * CI <= CONV_GATHER_MAX;
    ptrdiff_t jlo[CONV_MR], jhi[CONV_MR];
    T g[CONV_MR * CONV_GATHER_MAX];
    if (gather) {
        for (r = 0; r < mr; r++) {
            jlo[r] = 0;
            while (jlo[r] < KW && ix0[r] + jlo[r] * dw < 0)
                jlo[r]++;
            jhi[r] = KW;
            while (jhi[r] > jlo[r] && ix0[r] + (jhi[r] - 1) * dw >= W)
                jhi[r]--;
            if (jlo[r] > 0 || jhi[r] < KW || dw != 1)
                memset(g + r * KW * CI, 0, (size_t)(KW * CI) * sizeof(T));
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
        if (gather) {
            /* few channels: each pixel's kernel row as one run of KW*CI inputs, those not
             * whole in x copied beside the zeros set above, then one pass */
            for (r = 0; r < CONV_MR; r++) {
                T *const gr = g + r * KW * CI;
                if (r >= mr || !rowok[r]) {
                    q[r] = zeros;
                } else if (jlo[r] == 0 && jhi[r] == KW && dw == 1) {
                    q[r] = rowp[r] + ix0[r] * CI;
                } else {
                    if (dw == 1) { /* the taps in x are one run */
                        if (jhi[r] > jlo[r])
                            memcpy(gr + jlo[r] * CI, rowp[r] + (ix0[r] + jlo[r]) * CI,
                                   (size_t)((jhi[r] - jlo[r]) * CI) * sizeof(T));
                    } else {
                        for (j = 0; j < KW; j++) {
                            const ptrdiff_t ix = ix0[r] + j * dw;
                            if (ix >= 0 && ix < W)
                                memcpy(gr + j * CI, rowp[r] + ix * CI,
                                       (size_t)CI * sizeof(T));
                        }
                    }
                    q[r] = gr;
                }
            }
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
            CONV_ROWS(CONV_ONE)
        }
    }

store:
    CONV_TILE_STORE();
}

/* One tile of a 1x1 convolution without padding, a matrix product: output pixels whose
 * inputs are the rows q[0..MR-1] (rows >= mr point at zeros and are not stored), K input
 * channels each, times the weights wt (K rows of NR, ldw elements apart: NR when
 * packed). No geometry and no borders: the driver finds the rows (any stride). Each sum
 * starts at zero and runs over c_in in order, the CONV_FULL of TILE's interior path, so
 * the result is TILE's bit for bit. */
static void PWTILE(const T *const *restrict q, const T *restrict wt, ptrdiff_t K,
                   ptrdiff_t ldw, T *restrict out, ptrdiff_t CO, int mr, int nc)
{
    CONV_ROWS(CONV_ROW_ZERO)
    if (ldw == NR)
        CONV_FULL(q, wt, K);
    else
        CONV_FULL_LD(q, wt, K, ldw);
    CONV_TILE_STORE();
}

#undef CONV_ACC_ZERO
#undef CONV_ACC_LOAD
#undef CONV_ACC_STORE
#undef CONV_ACC_STORE_TMP
#undef CONV_W_LOAD
#undef CONV_FMA
#undef CONV_ROW_PTR
#undef CONV_ROW_FMA
#undef CONV_ROW_ZERO
#undef CONV_ROW_LOAD
#undef CONV_ROW_STORE
#undef CONV_ROW_STORE_TMP
#undef CONV_FULL
#undef CONV_FULL_LD
#undef CONV_ROW_FMA_APART
#undef CONV_RUNS_APART
#undef CONV_ONE
#undef CONV_TILE_STORE
/* the per-tile parameters are consumed; T, V, L, LOADV, STOREV stay for the next width */
#undef NV
#undef NR
#undef TILE
#undef PWTILE
