/* One Winograd F(WM x WM, 3 x 3) convolution, for one element type: a template included
 * by _winograd.h once per (element type, WM) with these defined:
 *
 *   T, V, L          element, vector of L elements (V == T, L == 1 without vector code)
 *   LOADV, STOREV    unaligned vector load and store
 *   PUTLANES         WM vectors stored lane-major (_transpose.h), for NCHW output
 *   TILE, NR         the micro-kernel (_ukernel.h) and its width; the element-wise
 *                    products run on it as T batched matrix products
 *   WM               output tile edge: 2 or 4 (input tiles WA = WM + 2 wide)
 *   WNAME(s)         this instantiation's function names
 *
 * A task is a block of up to p->bt output tiles (flattened over images, tile rows and
 * tile columns) times a group of up to p->gcot channel tiles. It
 *   1. transforms the block's input tiles, V = B^T d B, into vb[xi][tile][c_in];
 *   2. multiplies, for each of the WA*WA transform positions xi, the block's
 *      (tiles x C_in) matrix by the transformed weights (C_in x NR per channel tile),
 *      on the micro-kernel, into mb[xi][tile][c_out];
 *   3. transforms each tile's products back, Y = A^T M A, into the output.
 * Every output element is computed by one task in one order whatever the thread count,
 * the block size or the channel grouping: results do not depend on them.
 */
#define WA (WM + 2)
#define WT (WA * WA)

/* The transforms along one axis, from WA (input, products) or 3 (weights) values. */
#if WM == 2
#define WIN_IN(o, d)                                                          \
    (o)[0] = (d)[0] - (d)[2]; (o)[1] = (d)[1] + (d)[2];                       \
    (o)[2] = (d)[2] - (d)[1]; (o)[3] = (d)[1] - (d)[3];
#define WIN_OUT(y, s)                                                         \
    (y)[0] = (s)[0] + (s)[1] + (s)[2]; (y)[1] = (s)[1] - (s)[2] - (s)[3];
#define WIN_G(o, k, g0, g1, g2)                                               \
    { const double e_ = (g0) + (g2);                                          \
      (o)[0][k] = (g0); (o)[1][k] = 0.5 * (e_ + (g1));                        \
      (o)[2][k] = 0.5 * (e_ - (g1)); (o)[3][k] = (g2); }
#else
#define WIN_IN(o, d)                                                          \
    (o)[0] = ((T)4 * (d)[0] - (T)5 * (d)[2]) + (d)[4];                        \
    (o)[1] = ((d)[3] + (d)[4]) - (T)4 * ((d)[1] + (d)[2]);                    \
    (o)[2] = ((d)[4] - (d)[3]) + (T)4 * ((d)[1] - (d)[2]);                    \
    (o)[3] = ((d)[4] - (d)[2]) + (T)2 * ((d)[3] - (d)[1]);                    \
    (o)[4] = ((d)[4] - (d)[2]) - (T)2 * ((d)[3] - (d)[1]);                    \
    (o)[5] = ((T)4 * (d)[1] - (T)5 * (d)[3]) + (d)[5];
#define WIN_OUT(y, s)                                                         \
    (y)[0] = (s)[0] + ((s)[1] + (s)[2]) + ((s)[3] + (s)[4]);                  \
    (y)[1] = ((s)[1] - (s)[2]) + (T)2 * ((s)[3] - (s)[4]);                    \
    (y)[2] = ((s)[1] + (s)[2]) + (T)4 * ((s)[3] + (s)[4]);                    \
    (y)[3] = (((s)[1] - (s)[2]) + (T)8 * ((s)[3] - (s)[4])) + (s)[5];
#define WIN_G(o, k, g0, g1, g2) /* multiplications by the rounded 1/6, 1/12, 1/24 */ \
    { const double e_ = (g0) + (g2), f_ = (g0) * (1.0 / 24) + (g2) * (1.0 / 6);        \
      (o)[0][k] = (g0) * 0.25; (o)[1][k] = (e_ + (g1)) * (-1.0 / 6);                   \
      (o)[2][k] = (e_ - (g1)) * (-1.0 / 6); (o)[3][k] = f_ + (g1) * (1.0 / 12);        \
      (o)[4][k] = f_ - (g1) * (1.0 / 12); (o)[5][k] = (g2); }
#endif

