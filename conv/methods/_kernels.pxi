# conv's compiled kernels, included by _kernels.pyx (portable build) and
# _kernels_avx2.pyx (AVX2+FMA build): thin Python-level entry points that check nothing
# (the front end and conv.methods._compiled have validated and allocated) and hand a
# problem description to the C drivers in _drivers.h, with the GIL released. The drivers
# split the work into tasks (channel tile x block of pixel tiles) for conv's thread pool
# (_pool.h) and run each tile on the register-blocked micro-kernel (_ukernel.h, _tile.h).
# ukernel() and UKERNELS expose the micro-kernels themselves, for the tests.
#
# Every output element is summed in the order (i, j, c_in) whatever the thread count, so
# threads=1, threads=k and the serial build agree bit for bit, and "direct" and "matmul"
# agree bit for bit. Compiler directives are set in setup.py.
cdef extern from "_ukernel.h" nogil:
    const int CONV_MR
    const int CONV_NR_F
    const int CONV_NR_D
    const int CONV_NR_F_HALF  # 0: no half-width tiles in this build
    const int CONV_NR_D_HALF
    const char* CONV_SIMD
    ctypedef void (*conv_ukernel_f32_fn)(
        const float* x, const float* wp, const float* zeros, float* out, Py_ssize_t CO,
        int mr, int nc, Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t OW, Py_ssize_t H,
        Py_ssize_t W, Py_ssize_t CI, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh,
        Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
        int zeros_exact, int accumulate) noexcept nogil
    ctypedef void (*conv_ukernel_f64_fn)(
        const double* x, const double* wp, const double* zeros, double* out, Py_ssize_t CO,
        int mr, int nc, Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t OW, Py_ssize_t H,
        Py_ssize_t W, Py_ssize_t CI, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh,
        Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
        int zeros_exact, int accumulate) noexcept nogil
    ctypedef void (*conv_pwkernel_f32_fn)(
        const float* const* q, const float* wt, Py_ssize_t K, Py_ssize_t ldw, float* out,
        Py_ssize_t CO, int mr, int nc) noexcept nogil
    ctypedef void (*conv_pwkernel_f64_fn)(
        const double* const* q, const double* wt, Py_ssize_t K, Py_ssize_t ldw, double* out,
        Py_ssize_t CO, int mr, int nc) noexcept nogil
    ctypedef struct conv_ukernel_entry:
        const char* name
        const char* dtype
        const char* isa
        int mr, nr
        conv_ukernel_f32_fn f32
        conv_ukernel_f64_fn f64
        conv_pwkernel_f32_fn pw32
        conv_pwkernel_f64_fn pw64
    const conv_ukernel_entry conv_ukernels[]
    const int CONV_NUM_UKERNELS

from cpython.buffer cimport PyBUF_STRIDES, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cdef extern from "_pool.h" nogil:
    const char* CONV_POOL_KIND
    ctypedef struct conv_interrupt:
        int stop
        int (*poll)(void*) noexcept nogil
        void* poll_ctx
        long long next_poll_ns
        const void* caller
    const void* conv_pool_self()
    long long conv_pool_now_ns()
    const long long CONV_POLL_NS
    ctypedef void (*conv_task_fn)(const void* ctx, Py_ssize_t begin, Py_ssize_t end) noexcept nogil
    void conv_pool_run(int threads, Py_ssize_t ntask, Py_ssize_t chunk, conv_task_fn fn,
                       const void* ctx)
    int conv_pool_probe(int n, double timeout_s)

cdef extern from "_drivers.h" nogil:
    ctypedef struct conv_problem:
        const void* x
        const void* wp
        const void* zeros
        void* out
        const void* w
        Py_ssize_t N, H, W, CI, ncot, KH, KW, nr, OH, OW, CO
        Py_ssize_t sh, sw, dh, dw, pt, pl
        int zeros_exact, blocks_outer, out_nchw
        conv_interrupt* intr
    void conv_direct_f(const conv_problem* p, int threads)
    void conv_direct_d(const conv_problem* p, int threads)
    void conv_matmul_f(const conv_problem* p, int threads)
    void conv_matmul_d(const conv_problem* p, int threads)
    # NULL where the build has no half-width tiles
    void conv_direct_f_half(const conv_problem* p, int threads)
    void conv_direct_d_half(const conv_problem* p, int threads)
    void conv_matmul_f_half(const conv_problem* p, int threads)
    void conv_matmul_d_half(const conv_problem* p, int threads)

    ctypedef struct conv_pw_problem:
        const void* x
        const void* wt
        const void* zeros
        void* out
        Py_ssize_t N, CI, H, W, CO, OH, OW, sh, sw, cob
        int failed
        conv_interrupt* intr
    void conv_pw_nchw_f(conv_pw_problem* p, int threads)
    void conv_pw_nchw_d(conv_pw_problem* p, int threads)

cdef extern from "_pack.h" nogil:
    ctypedef struct conv_pack_job:
        const void* w
        void* wp
        Py_ssize_t rows, CO, ncot, nr
        int nonfinite
    void conv_pack_f(conv_pack_job* p, int threads)
    void conv_pack_d(conv_pack_job* p, int threads)

