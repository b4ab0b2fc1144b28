"""Every micro-kernel of every loaded kernel extension, called directly (ukernel()), against
plain loops written here.

A kernel call computes one tile: mr consecutive output pixels (row-major over an output
grid ``ow`` wide, so a tile may wrap to the next row) starting at (oy, ox), times nc
output channels. Each output element is the sum, in the order the kernels promise --
taps (i, j) in row-major order, then c_in -- of x[iy, ix, c] * w[i, j, c, n] over the
taps inside the image, started from 0 or (accumulate) from the value already in out.

* Small-integer inputs make every partial sum exact in both dtypes, so any order and any
  rounding give the same result: those sweeps compare bit for bit and test the indexing,
  the padding, partial tiles and what the kernel must leave untouched.
* Normal inputs test the rounding and the order: a sequential loop in exact rational
  arithmetic, rounded to the dtype after each step, either after each product and sum
  (plain multiply-add) or once per step (fused multiply-add, as the AVX2 build's FMA
  does). The kernel must equal one of the two bit for bit on every element.
"""
from __future__ import annotations

import importlib
import re
from fractions import Fraction

import numpy as np
import pytest

from conv._buildinfo import cpu_has


def _extensions():
    """The kernel extensions this CPU can run: the portable one always, the AVX2 and
    AVX-512 ones when they are built and the CPU has their features (importing them
    elsewhere would crash)."""
    mods = [importlib.import_module("conv.methods._kernels")]
    for name, features in (("_kernels_avx2", ("AVX2", "FMA3")),
                           ("_kernels_avx512", ("AVX512F", "AVX2", "FMA3"))):
        if cpu_has(*features):
            try:
                mods.append(importlib.import_module("conv.methods." + name))
            except ImportError:  # not built for this platform
                pass
    return mods


EXTENSIONS = _extensions()
KERNELS = [(mod, name) for mod in EXTENSIONS for name in mod.UKERNELS]
KERNEL_IDS = [f"{mod.__name__.rsplit('.', 1)[1]}:{name}" for mod, name in KERNELS]


class Geometry:
    """An image, a kernel and its padding; the output grid follows (TF's VALID/explicit)."""

    def __init__(self, id, H, W, CI, KH, KW, stride=(1, 1), dilation=(1, 1), pad=(0, 0, 0, 0)):
        self.id, self.H, self.W, self.CI, self.KH, self.KW = id, H, W, CI, KH, KW
        self.sh, self.sw = stride
        self.dh, self.dw = dilation
        self.pt, self.pb, self.pl, self.pr = pad
        self.OH = (H + self.pt + self.pb - self.dh * (KH - 1) - 1) // self.sh + 1
        self.OW = (W + self.pl + self.pr - self.dw * (KW - 1) - 1) // self.sw + 1
        assert self.OH > 0 and self.OW > 0


GEOMETRIES = [
    # 3x3 SAME: interior tiles (one output row, every tap inside) at ox = 1
    Geometry("3x3-same", 5, 9, 3, 3, 3, pad=(1, 1, 1, 1)),
    Geometry("3x3-s2", 7, 9, 2, 3, 3, stride=(2, 2), pad=(1, 1, 1, 1)),
    # dilated columns: the tap-by-tap path (dw > 1), asymmetric padding
    Geometry("3x2-d2", 6, 10, 4, 3, 2, dilation=(2, 2), pad=(2, 1, 1, 2)),
    Geometry("1x1", 4, 7, 5, 1, 1),
    Geometry("5x5-valid", 7, 11, 1, 5, 5),
    # padding as deep as the kernel: some pixels have every tap in the padding
    Geometry("3x3-pad3", 4, 8, 2, 3, 3, stride=(1, 2), pad=(3, 3, 3, 1)),
    Geometry("ci0", 3, 8, 0, 2, 2, pad=(1, 0, 1, 0)),
    # a 7x7/2 stem on 3 channels: border tiles gather each kernel row (KW*CI = 21)
    Geometry("7x7-s2-stem", 9, 13, 3, 7, 7, stride=(2, 2), pad=(3, 3, 3, 2)),
    # rows wide enough for interior tiles at several starts in a row (ox 1 to 11 at MR 8)
    Geometry("3x3-wide", 4, 20, 3, 3, 3, pad=(1, 1, 1, 1)),
]