/* B^T d B for one lane group: d[a][b] loaded from row pointers, stored to dst[xi * ld]
 * (xi = a * WA + b); chk accumulates v - v (zero unless a value is Inf or NaN). */
#define WIN_INPUT_TILE(VT, LOAD, STORE)                                       \
    {                                                                         \
        VT d_[WA][WA], t_[WA][WA], col_[WA], o_[WA];                          \
        int a_, b_;                                                           \
        for (a_ = 0; a_ < WA; a_++)                                           \
            for (b_ = 0; b_ < WA; b_++) d_[a_][b_] = LOAD(src[a_][b_] + c);   \
        for (b_ = 0; b_ < WA; b_++) {                                         \
            for (a_ = 0; a_ < WA; a_++) col_[a_] = d_[a_][b_];                \
            WIN_IN(o_, col_)                                                  \
            for (a_ = 0; a_ < WA; a_++) t_[a_][b_] = o_[a_];                  \
        }                                                                     \
        for (a_ = 0; a_ < WA; a_++) {                                         \
            WIN_IN(o_, t_[a_])                                                \
            for (b_ = 0; b_ < WA; b_++) {                                     \
                chk += o_[b_] - o_[b_];                                       \
                STORE(dst + (a_ * WA + b_) * ld + c, o_[b_]);                 \
            }                                                                 \
        }                                                                     \
    }

/* A^T M A for one lane group: M[xi] loaded from src + xi * ld, the WM x WM results
 * left in y_. */
#define WIN_OUTPUT_TILE(VT, LOAD)                                             \
    VT m_[WA][WA], s_[WM][WA], col_[WA], o_[WM];                              \
    {                                                                         \
        int a_, b_;                                                           \
        for (a_ = 0; a_ < WA; a_++)                                           \
            for (b_ = 0; b_ < WA; b_++) m_[a_][b_] = LOAD(src + (a_ * WA + b_) * ld + c); \
        for (b_ = 0; b_ < WA; b_++) {                                         \
            for (a_ = 0; a_ < WA; a_++) col_[a_] = m_[a_][b_];                \
            WIN_OUT(o_, col_)                                                 \
            for (a_ = 0; a_ < WM; a_++) s_[a_][b_] = o_[a_];                  \
        }                                                                     \
        for (a_ = 0; a_ < WM; a_++) {                                         \
            WIN_OUT(y_[a_], s_[a_])                                           \
            for (b_ = 0; b_ < WM; b_++) chk += y_[a_][b_] - y_[a_][b_];       \
        }                                                                     \
    }

#define WIN_SCALAR_LOAD(p) (*(p))
#define WIN_SCALAR_STORE(p, v) (*(p) = (v))

/* The sum of a vector's lanes (of the check sums: zero, or not finite). */
static T WNAME(lanes_sum)(V v) {
    T lanes[L], sum = 0;
    int k;
    memcpy(lanes, &v, sizeof lanes);
    for (k = 0; k < L; k++) sum += lanes[k];
    return sum;
}

/* Step 2 for one transform position and one channel tile: the (nt x CI) transformed
 * inputs v (rows CI apart) times the (CI x NR) transformed weights u, into the nt rows of
 * m (ldm apart), CONV_MR tiles a micro-kernel call. */
static void WNAME(product)(const T *v, const T *u, const T *zeros, T *m, ptrdiff_t ldm,
                           ptrdiff_t nt, ptrdiff_t CI) {
    ptrdiff_t q0;
    for (q0 = 0; q0 < nt; q0 += CONV_MR) {
        const int mr = (int)(nt - q0 < CONV_MR ? nt - q0 : CONV_MR);
        TILE(v, u, zeros, m + q0 * ldm, ldm, mr, NR, 0, q0, nt, 1, nt, CI, 1, 1, 1, 1, 1, 1, 0,
             0, 1, 0);
    }
}

/* Where tile `tile` lies: its image and the input position of its top-left tap. */
static void WNAME(locate)(const conv_wino_problem *p, ptrdiff_t tile, ptrdiff_t *n,
                          ptrdiff_t *oy, ptrdiff_t *ox) {
    const ptrdiff_t th = (p->OH + WM - 1) / WM, tw = (p->OW + WM - 1) / WM;
    ptrdiff_t r;
    *n = tile / (th * tw);
    r = tile - *n * th * tw;
    *oy = (r / tw) * WM;
    *ox = (r - (r / tw) * tw) * WM;
}