cdef extern from "_winograd.h" nogil:
    ctypedef struct conv_wino_problem:
        const void* x
        const void* u
        const void* zeros
        void* out
        const void* w
        void* vall
        Py_ssize_t N, H, W, CI, ncot, nr, OH, OW, CO, pt, pl
        int m, out_nchw
        Py_ssize_t bt, gcot
        int nonfinite, failed
        conv_interrupt* intr
    ctypedef struct conv_wino_weights:
        const void* w
        void* u
        Py_ssize_t CI, CO, ncot
        int nonfinite
    void conv_winograd_f(conv_wino_problem* p, int threads)
    void conv_winograd_d(conv_wino_problem* p, int threads)
    void conv_winograd_f_ws(conv_wino_problem* p, int threads)
    void conv_winograd_d_ws(conv_wino_problem* p, int threads)
    void conv_winograd_f_weights(conv_wino_weights* p, int m, int threads)
    void conv_winograd_d_weights(conv_wino_weights* p, int m, int threads)

cdef extern from "_depthwise.h" nogil:
    ctypedef struct conv_dw_problem:
        const void* x
        const void* w
        void* out
        Py_ssize_t N, H, W, C, KH, KW, Cg, CO, OH, OW
        Py_ssize_t sh, sw, dh, dw, pt, pl
        conv_interrupt* intr
        void* wrot
        Py_ssize_t shift
        int out_nchw, x_nchw, failed
    const long CONV_DW_PREFETCH_BYTES
    int conv_dw_planes_apply(const conv_dw_problem* p, size_t elem)
    void conv_depthwise_f(conv_dw_problem* p, int threads)
    void conv_depthwise_d(conv_dw_problem* p, int threads)

cdef extern from "_layout.h" nogil:
    ctypedef struct conv_swap_problem:
        const void* x
        void* out
        Py_ssize_t N, A, B
        conv_interrupt* intr
    void conv_swap_f(const conv_swap_problem* p, int threads)
    void conv_swap_d(const conv_swap_problem* p, int threads)

cdef extern from "_peak.h" nogil:
    double conv_peak_f(long long n, double seed)
    double conv_peak_d(long long n, double seed)
    const int CONV_PEAK_FLOPS_F
    const int CONV_PEAK_FLOPS_D
    const int CONV_PEAK_LANES_F
    const int CONV_PEAK_LANES_D

# a driver of _winograd.h (conv_winograd_f, conv_winograd_f_ws, ...)
ctypedef void (*conv_wino_driver)(conv_wino_problem* p, int threads) noexcept nogil

# a driver of _drivers.h (conv_direct_f, ...)
ctypedef void (*conv_driver)(const conv_problem* p, int threads) noexcept nogil

ctypedef fused real:
    float
    double

SIMD = CONV_SIMD.decode()
POOL = CONV_POOL_KIND.decode()
#: lanes of the FMA loop's vectors (fma_loop's flops = 2 x 12 accumulators x lanes per turn)
PEAK_LANES = {"float32": CONV_PEAK_LANES_F, "float64": CONV_PEAK_LANES_D}
#: output channels per tile, by dtype (the packed weights' last axis): the full width
NR = {"float32": CONV_NR_F, "float64": CONV_NR_D}
#: the depthwise kernel prefetches its input rows where x and out exceed this many bytes
DW_PREFETCH_BYTES = CONV_DW_PREFETCH_BYTES
#: every tile width the drivers take, by dtype, widest first
TILE_WIDTHS = {"float32": tuple(n for n in (CONV_NR_F, CONV_NR_F_HALF) if n),
               "float64": tuple(n for n in (CONV_NR_D, CONV_NR_D_HALF) if n)}


cdef dict _ukernel_listing():
    cdef const conv_ukernel_entry* e
    cdef int k
    listing = {}
    for k in range(CONV_NUM_UKERNELS):
        e = &conv_ukernels[k]
        listing[e.name.decode()] = (e.dtype.decode(), e.mr, e.nr, e.isa.decode())
    return listing


#: every micro-kernel compiled into this extension, for the tests:
#: name -> (dtype, MR, NR, ISA), e.g. "conv_f32_direct_6x16__avx2" -> ("float32", 6, 16, "avx2")
UKERNELS = _ukernel_listing()


cdef int _poll_signals(void* pending) noexcept nogil:
    """Between tasks, on the calling thread: run Python's signal handlers (only the main
    thread has any). If one raised (Ctrl-C: KeyboardInterrupt), keep the exception in
    the `pending` list and stop the call."""
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            (<list>pending).append(exc)
            return 1
    return 0


cdef class _Interrupt:
    """One call's interrupt state: the C struct the drivers poll, and the exception a
    signal handler raised, re-raised by finish() once every thread has stopped."""
    cdef conv_interrupt c
    cdef list pending

    def __cinit__(self):
        self.pending = []
        self.c.stop = 0
        self.c.poll = _poll_signals
        self.c.poll_ctx = <void*>self.pending
        self.c.next_poll_ns = conv_pool_now_ns() + CONV_POLL_NS  # short calls never poll
        self.c.caller = conv_pool_self()

    cdef finish(self):
        if self.pending:
            raise self.pending[0]