SENTINEL = 7777  # exact in both dtypes; marks elements a call must not touch


# ============================================================ the plain loops
def inside(g: Geometry, p: int):
    """Taps (i, j, iy, ix) of output pixel p (flattened over the grid) inside the image,
    in the kernels' order."""
    py, px = divmod(p, g.OW)
    for i in range(g.KH):
        iy = py * g.sh - g.pt + i * g.dh
        if not 0 <= iy < g.H:
            continue
        for j in range(g.KW):
            ix = px * g.sw - g.pl + j * g.dw
            if 0 <= ix < g.W:
                yield i, j, iy, ix


def exact_sums(g: Geometry, x, w):
    """(P, NR) sums over the taps inside the image, in float64; exact for small integers
    (and NaN/Inf where a non-finite weight is used, which no order changes)."""
    P, nr = g.OH * g.OW, w.shape[3]
    out = np.zeros((P, nr))
    for p in range(P):
        for i, j, iy, ix in inside(g, p):
            out[p] += (x[iy, ix, :, None].astype(np.float64) * w[i, j]).sum(axis=0)
    return out


def is_interior(g: Geometry, p0: int, mr: int) -> bool:
    """Whether the tile from p0 lies in one output row with every tap inside the image."""
    oy, ox = divmod(p0, g.OW)
    iy, ix = oy * g.sh - g.pt, ox * g.sw - g.pl
    return (ox + mr <= g.OW and iy >= 0 and iy + (g.KH - 1) * g.dh < g.H and ix >= 0
            and ix + (mr - 1) * g.sw + (g.KW - 1) * g.dw < g.W)


def rounded(q: Fraction, dtype) -> Fraction:
    """q rounded to the nearest `dtype` value, ties to even (normal range only)."""
    if q == 0:
        return Fraction(0)
    bits = np.finfo(dtype).nmant + 1
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while a < Fraction(2) ** e:
        e -= 1
    while a >= Fraction(2) ** (e + 1):
        e += 1  # now 2**e <= a < 2**(e + 1)
    assert np.finfo(dtype).minexp <= e <= np.finfo(dtype).maxexp, "outside the normal range"
    scale = Fraction(2) ** (bits - 1 - e)
    m = round(a * scale)  # Fraction.__round__: ties to even
    return (m / scale) * (1 if q > 0 else -1)


def sequential(g: Geometry, x, w, init, p, nc, fused: bool):
    """Output pixel p, channels :nc, summed one product at a time in the kernels' order in
    exact arithmetic, rounded to the dtype after every multiply and add (fused=False) or
    once per multiply-add (fused=True)."""
    dtype = x.dtype
    acc = [Fraction(float(v)) for v in init[:nc]]
    for i, j, iy, ix in inside(g, p):
        for c in range(g.CI):
            a = Fraction(float(x[iy, ix, c]))
            for n in range(nc):
                prod = a * Fraction(float(w[i, j, c, n]))
                if not fused:
                    prod = rounded(prod, dtype)
                acc[n] = rounded(acc[n] + prod, dtype)
    return np.array([float(v) for v in acc], dtype=dtype)


# ============================================================ calling a kernel
def call(mod, name, g: Geometry, x, w, out, co, mr, nc, p0, zeros_exact, accumulate):
    """One kernel call for the tile of mr pixels from output pixel p0 (out[0] is pixel p0,
    channel 0)."""
    zeros = np.zeros(max(1, g.KW * g.CI), dtype=x.dtype)
    oy, ox = divmod(p0, g.OW)
    mod.ukernel(name, x, w, zeros, out, co, mr, nc, oy, ox, g.OW, g.sh, g.sw, g.dh, g.dw,
                g.pt, g.pl, zeros_exact, accumulate)


def fresh_out(dtype, mr, nc, co, init_rows):
    """An output buffer: the tile's elements from init_rows (the values accumulate starts
    from), every other element SENTINEL, one spare row after the tile."""
    out = np.full((mr + 1) * co, SENTINEL, dtype=dtype)
    for r in range(mr):
        out[r * co:r * co + nc] = init_rows[r][:nc]
    return out