/* Step 1 for tiles [t0, t0 + nt): vb[(xi * bt + q) * CI + c]. Returns the check sum. */
static T WNAME(input)(const conv_wino_problem *p, ptrdiff_t t0, ptrdiff_t nt, T *vb) {
    const T *x = (const T *)p->x, *zeros = (const T *)p->zeros;
    const ptrdiff_t CI = p->CI, H = p->H, W = p->W, ld = p->bt * CI;
    V chkv = {0};
    T chk = 0;
    ptrdiff_t q;
    for (q = 0; q < nt; q++) {
        const T *src[WA][WA];
        T *dst = vb + q * CI;
        ptrdiff_t n, oy, ox, c = 0;
        int a, b;
        WNAME(locate)(p, t0 + q, &n, &oy, &ox);
        for (a = 0; a < WA; a++) {
            const ptrdiff_t iy = oy - p->pt + a;
            for (b = 0; b < WA; b++) {
                const ptrdiff_t ix = ox - p->pl + b;
                src[a][b] = (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                ? x + ((n * H + iy) * W + ix) * CI : zeros;
            }
        }
        {
            V chk_ = chkv;
#define chk chk_
            for (; c + L <= CI; c += L) WIN_INPUT_TILE(V, LOADV, STOREV)
#undef chk
            chkv = chk_;
        }
        for (; c < CI; c++) WIN_INPUT_TILE(T, WIN_SCALAR_LOAD, WIN_SCALAR_STORE)
    }
    return chk + WNAME(lanes_sum)(chkv);
}

/* Step 3 for tiles [t0, t0 + nt) and channels [c0, c0 + nco) of the output, from
 * mb[(xi * bt + q) * nco + c]. Returns the check sum. NHWC: tile by tile, each pixel's
 * channels stored as vectors. NCHW (p->out_nchw): lane group by lane group, so that the
 * WM rows of L channel planes one group writes are completed by consecutive tiles while
 * in cache; each lane (a channel) stored as runs of WM pixels, whole rows of whole lane
 * groups transposed in registers (PUTLANES). The same values. */
static T WNAME(output)(const conv_wino_problem *p, ptrdiff_t t0, ptrdiff_t nt,
                       const T *mb, ptrdiff_t c0, ptrdiff_t nco) {
    T *out = (T *)p->out;
    const ptrdiff_t CO = p->CO, OH = p->OH, OW = p->OW, ld = p->bt * nco;
    const ptrdiff_t keep = CO - c0 < nco ? CO - c0 : nco; /* real channels */
    const int nchw = p->out_nchw;
    V chkv = {0};
    T chk = 0;
    ptrdiff_t q, c, n, oy, ox;
    int u, v, rows, cols;
    /* tile q's lane group c into y_ (V y_[WM][WM]), its check into chkv */
#define WIN_OUTPUT_AT(q, c)                                                   \
    const T *src = mb + (q) * nco;                                            \
    WNAME(locate)(p, t0 + (q), &n, &oy, &ox);                                 \
    rows = (int)(OH - oy < WM ? OH - oy : WM);                                \
    cols = (int)(OW - ox < WM ? OW - ox : WM);                                \
    {                                                                         \
        V chk_ = chkv;                                                        \
        WIN_OUTPUT_TILE(V, LOADV)                                             \
        chkv = chk_;                                                          \
    }
#define chk chk_
    if (nchw) {
        for (c = 0; c < keep; c += L) { /* nco is a whole number of vectors */
            const ptrdiff_t lanes = keep - c < L ? keep - c : L;
            for (q = 0; q < nt; q++) {
                V y_[WM][WM];
                T *oc;
                ptrdiff_t l;
                WIN_OUTPUT_AT(q, c)
                oc = out + ((n * CO + c0 + c) * OH + oy) * OW + ox;
                for (u = 0; u < rows; u++) {
                    T yl[WM][L];
                    if (lanes == L && cols == WM) { /* a whole row: transposed */
                        PUTLANES(y_[u], WM, oc + u * OW, OH * OW);
                        continue;
                    }
                    memcpy(yl, y_[u], sizeof yl);
                    for (l = 0; l < lanes; l++)
                        for (v = 0; v < cols; v++)
                            oc[(l * OH + u) * OW + v] = yl[v][l];
                }
            }
        }
    } else {
        for (q = 0; q < nt; q++) {
            for (c = 0; c < keep; c += L) {
                V y_[WM][WM];
                WIN_OUTPUT_AT(q, c)
                for (u = 0; u < rows; u++) {
                    T *o = out + ((n * OH + oy + u) * OW + ox) * CO + c0 + c;
                    for (v = 0; v < cols; v++, o += CO) {
                        if (c + L <= keep) {
                            STOREV(o, y_[u][v]);
                        } else {
                            T lanes[L];
                            memcpy(lanes, &y_[u][v], sizeof lanes);
                            memcpy(o, lanes, (size_t)(keep - c) * sizeof(T));
                        }
                    }
                }
            }
        }
    }
#undef chk
#undef WIN_OUTPUT_AT
    return chk + WNAME(lanes_sum)(chkv);
}

static void WNAME(tasks)(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {
    conv_wino_problem *p = (conv_wino_problem *)ctx;
    const T *u = (const T *)p->u, *zeros = (const T *)p->zeros;
    const ptrdiff_t CI = p->CI, bt = p->bt, gcot = p->gcot, ncot = p->ncot;
    const ptrdiff_t ncog = (ncot + gcot - 1) / gcot;
    const size_t nv = (size_t)(WT * bt * CI), nm = (size_t)(WT * bt * gcot * NR);
    T *vb = (T *)conv_scratch((nv + nm) * sizeof(T)), *mb = vb + nv;
    T chk = 0;
    ptrdiff_t task;
    if (vb == NULL) {
        CONV_STORE_RELAXED(&p->failed, 1);
        begin = end;
    }
    for (task = begin; task < end; task++) {
        const ptrdiff_t blk = task / ncog, cot0 = (task - blk * ncog) * gcot;
        ptrdiff_t t0, nt;
        const ptrdiff_t ncg = ncot - cot0 < gcot ? ncot - cot0 : gcot, nco = ncg * NR;
        ptrdiff_t xi, cot;
        if (conv_interrupted(p->intr, task)) break; /* Ctrl-C: every thread stops */
        conv_wino_block(p, blk, &t0, &nt);
        chk += WNAME(input)(p, t0, nt, vb);
        for (xi = 0; xi < WT; xi++)
            for (cot = cot0; cot < cot0 + ncg; cot++)
                WNAME(product)(vb + xi * bt * CI, u + (xi * ncot + cot) * CI * NR, zeros,
                               mb + xi * bt * nco + (cot - cot0) * NR, nco, nt, CI);
        chk += WNAME(output)(p, t0, nt, mb, cot0 * NR, nco);
    }
    if (chk != 0) /* an Inf or NaN went in or came out: the caller falls back */
        CONV_STORE_RELAXED(&p->nonfinite, 1);
}

/* The weights' transform, U = G g G^T, for channel tile `cot` and input channels
 * [ci0, ci1): u[(xi * xstride + ci) * NR + lane] (zero past C_out), computed in double
 * (the innermost loops run over the tile's NR lanes). Returns nonzero if a weight is Inf
 * or NaN. */
static int WNAME(weights_run)(const T *w, ptrdiff_t CI, ptrdiff_t CO, ptrdiff_t cot,
                              ptrdiff_t ci0, ptrdiff_t ci1, T *u, ptrdiff_t xstride) {
    int bad = 0;
    ptrdiff_t ci;
    for (ci = ci0; ci < ci1; ci++) {
        double g[3][3][NR], t[WA][3][NR], r[WA][NR];
        int a, b, k;
        for (a = 0; a < 3; a++)
            for (b = 0; b < 3; b++) {
                const T *src = w + ((a * 3 + b) * CI + ci) * CO + cot * NR;
                const int n = (int)(CO - cot * NR < NR ? CO - cot * NR : NR);
                if (n == NR) /* a whole tile: a loop the compiler vectorizes */
                    for (k = 0; k < NR; k++) {
                        bad |= src[k] - src[k] != 0; /* Inf or NaN */
                        g[a][b][k] = (double)src[k];
                    }
                else
                    for (k = 0; k < NR; k++) {
                        bad |= k < n && src[k] - src[k] != 0;
                        g[a][b][k] = k < n ? (double)src[k] : 0.0;
                    }
            }
        for (b = 0; b < 3; b++)
            for (k = 0; k < NR; k++) {
                WIN_G(r, k, g[0][b][k], g[1][b][k], g[2][b][k])
                for (a = 0; a < WA; a++) t[a][b][k] = r[a][k];
            }
        for (a = 0; a < WA; a++) {
            for (k = 0; k < NR; k++) {
                WIN_G(r, k, t[a][0][k], t[a][1][k], t[a][2][k])
            }
            for (b = 0; b < WA; b++) {
                T *dst = u + ((ptrdiff_t)(a * WA + b) * xstride + ci) * NR;
                for (k = 0; k < NR; k++) dst[k] = (T)r[b][k];
            }
        }
    }
    return bad;
}

/* The whole weights' transform into u[(xi * ncot + cot) * CI + ci][lane]: a task is one
 * channel tile and a run of CONV_WINO_CI_RUN input channels, so that for each xi it
 * writes one contiguous run. */
static void WNAME(weight_tasks)(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {
    const conv_wino_weights *p = (const conv_wino_weights *)ctx;
    const ptrdiff_t CI = p->CI, runs = (CI + CONV_WINO_CI_RUN - 1) / CONV_WINO_CI_RUN;
    ptrdiff_t task;
    int bad = 0;
    for (task = begin; task < end; task++) {
        const ptrdiff_t cot = task / runs, ci0 = (task - cot * runs) * CONV_WINO_CI_RUN;
        const ptrdiff_t ci1 = ci0 + CONV_WINO_CI_RUN < CI ? ci0 + CONV_WINO_CI_RUN : CI;
        bad |= WNAME(weights_run)((const T *)p->w, CI, p->CO, cot, ci0, ci1,
                                  (T *)p->u + cot * CI * NR, p->ncot * CI);
    }
    if (bad) /* an Inf or NaN weight */
        CONV_STORE_RELAXED(&((conv_wino_weights *)p)->nonfinite, 1);
}

/* Weights-stationary order, for few tiles (batch 1, small images): the input transform
 * of every tile first (input_tasks, into p->vall, laid out as a block of all the tiles),
 * then a task per channel tile (ws_tasks) transforms that tile's weights into its own
 * scratch, where they stay while every tile's products and output transform use them:
 * the transformed weights never go to memory. Same arithmetic, element for element, as
 * the order above. */
static void WNAME(input_tasks)(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {
    conv_wino_problem *p = (conv_wino_problem *)ctx;
    ptrdiff_t task, ntile = conv_wino_tiles(p);
    T chk = 0;
    for (task = begin; task < end; task++) {
        const ptrdiff_t t0 = task * CONV_MR, nt = ntile - t0 < CONV_MR ? ntile - t0 : CONV_MR;
        chk += WNAME(input)(p, t0, nt, (T *)p->vall + t0 * p->CI);
    }
    if (chk != 0)
        CONV_STORE_RELAXED(&p->nonfinite, 1);
}

static void WNAME(ws_tasks)(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {
    conv_wino_problem *p = (conv_wino_problem *)ctx;
    const T *zeros = (const T *)p->zeros, *vall = (const T *)p->vall;
    const ptrdiff_t CI = p->CI, nt = conv_wino_tiles(p);
    const size_t nu = (size_t)(WT * CI * NR), nm = (size_t)(WT * nt * NR);
    T *ub = (T *)conv_scratch((nu + nm) * sizeof(T)), *mb = ub + nu;
    T chk = 0;
    int bad = 0;
    ptrdiff_t cot, xi;
    if (ub == NULL) {
        CONV_STORE_RELAXED(&p->failed, 1);
        begin = end;
    }
    for (cot = begin; cot < end; cot++) {
        if (conv_interrupted(p->intr, cot)) break;
        bad |= WNAME(weights_run)((const T *)p->w, CI, p->CO, cot, 0, CI, ub, CI);
        for (xi = 0; xi < WT; xi++)
            WNAME(product)(vall + xi * nt * CI, ub + xi * CI * NR, zeros, mb + xi * nt * NR, NR,
                           nt, CI);
        chk += WNAME(output)(p, 0, nt, mb, cot * NR, NR);
    }
    if (chk != 0 || bad)
        CONV_STORE_RELAXED(&p->nonfinite, 1);
}

#undef WA
#undef WT
#undef WIN_IN
#undef WIN_OUT
#undef WIN_G
#undef WIN_INPUT_TILE
#undef WIN_OUTPUT_TILE
#undef WIN_SCALAR_LOAD
#undef WIN_SCALAR_STORE
#undef WM
#undef WNAME