cdef _drive(conv_driver f32, conv_driver f64, conv_driver f32_half, conv_driver f64_half,
            const real[:, :, :, ::1] x,
            const real[:, :, :, :, ::1] wp, const real[::1] zeros, real[:, :, :, ::1] out,
            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt,
            Py_ssize_t pl, bint zeros_exact, bint blocks_outer, int threads,
            const real[:, ::1] w, bint out_nchw):
    """Every entry point's body: describe the problem to C and run driver `f32` or `f64`
    (by dtype; the `_half` ones for half-width tiles, by the packed weights' width) with
    the GIL released. Ctrl-C during the call raises its KeyboardInterrupt once every
    thread has stopped, and leaves no partial result. With `w` (not None) the tasks pack
    it into `wp` themselves, one channel tile each (see conv_problem). out_nchw: out is
    (N, C_out, OH, OW)."""
    cdef conv_problem p
    cdef _Interrupt intr
    cdef conv_driver f
    cdef Py_ssize_t nr = wp.shape[4]
    cdef Py_ssize_t co = out.shape[1] if out_nchw else out.shape[3]
    if real is float:
        f = f32 if nr == CONV_NR_F else f32_half if nr == CONV_NR_F_HALF else NULL
    else:
        f = f64 if nr == CONV_NR_D else f64_half if nr == CONV_NR_D_HALF else NULL
    if f == NULL:
        dtype = "float32" if real is float else "float64"
        raise ValueError(f"packed weights {nr} channels wide; this build's {dtype} tiles "
                         f"are {TILE_WIDTHS[dtype]}")
    if out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3] == 0:
        return
    # an empty x (H or W = 0 with padding) or w (C_in = 0) is never read: every tap is
    # padding or every sum is empty, so a valid dummy pointer stands in
    p.zeros = &zeros[0]
    p.x = &x[0, 0, 0, 0] if x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] else p.zeros
    p.wp = &wp[0, 0, 0, 0, 0] if wp.shape[0] * wp.shape[1] * wp.shape[2] * wp.shape[3] else p.zeros
    p.out = &out[0, 0, 0, 0]
    p.w = NULL
    if w is not None:
        rows = wp.shape[1] * wp.shape[2] * wp.shape[3]
        if w.shape[0] != rows or w.shape[1] != co or blocks_outer:
            raise ValueError(f"w must be (KH * KW * C_in, C_out) = ({rows}, {co}) "
                             f"and blocks_outer False")
        if w.shape[0]:  # else every sum is empty and nothing is packed or read
            p.w = &w[0, 0]
            zeros_exact = True  # the tasks check each channel tile's weights as they pack
    p.N, p.H, p.W, p.CI = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p.ncot, p.KH, p.KW, p.nr = wp.shape[0], wp.shape[1], wp.shape[2], wp.shape[4]
    if out_nchw:
        p.OH, p.OW, p.CO = out.shape[2], out.shape[3], out.shape[1]
    else:
        p.OH, p.OW, p.CO = out.shape[1], out.shape[2], out.shape[3]
    p.sh, p.sw, p.dh, p.dw, p.pt, p.pl = sh, sw, dh, dw, pt, pl
    p.zeros_exact, p.blocks_outer, p.out_nchw = zeros_exact, blocks_outer, out_nchw
    intr = _Interrupt()
    p.intr = &intr.c
    with nogil:
        f(&p, threads)
    intr.finish()


def conv2d_direct(const real[:, :, :, ::1] x, const real[:, :, :, :, ::1] wp,
                  const real[::1] zeros, real[:, :, :, ::1] out,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t pt, Py_ssize_t pl, bint zeros_exact, bint blocks_outer,
                  int threads, const real[:, ::1] w=None, bint out_nchw=False):
    """Direct order: each tile sums over every tap before it is stored.

    x: (N, H, W, C_in), unpadded; wp: (channel tiles, KH, KW, C_in, NR) from
    pack_weights, NR one of TILE_WIDTHS; zeros: KW*C_in zeros; out: (N, OH, OW, C_out).
    pt/pl: top/left padding. zeros_exact: every weight is finite (see _tile.h).
    blocks_outer: task order; it changes speed, never results. threads: at most this
    many threads. w: None, or the weights as (KH * KW * C_in, C_out), which the tasks
    then pack into wp (any contents) one channel tile each, checking them for Inf/NaN as
    they go (zeros_exact is then ignored; blocks_outer must be False). out_nchw: out is
    (N, C_out, OH, OW), each tile stored channel-major as it is computed (the same
    values as the NHWC output, moved).
    """
    _drive(conv_direct_f, conv_direct_d, conv_direct_f_half, conv_direct_d_half, x, wp,
           zeros, out, sh, sw, dh, dw, pt, pl, zeros_exact, blocks_outer, threads, w,
           out_nchw)