def tile_of(out, mr, nc, co):
    """(the tile's mr x nc elements, every other element of out)."""
    idx = (np.arange(mr)[:, None] * co + np.arange(nc)[None, :]).ravel()
    rest = np.ones(out.size, dtype=bool)
    rest[idx] = False
    return out[idx].reshape(mr, nc), out[rest]


def int_inputs(g: Geometry, dtype, nr, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, size=(g.H, g.W, g.CI)).astype(dtype)
    w = rng.integers(-4, 5, size=(g.KH, g.KW, g.CI, nr)).astype(dtype)
    init = rng.integers(-50, 51, size=(g.OH * g.OW, nr)).astype(dtype)
    return x, w, init


# ============================================================ the listing
def test_every_extension_lists_its_kernels():
    """One kernel per dtype and tile width in each extension, named
    conv_<dtype>_direct_<MR>x<NR>__<isa>, with the ISA the extension was built for: tiles
    of two 32-byte vectors, and in the AVX-512 build of two and of one 64-byte vector;
    exactly the widths the drivers take (TILE_WIDTHS), the widest being NR."""
    assert KERNELS
    for mod in EXTENSIONS:
        kernels = mod.UKERNELS
        isas = {isa for _, _, _, isa in kernels.values()}
        assert len(isas) == 1, kernels
        isa = isas.pop()
        if mod.__name__.endswith("_avx2"):
            assert isa == "avx2" and mod.SIMD == "avx2+fma"
        elif mod.__name__.endswith("_avx512"):
            assert isa == "avx512" and mod.SIMD == "avx512f"
        else:
            assert isa == {"avx2+fma": "avx2", "vector": "vec"}.get(mod.SIMD, mod.SIMD)
        vbytes = 64 if isa == "avx512" else 32
        vectors = (2, 1) if isa == "avx512" else (2,)
        for dtype in ("float32", "float64"):
            widths = sorted((nr for dt, _, nr, _ in kernels.values() if dt == dtype),
                            reverse=True)
            assert tuple(widths) == mod.TILE_WIDTHS[dtype]  # what the drivers take
            assert widths[0] == mod.NR[dtype]
            assert [nr * np.dtype(dtype).itemsize // vbytes for nr in widths] == list(vectors)
        for name, (dtype, mr, nr, kisa) in kernels.items():
            short = {"float32": "f32", "float64": "f64"}[dtype]
            assert name == f"conv_{short}_direct_{mr}x{nr}__{kisa}"
            assert 1 <= mr <= 8
            assert re.fullmatch(r"[a-z0-9]+", kisa)
    assert not any(hasattr(mod, "MR") for mod in EXTENSIONS)  # dead export, removed


@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_ukernel_checks_its_arguments(mod, name):
    dtype, MR, NR, _ = mod.UKERNELS[name]
    other = next(n for n, v in mod.UKERNELS.items() if v[0] != dtype)
    g = GEOMETRIES[0]
    x, w, init = int_inputs(g, dtype, NR, seed=0)
    zeros = np.zeros(g.KW * g.CI, dtype=dtype)

    def run(name=name, x=x, w=w, zeros=zeros, co=NR, mr=MR, nc=NR, ox=0, out_len=None):
        out = np.zeros(out_len if out_len is not None else MR * co, dtype=dtype)
        mod.ukernel(name, x, w, zeros, out, co, mr, nc, 0, ox, g.OW, 1, 1, 1, 1, 1, 1,
                    True, False)

    run()  # valid
    for bad in (dict(name="conv_nope"), dict(name=other), dict(mr=0), dict(mr=MR + 1),
                dict(nc=0), dict(nc=NR + 1), dict(co=NR - 1, out_len=MR * NR),
                dict(out_len=MR * NR - 1), dict(zeros=zeros[:-1]), dict(zeros=zeros + 1),
                dict(ox=g.OW),
                dict(w=np.zeros((3, 3, g.CI, NR + 1), dtype=dtype))):
        with pytest.raises(ValueError):
            run(**bad)


# ============================================================ exact sweeps
@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("zeros_exact", [True, False], ids=["zeros", "skip"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=lambda g: g.id)
@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_every_tile_position_exact(mod, name, g, zeros_exact, accumulate):
    """From every output pixel, every mr that fits (so interior tiles, tiles in the padding
    and tiles wrapping to the next output row), nc cycling through 1..NR: the tile equals
    the plain loop bit for bit, and nothing outside the tile is written."""
    dtype, MR, NR, _ = mod.UKERNELS[name]
    x, w, init = int_inputs(g, dtype, NR, seed=GEOMETRIES.index(g))
    ref = exact_sums(g, x, w) + (init if accumulate else 0)
    P, co = g.OH * g.OW, NR + 3
    calls = 0
    for p0 in range(P):
        for mr in range(1, min(MR, P - p0) + 1):
            for nc in sorted({NR, 1 + (p0 + 5 * mr) % NR}):
                out = fresh_out(dtype, mr, nc, co, init[p0:p0 + mr])
                call(mod, name, g, x, w, out, co, mr, nc, p0, zeros_exact, accumulate)
                tile, rest = tile_of(out, mr, nc, co)
                assert np.array_equal(tile, ref[p0:p0 + mr, :nc]), (p0, mr, nc)
                assert (rest == SENTINEL).all(), (p0, mr, nc)
                calls += 1
    assert calls >= 3 * P


@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_every_mr_and_nc_exact(mod, name):
    """Every mr in 1..MR and nc in 1..NR, accumulate on and off, at an interior tile, a
    top-left border tile and a tile wrapping to the next output row."""
    dtype, MR, NR, _ = mod.UKERNELS[name]
    g = Geometry("wide", 6, 12, 3, 3, 3, pad=(1, 1, 1, 1))
    x, w, init = int_inputs(g, dtype, NR, seed=5)
    sums = exact_sums(g, x, w)
    starts = {"interior": 2 * g.OW + 1, "border": 0, "wrap": 3 * g.OW - 3}
    assert is_interior(g, starts["interior"], MR) and not is_interior(g, 0, 1)
    for where, p0 in starts.items():
        for accumulate in (False, True):
            ref = sums + (init if accumulate else 0)
            for mr in range(1, MR + 1):
                for nc in range(1, NR + 1):
                    out = fresh_out(dtype, mr, nc, NR, init[p0:p0 + mr])
                    call(mod, name, g, x, w, out, NR, mr, nc, p0, True, accumulate)
                    tile, rest = tile_of(out, mr, nc, NR)
                    assert np.array_equal(tile, ref[p0:p0 + mr, :nc]), (where, mr, nc)
                    assert (rest == SENTINEL).all(), (where, mr, nc)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_non_finite_weights_at_padded_taps_do_not_leak(mod, name, bad):
    """zeros_exact off (some weight is not finite): a tap in the padding is skipped, so a
    NaN/Inf weight there adds nothing (reading zeros would give Inf * 0 = NaN), while the
    same weight at a tap inside the image makes the output non-finite."""
    dtype, MR, NR, _ = mod.UKERNELS[name]
    for g in GEOMETRIES[:3] + GEOMETRIES[5:6]:
        x, w, init = int_inputs(g, dtype, NR, seed=11)
        x[x == 0] = 1  # no 0 * Inf at taps inside the image
        w[0, 0, :, :] = bad  # tap (0, 0): in the padding for the first row and column
        w[g.KH - 1, g.KW - 1, :, ::2] = bad  # the last tap, on every other channel
        with np.errstate(invalid="ignore"):  # Inf - Inf
            ref = exact_sums(g, x, w)
        P, finite = g.OH * g.OW, 0
        for p0 in range(P):
            mr = min(MR, P - p0)
            out = fresh_out(dtype, mr, NR, NR, init[p0:p0 + mr])
            call(mod, name, g, x, w, out, NR, mr, NR, p0, False, False)
            tile, _ = tile_of(out, mr, NR, NR)
            assert np.array_equal(tile, ref[p0:p0 + mr], equal_nan=True), (g.id, p0)
            finite += int(np.isfinite(tile[0]).sum())  # pixel p0
        # every channel has a non-finite weight at tap (0, 0): a finite output means it
        # was in the padding and skipped; the non-finite ones show the weights are used
        assert 0 < finite < P * NR, g.id


# ============================================================ rounding and order
ORDER_CASES = [  # (geometry, start pixel, mr, nc as a fraction of NR)
    (GEOMETRIES[0], 10, 6, 1.0),  # interior tile
    (GEOMETRIES[0], 0, 6, 1.0),   # top-left corner, wraps to the next row
    (GEOMETRIES[2], 7, 4, 0.5),   # dilated, partial tile
    (GEOMETRIES[3], 3, 6, 1.0),   # 1x1
    (GEOMETRIES[7], 0, 8, 1.0),   # stem corner: rows gathered, padded taps as zeros
    (GEOMETRIES[8], 21, 8, 1.0),  # interior tile, mr = MR (few-channel one-pointer path)
]


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_rounding_follows_the_promised_order(mod, name, accumulate):
    """With normal inputs each element is, bit for bit, the sequential sum over taps (i, j)
    then c_in, rounded after every step: with plain multiply-adds or with fused ones (one
    rounding per step), the same model for the whole kernel."""
    dtype, MR, NR, isa = mod.UKERNELS[name]
    models = {True: 0, False: 0}
    rows = 0
    for g, p0, mr, frac in ORDER_CASES:
        mr, nc = min(mr, MR), max(1, int(NR * frac))
        rows += mr
        rng = np.random.default_rng(p0)
        x = rng.standard_normal((g.H, g.W, g.CI)).astype(dtype)
        w = rng.standard_normal((g.KH, g.KW, g.CI, NR)).astype(dtype)
        init = rng.standard_normal((mr, NR)).astype(dtype)
        out = fresh_out(dtype, mr, nc, NR, init)
        call(mod, name, g, x, w, out, NR, mr, nc, p0, True, accumulate)
        tile, _ = tile_of(out, mr, nc, NR)
        for r in range(mr):
            start = init[r] if accumulate else np.zeros(NR, dtype)
            for fused in (False, True):
                want = sequential(g, x, w, start, p0 + r, nc, fused)
                models[fused] += int(np.array_equal(tile[r], want))
    assert rows in models.values(), (isa, models)  # one model matched every row
    if isa == "sse2":
        assert models[False] == rows  # SSE2 has no FMA instruction
    # (the AVX2 build fuses when the compiler contracts a * b + c, as GCC does at -O3,
    # but not in the -O0 CONV_DEBUG build)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=lambda g: g.id)
@pytest.mark.parametrize("mod", EXTENSIONS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_tap_by_tap_equals_direct(mod, g, dtype):
    """The "matmul" driver's use: the tile summed one tap at a time (a 1x1 kernel with
    shifted padding, accumulating from the second tap on) equals the direct call bit for
    bit, normal inputs, every tile start."""
    name = next(n for n, v in mod.UKERNELS.items() if v[0] == dtype)
    _, MR, NR, _ = mod.UKERNELS[name]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((g.H, g.W, g.CI)).astype(dtype)
    w = rng.standard_normal((g.KH, g.KW, g.CI, NR)).astype(dtype)
    zeros = np.zeros(max(1, g.KW * g.CI), dtype=dtype)
    P = g.OH * g.OW
    for p0 in range(P):
        mr, nc = min(MR, P - p0), 1 + p0 % NR
        oy, ox = divmod(p0, g.OW)
        direct = np.zeros(mr * NR, dtype=dtype)
        mod.ukernel(name, x, w, zeros, direct, NR, mr, nc, oy, ox, g.OW, g.sh, g.sw, g.dh,
                    g.dw, g.pt, g.pl, True, False)
        taps = np.full(mr * NR, SENTINEL, dtype=dtype)
        for i in range(g.KH):
            for j in range(g.KW):
                mod.ukernel(name, x, np.ascontiguousarray(w[i:i + 1, j:j + 1]), zeros, taps,
                            NR, mr, nc, oy, ox, g.OW, g.sh, g.sw, g.dh, g.dw,
                            g.pt - i * g.dh, g.pl - j * g.dw, True, i + j > 0)
        assert np.array_equal(tile_of(taps, mr, nc, NR)[0], tile_of(direct, mr, nc, NR)[0]), p0


# ------------------------------------------------------------------ the 1x1 forms
@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_1x1_form_exact_every_mr_and_nc(mod, name):
    """Each kernel's 1x1 form (the tile of a matrix product the drivers run 1x1 problems
    on): every element is the sum over c_in of row r times the weights, for every mr in
    1..MR and nc in 1..NR, C_in from 0, the weights packed or rows of a wider array (NaN
    between them); nothing outside the tile is written."""
    dtype, MR, NR, _ = mod.UKERNELS[name]
    rng = np.random.default_rng(17)
    co = NR + 3  # pixels further apart than a tile is wide
    for K in (0, 1, 5, 37):
        rows = rng.integers(-4, 5, size=(MR, K)).astype(dtype)
        wt = rng.integers(-4, 5, size=(K, NR)).astype(dtype)
        zeros = np.zeros(max(1, K), dtype=dtype)
        ref = rows.astype(np.float64) @ wt.astype(np.float64)
        wide = np.full((K, NR + 7), np.nan, dtype=dtype)  # rows NR + 7 apart, NaN between
        wide[:, :NR] = wt
        for weights in (wt, wide[:, :NR]):
            for mr in range(1, MR + 1):
                for nc in range(1, NR + 1):
                    out = fresh_out(dtype, mr, nc, co, np.full((mr, NR), -1, dtype=dtype))
                    mod.ukernel_1x1(name, np.ascontiguousarray(rows[:mr]), weights, zeros,
                                    out, co, mr, nc)
                    tile, rest = tile_of(out, mr, nc, co)
                    assert np.array_equal(tile, ref[:mr, :nc]), (K, mr, nc)
                    assert (rest == SENTINEL).all(), (K, mr, nc)
        if K:
            with pytest.raises(ValueError, match="contiguous"):
                mod.ukernel_1x1(name, rows, np.zeros((K, 2 * NR), dtype)[:, ::2], zeros,
                                out, co, MR, 1)


@pytest.mark.parametrize("g", [GEOMETRIES[3], Geometry("1x1-deep", 3, 5, 70, 1, 1)],
                         ids=lambda g: g.id)
@pytest.mark.parametrize("mod, name", KERNELS, ids=KERNEL_IDS)
def test_1x1_form_equals_its_kernel(mod, name, g):
    """Normal inputs: the 1x1 form gives its kernel's result (whose rounding and order the
    tests above pin down) bit for bit, at every tile start, full and partial tiles."""
    dtype, MR, NR, _ = mod.UKERNELS[name]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((g.H, g.W, g.CI)).astype(dtype)
    w = rng.standard_normal((1, 1, g.CI, NR)).astype(dtype)
    zeros = np.zeros(max(1, g.CI), dtype=dtype)
    pixels = x.reshape(-1, g.CI)
    P = g.OH * g.OW
    for p0 in range(P):
        mr, nc = min(MR, P - p0), (NR if p0 % 2 else 1 + p0 % NR)
        kernel = np.full(mr * NR, SENTINEL, dtype=dtype)
        call(mod, name, g, x, w, kernel, NR, mr, nc, p0, True, False)
        form = np.full(mr * NR, SENTINEL, dtype=dtype)
        mod.ukernel_1x1(name, pixels[p0:p0 + mr], w[0, 0], zeros, form, NR, mr, nc)
        assert np.array_equal(form, kernel), p0


# ------------------------------------------------------------------ weight packing
@pytest.mark.parametrize("mod", EXTENSIONS, ids=[m.__name__.rsplit(".", 1)[1] for m in EXTENSIONS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 3, 5, 37), (1, 1, 600, 16), (2, 1, 3, 1), (1, 1, 1, 64)])
@pytest.mark.parametrize("threads", [1, 2])
def test_pack_weights_against_numpy(mod, dtype, shape, threads):
    """pack_weights (in C) lays the weights out as the tiles read them, (tiles, KH, KW,
    C_in, NR), zero past C_out, and says whether every weight is finite."""
    kh, kw, ci, co = shape
    rng = np.random.default_rng(1)
    w = rng.standard_normal(shape).astype(dtype)
    for nr in mod.TILE_WIDTHS[dtype]:
        tiles = -(-co // nr)
        want = np.zeros((kh, kw, ci, tiles * nr), dtype)
        want[..., :co] = w
        want = want.reshape(kh, kw, ci, tiles, nr).transpose(3, 0, 1, 2, 4)
        wp = np.full((tiles, kh * kw * ci, nr), np.nan, dtype)
        assert mod.pack_weights(w.reshape(-1, co), wp, threads) is True
        np.testing.assert_array_equal(wp.reshape(want.shape), want)
        for value in (np.inf, -np.inf, np.nan):
            bad = w.copy()
            bad.reshape(-1)[rng.integers(bad.size)] = value
            assert mod.pack_weights(bad.reshape(-1, co), wp, threads) is False


# (N, H, W, C_in, KH, KW, stride, pads (top, left), C_out tiles over the width, extra
# channels): whole 8x8 / 4x4 squares and what they leave (pixels past the last whole tile,
# channels past a square), the 1x1 path at stride 1 and 2, borders, several images
NCHW_CASES = [
    (2, 9, 8, 5, 3, 3, 1, (1, 1), 2, 0),
    (1, 13, 11, 3, 3, 3, 1, (1, 1), 1, 5),
    (3, 6, 7, 16, 1, 1, 1, (0, 0), 3, 3),
    (2, 11, 9, 8, 1, 1, 2, (0, 0), 1, 1),
    (1, 12, 12, 4, 5, 5, 2, (2, 2), 2, 7),
    (2, 4, 4, 2, 3, 3, 1, (0, 0), 1, 0),
]


@pytest.mark.parametrize("mod", EXTENSIONS, ids=[m.__name__.rsplit(".", 1)[1] for m in EXTENSIONS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", NCHW_CASES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_direct_driver_stores_nchw(mod, dtype, case, threads):
    """out_nchw: the direct driver moves its tiles into each channel's plane of an (N,
    C_out, OH, OW) output; the NHWC call's values bit for bit, every element written, with
    weights prepacked or packed in the tasks, at every tile width; the matmul order (whose
    taps accumulate in out) has no such argument."""
    n, h, w_, ci, kh, kw, s, (pt, pl), tiles, extra = case
    rng = np.random.default_rng(sum(case[:6]))
    x = rng.standard_normal((n, h, w_, ci)).astype(dtype)
    oh, ow = (h + 2 * pt - kh) // s + 1, (w_ + 2 * pl - kw) // s + 1
    for nr in mod.TILE_WIDTHS[dtype]:
        co = tiles * nr + extra
        w = rng.standard_normal((kh, kw, ci, co)).astype(dtype)
        ncot = -(-co // nr)
        wp = np.empty((ncot, kh, kw, ci, nr), dtype)
        finite = mod.pack_weights(w.reshape(-1, co), wp.reshape(ncot, -1, nr), 1)
        zeros = np.zeros(kw * ci, dtype)
        want = np.full((n, oh, ow, co), SENTINEL, dtype)
        mod.conv2d_direct(x, wp, zeros, want, s, s, 1, 1, pt, pl, finite, False, threads)
        for blocks_outer in (False, True):
            got = np.full((n, co, oh, ow), np.nan, dtype)
            mod.conv2d_direct(x, wp, zeros, got, s, s, 1, 1, pt, pl, finite, blocks_outer,
                              threads, None, True)
            np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2), err_msg=str(nr))
        got[...] = np.nan
        mod.conv2d_direct(x, np.full_like(wp, np.nan), zeros, got, s, s, 1, 1, pt, pl, True,
                          False, threads, w.reshape(-1, co), out_nchw=True)
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2), err_msg=str(nr))
    with pytest.raises(TypeError):
        mod.conv2d_matmul(x, wp, zeros, got, s, s, 1, 1, pt, pl, True, False, threads, None,
                          True)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=[m.__name__.rsplit(".", 1)[1] for m in EXTENSIONS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", [(2, 5, 7, 9, 37, 1), (1, 3, 14, 14, 70, 1), (3, 17, 5, 6, 8, 2),
                                  (2, 1, 9, 11, 3, 3), (1, 64, 2, 3, 130, 1),
                                  (2, 4, 10, 8, 65, 2)], ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_nchw_is_the_nhwc_call(mod, dtype, case, threads):
    """The NCHW 1x1 driver (pixels in panels of a tile's width, output channels in runs of
    the tile's rows) gives the NHWC direct call's values bit for bit in (N, C_out, OH,
    OW), every element written: panels past the image's end, channel tails, a stride
    (panels gathered from the planes), NaN in the weights; bad shapes are refused."""
    n, ci, h, w_, co, s = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, h, w_, ci)).astype(dtype)
    w = rng.standard_normal((1, 1, ci, co)).astype(dtype)
    w[0, 0, ci // 2, co // 3] = np.nan
    oh, ow = (h - 1) // s + 1, (w_ - 1) // s + 1
    nr = mod.TILE_WIDTHS[dtype][0]
    wp = np.empty((-(-co // nr), 1, 1, ci, nr), dtype)
    mod.pack_weights(w.reshape(ci, co), wp.reshape(wp.shape[0], ci, nr), 1)
    want = np.empty((n, oh, ow, co), dtype)
    mod.conv2d_direct(x, wp, np.zeros(ci, dtype), want, s, s, 1, 1, 0, 0, False, False, threads)
    got = np.full((n, co, oh, ow), SENTINEL, dtype)
    xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    wt = np.ascontiguousarray(w.reshape(ci, co).T)
    zeros = np.zeros(ci, dtype)
    mod.conv2d_pointwise_nchw(xc, wt, zeros, got, s, s, threads)
    assert np.isnan(got[:, co // 3]).all() and not np.isnan(np.delete(got, co // 3, 1)).any()
    np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))
    for bad in [(xc, wt[:, 1:].copy(), zeros, got, s, s),
                (xc, wt, zeros, np.ascontiguousarray(got[:, 1:]), s, s),
                (xc, wt, zeros[1:], got, s, s), (xc, wt, zeros, got, 0, s),
                (xc, wt, zeros, np.empty((n, co, oh + 1, ow), dtype), s, s)]:
        with pytest.raises(ValueError, match="conv2d_pointwise_nchw"):
            mod.conv2d_pointwise_nchw(*bad, threads)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=[m.__name__.rsplit(".", 1)[1] for m in EXTENSIONS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["conv2d_direct", "conv2d_matmul"])
@pytest.mark.parametrize("threads", [1, 2])
def test_drivers_pack_in_their_tasks(mod, dtype, order, threads):
    """Given w, the drivers pack it into wp themselves, one channel tile per chunk of
    tasks (whatever wp held before), and check each tile's weights as they pack it: the
    results are the prepacked call's bit for bit, also with an Inf/NaN weight, whose
    tile then skips its padded taps (the others read zeros there: the same sums)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 7, 3)).astype(dtype)
    pads = dict(pt=1, pl=2)
    for nr in mod.TILE_WIDTHS[dtype]:
        co = 4 * nr + 3  # five channel tiles, the last partial
        w = rng.standard_normal((3, 3, 3, co)).astype(dtype)
        ws = {"finite": w}
        for value in (np.nan, np.inf):
            bad = w.copy()
            bad[0, 0, 1, nr + 2] = value  # a top-left tap: padded for the first pixels
            ws[str(value)] = bad
        for what, wv in ws.items():
            wp = np.empty((5, 3, 3, 3, nr), dtype)
            finite = mod.pack_weights(wv.reshape(-1, co), wp.reshape(5, -1, nr), 1)
            want = np.full((2, 5, 6, co), SENTINEL, dtype)
            getattr(mod, order)(x, wp, np.zeros(9, dtype), want, 1, 1, 1, 1, pads["pt"],
                                pads["pl"], finite, False, threads)
            got = np.full_like(want, SENTINEL)
            junk = np.full_like(wp, np.nan)  # the tasks must overwrite every element
            getattr(mod, order)(x, junk, np.zeros(9, dtype), got, 1, 1, 1, 1, pads["pt"],
                                pads["pl"], True, False, threads, wv.reshape(-1, co))
            assert np.array_equal(got, want, equal_nan=True), (nr, what)
            np.testing.assert_array_equal(junk, wp)
            if what != "finite":  # skipped where the bad tap is padded, used where not
                assert np.isfinite(got[:, 0, 0, nr + 2]).all(), (nr, what)
                assert not np.isfinite(got[:, 2, 3, nr + 2]).any(), (nr, what)
        with pytest.raises(ValueError, match="KH \\* KW \\* C_in"):
            getattr(mod, order)(x, wp, np.zeros(9, dtype), got, 1, 1, 1, 1, 1, 2, True,
                                True, threads, w.reshape(-1, co))