def conv2d_matmul(const real[:, :, :, ::1] x, const real[:, :, :, :, ::1] wp,
                  const real[::1] zeros, real[:, :, :, ::1] out,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t pt, Py_ssize_t pl, bint zeros_exact, bint blocks_outer,
                  int threads, const real[:, ::1] w=None):
    """The article's order: for each kernel tap (i, j), one (pixels x C_in) @
    (C_in x NR) product over the strided input slice, accumulated into the output,
    blocked so the block being accumulated stays in cache. Same arguments as
    conv2d_direct."""
    _drive(conv_matmul_f, conv_matmul_d, conv_matmul_f_half, conv_matmul_d_half, x, wp,
           zeros, out, sh, sw, dh, dw, pt, pl, zeros_exact, blocks_outer, threads, w,
           False)


def conv2d_pointwise_nchw(const real[:, :, :, ::1] x, const real[:, ::1] wt,
                          const real[::1] zeros, real[:, :, :, ::1] out, Py_ssize_t sh,
                          Py_ssize_t sw, int threads):
    """A 1x1 convolution without padding on NCHW arrays, no layout change (_drivers.h):
    x (N, C_in, H, W); wt: the weights transposed, (C_out, C_in); zeros: at least C_in
    zeros; out (N, C_out, OH, OW), every output pixel's input inside x ((OH - 1) * sh < H,
    (OW - 1) * sw < W). The NHWC direct call's sums, bit for bit. Ctrl-C raises its
    KeyboardInterrupt once every thread has stopped."""
    cdef conv_pw_problem p
    cdef _Interrupt intr
    if (wt.shape[1] != x.shape[1] or out.shape[1] != wt.shape[0] or out.shape[0] != x.shape[0]
            or zeros.shape[0] < max(1, x.shape[1]) or sh < 1 or sw < 1
            or (out.shape[2] - 1) * sh >= x.shape[2] or (out.shape[3] - 1) * sw >= x.shape[3]):
        raise ValueError(f"conv2d_pointwise_nchw: x {tuple(x.shape)}, wt {tuple(wt.shape)}, "
                         f"out {tuple(out.shape)}, {zeros.shape[0]} zeros and strides "
                         f"({sh}, {sw}) do not fit")
    if out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3] == 0:
        return
    if x.shape[1] == 0:  # empty sums
        out[...] = 0
        return
    p.x, p.wt, p.zeros, p.out = &x[0, 0, 0, 0], &wt[0, 0], &zeros[0], &out[0, 0, 0, 0]
    p.N, p.CI, p.H, p.W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p.CO, p.OH, p.OW, p.sh, p.sw = out.shape[1], out.shape[2], out.shape[3], sh, sw
    intr = _Interrupt()
    p.intr = &intr.c
    with nogil:
        if real is float:
            conv_pw_nchw_f(&p, threads)
        else:
            conv_pw_nchw_d(&p, threads)
    intr.finish()
    if p.failed:
        raise MemoryError("conv2d_pointwise_nchw: no memory for a task's input panel")


def pack_weights(const real[:, ::1] w, real[:, :, ::1] wp, int threads):
    """Pack weights for the micro-kernel: w, (KH * KW * C_in, C_out), into wp
    (C_out tiles, KH * KW * C_in, NR), zero past C_out; True when every weight is
    finite (checked in the same pass)."""
    cdef conv_pack_job p
    if wp.shape[1] != w.shape[0] or not (0 <= w.shape[1] <= wp.shape[0] * wp.shape[2]) or (
            wp.shape[0] and (wp.shape[0] - 1) * wp.shape[2] >= w.shape[1]):
        raise ValueError(f"wp must be (ceil({w.shape[1]} / NR), {w.shape[0]}, NR)")
    if wp.shape[0] * wp.shape[1] * wp.shape[2] == 0:
        return True
    p.w, p.wp = &w[0, 0], &wp[0, 0, 0]
    p.rows, p.CO, p.ncot, p.nr = w.shape[0], w.shape[1], wp.shape[0], wp.shape[2]
    with nogil:
        if real is float:
            conv_pack_f(&p, threads)
        else:
            conv_pack_d(&p, threads)
    return not p.nonfinite


def winograd_weights(const real[:, :, :, ::1] w, real[:, :, :, ::1] u, int m,
                     int threads):
    """Transform 3x3 weights w (3, 3, C_in, C_out) for F(m x m, 3 x 3) into u
    ((m + 2)**2, channel tiles, C_in, NR): U = G g G^T, computed in float64 and rounded
    once, zero past C_out. NR is the dtype's full tile width (NR). Returns False when
    a weight is Inf or NaN (u is then not valid)."""
    cdef conv_wino_weights p
    cdef Py_ssize_t nr = NR["float32" if real is float else "float64"]
    if m not in (2, 4):
        raise ValueError(f"m must be 2 or 4, not {m}")
    if (w.shape[0] != 3 or w.shape[1] != 3 or u.shape[0] != (m + 2) ** 2 or u.shape[2] != w.shape[2]
            or u.shape[3] != nr or u.shape[1] * nr < w.shape[3]):
        raise ValueError("w must be (3, 3, C_in, C_out) and u ((m+2)**2, tiles, C_in, NR)")
    if u.shape[0] * u.shape[1] * u.shape[2] == 0:
        return True
    p.w = &w[0, 0, 0, 0] if w.shape[2] * w.shape[3] else &u[0, 0, 0, 0]
    p.u = &u[0, 0, 0, 0]
    p.CI, p.CO, p.ncot = w.shape[2], w.shape[3], u.shape[1]
    with nogil:
        if real is float:
            conv_winograd_f_weights(&p, m, threads)
        else:
            conv_winograd_d_weights(&p, m, threads)
    return not p.nonfinite


cdef bint _wino_run(conv_wino_driver f32, conv_wino_driver f64, conv_wino_problem* p,
                    const real[:, :, :, ::1] x, const real[::1] zeros,
                    real[:, :, :, ::1] out, int m, Py_ssize_t pt, Py_ssize_t pl,
                    int threads, bint out_nchw) except -1:
    """Both Winograd orders' shared body: describe the input, the output and the padding
    in p (the order's own fields already set), run driver `f32` or `f64` (by dtype) with
    the GIL released; out_nchw: out is (N, C_out, OH, OW). True unless an Inf or NaN was met; MemoryError if a task had no
    scratch; Ctrl-C raises its KeyboardInterrupt once every thread has stopped."""
    cdef _Interrupt intr = _Interrupt()
    p.zeros = &zeros[0]
    p.x = &x[0, 0, 0, 0] if x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] else p.zeros
    p.out = &out[0, 0, 0, 0]
    p.N, p.H, p.W, p.CI = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p.nr = NR["float32" if real is float else "float64"]
    if out_nchw:
        p.OH, p.OW, p.CO = out.shape[2], out.shape[3], out.shape[1]
    else:
        p.OH, p.OW, p.CO = out.shape[1], out.shape[2], out.shape[3]
    p.out_nchw = out_nchw
    p.pt, p.pl, p.m = pt, pl, m
    p.intr = &intr.c
    with nogil:
        if real is float:
            f32(p, threads)
        else:
            f64(p, threads)
    intr.finish()
    if p.failed:
        raise MemoryError("winograd: no memory for a task's scratch")
    return not p.nonfinite


def conv2d_depthwise(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w,
                     real[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                     Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, int threads,
                     bint out_nchw=False, bint x_nchw=False):
    """Grouped convolution with few channels a group (_depthwise.h): x (N, H, W, C),
    unpadded; w (KH, KW, Cg, CO) with C / Cg groups (depthwise: Cg = 1, output channel
    c * M + m); out (N, OH, OW, CO), or (N, CO, OH, OW) with out_nchw (the same values,
    each output row moved into the channels' planes); pt/pl: top/left padding (padded
    taps are skipped). x_nchw (with out_nchw; depthwise, multiplier 1, sw 1: see
    planes_apply): x is (N, C, H, W), each channel plane convolved as it lies, the same
    values. Ctrl-C raises once every thread has stopped."""
    cdef conv_dw_problem p
    cdef _Interrupt intr
    cdef Py_ssize_t co = out.shape[1] if out_nchw else out.shape[3]
    cdef Py_ssize_t ci = x.shape[1] if x_nchw else x.shape[3]
    if (w.shape[2] == 0 or ci % w.shape[2] or co != w.shape[3]
            or out.shape[0] != x.shape[0] or w.shape[3] % (ci // w.shape[2])):
        raise ValueError("conv2d_depthwise: x, w and out do not make a grouped convolution")
    if x_nchw:
        p.N, p.C, p.H, p.W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    else:
        p.N, p.H, p.W, p.C = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p.KH, p.KW, p.Cg, p.CO = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    p.OH, p.OW = (out.shape[2], out.shape[3]) if out_nchw else (out.shape[1], out.shape[2])
    p.out_nchw = out_nchw
    p.x_nchw = x_nchw
    p.sh, p.sw, p.dh, p.dw, p.pt, p.pl = sh, sw, dh, dw, pt, pl
    if x_nchw and not conv_dw_planes_apply(&p, sizeof(real)):
        raise ValueError("conv2d_depthwise: x_nchw needs out_nchw, one channel a group, "
                         "multiplier 1, sw 1, a filter at most 64 x 16 and output rows of "
                         "at least 3 vectors")
    if out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3] == 0:
        return
    if x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] == 0:
        out[...] = 0  # every tap in the padding
        return
    p.x = &x[0, 0, 0, 0]
    p.w = &w[0, 0, 0, 0]
    p.out = &out[0, 0, 0, 0]
    # scratch for the filters rotated to x's alignment (depthwise, multiplier 1; the C
    # driver decides whether it is used)
    p.wrot = NULL
    p.shift = 0
    if w.shape[2] == 1 and w.shape[3] == ci and not x_nchw:
        p.wrot = malloc(<size_t>(w.shape[0] * w.shape[1] * w.shape[3]) * sizeof(real))
        if p.wrot == NULL:
            raise MemoryError()
    intr = _Interrupt()
    p.intr = &intr.c
    try:
        with nogil:
            if real is float:
                conv_depthwise_f(&p, threads)
            else:
                conv_depthwise_d(&p, threads)
    finally:
        free(p.wrot)
    intr.finish()
    if p.failed:
        raise MemoryError("conv2d_depthwise: no memory for a task's output row")


def address(a):
    """The address of a's first element (a: a NumPy array, or any object exporting a
    strided buffer): ``a.ctypes.data`` in a tenth of its time (which builds a ctypes
    object; every call that allocates an aligned output asks)."""
    cdef Py_buffer view
    PyObject_GetBuffer(a, &view, PyBUF_STRIDES)
    cdef size_t at = <size_t>view.buf
    PyBuffer_Release(&view)
    return at


def planes_apply(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t cg, Py_ssize_t co, Py_ssize_t c,
                 Py_ssize_t sw, Py_ssize_t ow, Py_ssize_t itemsize, bint out_nchw=True):
    """Whether conv2d_depthwise takes NCHW x (x_nchw) for filters (kh, kw, cg, co) on c
    channels at row stride sw, output rows ow wide, elements of itemsize bytes: depthwise,
    multiplier 1, sw 1, rows of at least 3 vectors, into NCHW output (_depthwise.h)."""
    cdef conv_dw_problem p
    memset(&p, 0, sizeof(p))
    p.KH, p.KW, p.Cg, p.CO, p.C, p.sw, p.out_nchw = kh, kw, cg, co, c, sw, out_nchw
    p.OW = ow
    return bool(conv_dw_planes_apply(&p, itemsize))


def swap_axes(const real[:, :, ::1] x, real[:, :, ::1] out, int threads):
    """out[n, b, a] = x[n, a, b] (_layout.h): NCHW as (N, C, H*W) to NHWC as (N, H*W, C),
    and back. Ctrl-C raises once every thread has stopped."""
    cdef conv_swap_problem p
    cdef _Interrupt intr
    if (out.shape[0] != x.shape[0] or out.shape[1] != x.shape[2]
            or out.shape[2] != x.shape[1]):
        raise ValueError("swap_axes: out must have x's shape with the last two axes swapped")
    if x.shape[0] * x.shape[1] * x.shape[2] == 0:
        return
    p.x = &x[0, 0, 0]
    p.out = &out[0, 0, 0]
    p.N, p.A, p.B = x.shape[0], x.shape[1], x.shape[2]
    intr = _Interrupt()
    p.intr = &intr.c
    with nogil:
        if real is float:
            conv_swap_f(&p, threads)
        else:
            conv_swap_d(&p, threads)
    intr.finish()


def conv2d_winograd(const real[:, :, :, ::1] x, const real[:, :, :, ::1] u,
                    const real[::1] zeros, real[:, :, :, ::1] out, Py_ssize_t pt,
                    Py_ssize_t pl, int threads, Py_ssize_t bt=0, Py_ssize_t gcot=0,
                    bint out_nchw=False):
    """Winograd F(m x m, 3 x 3) at stride 1, dilation 1, m from u's shape (16 transform
    positions: m = 2; 36: m = 4). x: (N, H, W, C_in), unpadded; u: from
    winograd_weights; zeros: at least C_in zeros; out: (N, OH, OW, C_out); pt/pl:
    top/left padding. bt, gcot: tiles and channel tiles a task (0: chosen for the
    cache and the threads); they change speed, never results. out_nchw: out is
    (N, C_out, OH, OW) (the same values, stored channel-major). Returns False when an Inf
    or NaN was met (in x, or from an overflow): out is then not valid and the caller
    recomputes it exactly. Ctrl-C raises its KeyboardInterrupt once every thread has
    stopped."""
    cdef conv_wino_problem p
    cdef Py_ssize_t nr = NR["float32" if real is float else "float64"]
    cdef Py_ssize_t co = out.shape[1] if out_nchw else out.shape[3]
    if u.shape[0] not in (16, 36) or u.shape[3] != nr or u.shape[2] != x.shape[3]:
        raise ValueError(f"u must be (16 or 36, tiles, {x.shape[3]}, {nr})")
    if u.shape[1] * nr < co or out.shape[0] != x.shape[0] or zeros.shape[0] < max(1, x.shape[3]):
        raise ValueError("u has too few channel tiles, out the wrong batch, or zeros too short")
    if out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3] == 0:
        return True
    memset(&p, 0, sizeof(p))
    p.u = &u[0, 0, 0, 0]
    p.ncot = u.shape[1]
    p.bt, p.gcot = max(0, bt), min(max(0, gcot), u.shape[1])
    return _wino_run(conv_winograd_f, conv_winograd_d, &p, x, zeros, out,
                     2 if u.shape[0] == 16 else 4, pt, pl, threads, out_nchw)


def conv2d_winograd_ws(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w,
                       const real[::1] zeros, real[::1] vall, real[:, :, :, ::1] out, int m,
                       Py_ssize_t pt, Py_ssize_t pl, int threads, bint out_nchw=False):
    """conv2d_winograd in the weights-stationary order, for few tiles: the input transform
    of every tile into vall (at least (m + 2)**2 * tiles * C_in elements; tiles =
    N * ceil(OH / m) * ceil(OW / m)), then a task per channel tile that transforms its
    weights from w (3, 3, C_in, C_out) into its own scratch and uses them for every tile.
    The same results as conv2d_winograd with winograd_weights(w, u, m), element for
    element (out_nchw as there). Returns False when an Inf or NaN was met (in x or w, or
    from an overflow)."""
    cdef conv_wino_problem p
    cdef Py_ssize_t nr = NR["float32" if real is float else "float64"]
    cdef Py_ssize_t oh = out.shape[2] if out_nchw else out.shape[1]
    cdef Py_ssize_t ow = out.shape[3] if out_nchw else out.shape[2]
    cdef Py_ssize_t co = out.shape[1] if out_nchw else out.shape[3]
    cdef Py_ssize_t tiles = x.shape[0] * ((oh + m - 1) // m) * ((ow + m - 1) // m)
    if m not in (2, 4):
        raise ValueError(f"m must be 2 or 4, not {m}")
    if w.shape[0] != 3 or w.shape[1] != 3 or w.shape[2] != x.shape[3] or w.shape[3] != co:
        raise ValueError(f"w must be (3, 3, {x.shape[3]}, {co})")
    if out.shape[0] != x.shape[0] or zeros.shape[0] < max(1, x.shape[3]):
        raise ValueError("out has the wrong batch, or zeros is too short")
    if vall.shape[0] < (m + 2) ** 2 * tiles * x.shape[3]:
        raise ValueError(f"vall must hold {(m + 2) ** 2 * tiles * x.shape[3]} elements")
    if out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3] == 0:
        return True
    memset(&p, 0, sizeof(p))
    p.w = &w[0, 0, 0, 0] if w.shape[2] else &zeros[0]
    p.vall = &vall[0] if vall.shape[0] else NULL
    p.ncot = (co + nr - 1) // nr
    return _wino_run(conv_winograd_f_ws, conv_winograd_d_ws, &p, x, zeros, out, m, pt, pl,
                     threads, out_nchw)


cdef const conv_ukernel_entry* _ukernel_entry(str name, str dtype) except NULL:
    """The table entry of the `dtype` micro-kernel `name` (a key of UKERNELS)."""
    cdef int k
    for k in range(CONV_NUM_UKERNELS):
        if conv_ukernels[k].name.decode() == name and conv_ukernels[k].dtype.decode() == dtype:
            return &conv_ukernels[k]
    raise ValueError(f"no {dtype} micro-kernel {name!r} in this build: {list(UKERNELS)}")


def ukernel(str name, const real[:, :, ::1] x, const real[:, :, :, ::1] wp,
            const real[::1] zeros, real[::1] out, Py_ssize_t co, int mr, int nc,
            Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t ow, Py_ssize_t sh, Py_ssize_t sw,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, bint zeros_exact,
            bint accumulate):
    """For the tests: one call of micro-kernel `name` (a key of UKERNELS), checked.

    x: one image (H, W, C_in); wp: one channel tile's packed weights (KH, KW, C_in, NR);
    zeros: at least KW*C_in zeros; out: the tile's first output pixel at out[0], `co`
    elements between pixels; mr pixels from output pixel (oy, ox) of a grid `ow` wide,
    nc channels. The rest as for the drivers (see _tile.h)."""
    cdef const real* xp
    cdef const real* wpp
    cdef const conv_ukernel_entry* e
    cdef Py_ssize_t H = x.shape[0], W = x.shape[1], CI = x.shape[2]
    cdef Py_ssize_t KH = wp.shape[0], KW = wp.shape[1]
    cdef str dtype = "float32" if real is float else "float64"
    e = _ukernel_entry(name, dtype)
    if wp.shape[2] != CI or wp.shape[3] != e.nr or KH < 1 or KW < 1:
        raise ValueError(f"wp must be (KH >= 1, KW >= 1, {CI}, {e.nr})")
    if not (1 <= mr <= e.mr and 1 <= nc <= e.nr and (mr == 1 or co >= nc)):
        raise ValueError(f"need 1 <= mr <= {e.mr}, 1 <= nc <= {e.nr}, co >= nc")
    if out.shape[0] < (mr - 1) * co + nc or zeros.shape[0] < max(1, KW * CI):
        raise ValueError("out or zeros too short")
    if any(zeros[k] != 0 for k in range(KW * CI)):
        raise ValueError("zeros must be zeros")
    if not (oy >= 0 and 0 <= ox < ow and min(sh, sw, dh, dw) >= 1):
        raise ValueError("need oy >= 0, 0 <= ox < ow, strides and dilations >= 1")
    # as in _drive: an empty x or wp is never read
    xp = &x[0, 0, 0] if H * W * CI else &zeros[0]
    wpp = &wp[0, 0, 0, 0] if CI else &zeros[0]
    if real is float:
        e.f32(xp, wpp, &zeros[0], &out[0], co, mr, nc, oy, ox, ow, H, W, CI, KH, KW, sh, sw,
              dh, dw, pt, pl, zeros_exact, accumulate)
    else:
        e.f64(xp, wpp, &zeros[0], &out[0], co, mr, nc, oy, ox, ow, H, W, CI, KH, KW, sh, sw,
              dh, dw, pt, pl, zeros_exact, accumulate)


def ukernel_1x1(str name, const real[:, ::1] rows, const real[:, :] wt,
                const real[::1] zeros, real[::1] out, Py_ssize_t co, int mr, int nc):
    """For the tests: one call of micro-kernel `name`'s 1x1 form (the tile of a matrix
    product the drivers run 1x1 problems on), checked.

    rows: the tile's mr input pixels (mr, C_in); wt: the channel tile's weights (C_in,
    NR), packed or rows of a wider array (each row contiguous); zeros: at least C_in
    zeros (read for the rows past mr); out as for ukernel()."""
    cdef const real* q[16]
    cdef const conv_ukernel_entry* e
    cdef Py_ssize_t K = rows.shape[1]
    cdef Py_ssize_t ldw = wt.strides[0] // <Py_ssize_t>sizeof(real)
    cdef int k
    cdef str dtype = "float32" if real is float else "float64"
    e = _ukernel_entry(name, dtype)
    if wt.shape[0] != K or wt.shape[1] != e.nr or rows.shape[0] != mr:
        raise ValueError(f"rows must be ({mr}, K) and wt (K, {e.nr})")
    if wt.strides[1] != sizeof(real) or wt.strides[0] % sizeof(real) or ldw < e.nr:
        raise ValueError("wt's rows must be contiguous and apart by at least NR elements")
    if not (1 <= mr <= e.mr <= 16 and 1 <= nc <= e.nr and (mr == 1 or co >= nc)):
        raise ValueError(f"need 1 <= mr <= {e.mr}, 1 <= nc <= {e.nr}, co >= nc")
    if out.shape[0] < (mr - 1) * co + nc or zeros.shape[0] < max(1, K):
        raise ValueError("out or zeros too short")
    if any(zeros[k] != 0 for k in range(K)):
        raise ValueError("zeros must be zeros")
    for k in range(e.mr):
        q[k] = &rows[k, 0] if k < mr and K else &zeros[0]
    if real is float:
        e.pw32(q, &wt[0, 0] if K else &zeros[0], K, ldw, &out[0], co, mr, nc)
    else:
        e.pw64(q, &wt[0, 0] if K else &zeros[0], K, ldw, &out[0], co, mr, nc)


cdef struct _PeakJob:
    long long iterations
    double sink[1024]


# Each task gets its own seed: the loop is a pure function, and a compiler may otherwise
# run it once for a whole range of tasks.
cdef void _peak_task_f(const void* ctx, Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    cdef _PeakJob* job = <_PeakJob*>ctx
    cdef Py_ssize_t t
    for t in range(begin, end):
        job.sink[t] = conv_peak_f(job.iterations, 1.0 - 1e-6 * t)


cdef void _peak_task_d(const void* ctx, Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    cdef _PeakJob* job = <_PeakJob*>ctx
    cdef Py_ssize_t t
    for t in range(begin, end):
        job.sink[t] = conv_peak_d(job.iterations, 1.0 - 1e-6 * t)


def fma_loop(str dtype, long long iterations, int threads):
    """Run _peak.h's FMA loop `iterations` times per thread, as 8 tasks per thread on up to
    `threads` threads of the pool (so a worker that starts late shifts work, not the
    finish), and return the flops done; timed by the caller, this is the build's
    arithmetic peak."""
    cdef _PeakJob job
    cdef int t
    cdef bint single = dtype == "float32"
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
    if not 1 <= threads <= 128:
        raise ValueError(f"threads must be in 1..128, not {threads}")
    job.iterations = max(1, iterations // 8)
    with nogil:
        conv_pool_run(threads, 8 * threads, 1, _peak_task_f if single else _peak_task_d, &job)
    for t in range(8 * threads):
        if job.sink[t] != job.sink[t]:  # never: keeps the loops' results alive
            raise ArithmeticError("FMA loop produced NaN")
    per = CONV_PEAK_FLOPS_F if single else CONV_PEAK_FLOPS_D
    return float(per) * job.iterations * 8 * threads


def pool_threads_seen(int n, double timeout=2.0):
    """For the tests: run n tasks on the pool that each wait (up to `timeout` seconds)
    until all n have started, and return how many distinct threads ran them: n when the
    pool's workers really take tasks, 1 when the caller ran them all alone (at most the
    CPUs online, and 64)."""
    cdef int seen
    with nogil:
        seen = conv_pool_probe(n, timeout)
    return seen
