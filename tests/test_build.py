"""The compiled build: build_info, its threads, thread-count independence, and the serial variant."""
from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

import conv
import conv.testing as kit
from conftest import vector_and_scalar_runs

REPO = Path(__file__).resolve().parents[1]
COMPILED = [m for m in ("direct", "matmul", "winograd") if m in conv.list_methods()]


def _assert_accurate(method, out, case, x, w, dtype):
    """Within the error bound the method declares (componentwise or normwise)."""
    kit.assert_conv_accurate(out, case.reference(x, w), case.scale(x, w), dtype,
                             conv.get_method(method).accuracy)


# ================================================================ build_info
def test_build_info_keys_and_types():
    info = conv.build_info()
    types = {
        "version": str,
        "python": str,
        "numpy": str,
        "threading": str,
        "serial_build": bool,
        "default_threads": int,
        "methods": list,
    }
    for key, typ in types.items():
        assert key in info, key
        assert isinstance(info[key], typ), (key, info[key])
    assert info["version"] == conv.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["numpy"] == np.__version__
    assert info["methods"] == conv.list_methods()
    assert info["default_threads"] >= 1
    assert info["threading"] in ("pthreads", "openmp", "serial")
    assert not info["serial_build"] or info["threading"] == "serial"
    assert not any(k.startswith(("openmp", "omp_")) for k in info)  # no stale OpenMP lines
    assert isinstance(info["cpu_avx2_fma"], bool)
    # no contradictory lines: the loaded build is one of the installed ones, and the AVX2
    # build is loaded exactly when the CPU has AVX2+FMA and it is installed (and not refused)
    assert info["kernels"].split(" (")[0] in info["kernel_builds"].split(", ")
    assert isinstance(info["cpu_avx512f"], bool)
    avx2_installed = "_kernels_avx2" in info["kernel_builds"]
    avx512_installed = "_kernels_avx512" in info["kernel_builds"]
    from conv._env import env_flag as _env_flag

    forced = _env_flag("CONV_FORCE_PORTABLE")
    avx512 = (info["cpu_avx512f"] and info["cpu_avx2_fma"] and avx512_installed and not forced
              and not _env_flag("CONV_NO_AVX512"))
    assert ("_kernels_avx512" in info["kernels"]) == avx512
    assert ("_kernels_avx2" in info["kernels"]) == (
        info["cpu_avx2_fma"] and avx2_installed and not forced and not avx512)
    assert "built_for_avx2_fma" not in info


def _serial_requested():
    from conv._env import env_flag as _env_flag

    return _env_flag("CONV_SERIAL") or _env_flag("CONV_DISABLE_OPENMP")


@pytest.mark.skipif(_serial_requested(),
                    reason="CONV_SERIAL is set: this is meant to be the serial build")
def test_this_build_is_parallel():
    info = conv.build_info()
    assert info["threading"] != "serial", "built serial; see the build log's warning"
    if os.name == "posix":
        assert info["threading"] == "pthreads"  # conv's own pool (conv/methods/_pool.h)
        from conv.methods import _compiled

        # a worker really takes tasks: two tasks that wait for each other ran on 2 threads
        assert _compiled.kernels.pool_threads_seen(2) == 2


def test_default_threads_in_build_info(monkeypatch):
    from conv._frontend import available_cpus

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert conv.build_info()["default_threads"] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "99999999999999999999")  # capped, not reported
    assert conv.build_info()["default_threads"] == available_cpus()


def test_show_config_prints_every_key(capsys):
    conv.show_config()
    out = capsys.readouterr().out
    for key in conv.build_info():
        assert key in out


# ================================================================ threads
# Large enough (>~10 MFLOP) that a method may not cap its thread count for a small problem,
# with several output-channel tiles in both dtypes.
THREAD_CASES = [
    kit.Case("threads-many-rows", (3, 17, 19, 5), (3, 3, 5, 20), padding="SAME"),
    kit.Case("threads-strided", (2, 16, 15, 3), (3, 2, 3, 24), stride=2, padding=1, dilation=2),
    kit.Case("threads-article", (16, 32, 32, 3), (3, 3, 3, 16), padding="SAME"),
    kit.Case("threads-channel-tiles", (8, 24, 24, 4), (3, 3, 4, 40), padding="SAME"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", THREAD_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("method", COMPILED)
def test_thread_count_does_not_change_results(method, case, dtype):
    x, w = kit.make_inputs(case, dtype, seed=2)
    one = conv.conv2d(x, w, method=method, threads=1, **case.kwargs)
    _assert_accurate(method, one, case, x, w, dtype)
    for threads in (2, 2, 2, 2, 3, 8):  # repeated: a data race shows up only sometimes
        many = conv.conv2d(x, w, method=method, threads=threads, **case.kwargs)
        assert np.array_equal(one, many), (
            f"threads={threads} differs from threads=1 at "
            f"{int((one != many).sum())} of {one.size} elements"
        )


# ================================================================ the serial build
def _compiler_missing():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is None


@pytest.mark.slow
def test_serial_build_gives_the_same_results(tmp_path):
    if importlib.util.find_spec("Cython") is None:
        pytest.skip('Cython is not installed, so the serial variant cannot be built: '
                    'pip install "Cython>=3.0" (or pip install -e ".[test]")')
    if _compiler_missing():
        pytest.skip("no C compiler found, so the serial variant cannot be built")
    if not COMPILED:
        pytest.skip("no compiled method is listed in this installation")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "conv", src / "conv",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__", "*.html"))
    env = {**os.environ, "CONV_SERIAL": "1"}
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                           env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "serial" in (build.stdout + build.stderr).lower()  # the build says so

    # this build's results, with one thread
    cases = [kit.CASES[1], kit.get_case("k3-same-s2-d2"), THREAD_CASES[0], THREAD_CASES[3]]
    data = tmp_path / "data"
    data.mkdir()
    for k, case in enumerate(cases):
        for dtype in ("float32", "float64"):
            x, w = kit.make_inputs(case, dtype, seed=4)
            np.save(data / f"x{k}{dtype}.npy", x)
            np.save(data / f"w{k}{dtype}.npy", w)
            for method in COMPILED:
                out = conv.conv2d(x, w, method=method, threads=1, **case.kwargs)
                np.save(data / f"ours-{method}{k}{dtype}.npy", out)

    script = textwrap.dedent(
        f"""
        import sys, json
        sys.path.insert(0, {str(src)!r})
        import numpy as np
        import conv
        from conv import _buildinfo
        assert conv.__file__.startswith({str(src)!r}), conv.__file__
        assert _buildinfo.__file__.startswith({str(src)!r}), _buildinfo.__file__
        assert _buildinfo.serial() is True
        assert conv.build_info()["threading"] == "serial"
        cases = {[(c.stride, c.padding, c.dilation) for c in cases]!r}
        for k, (stride, padding, dilation) in enumerate(cases):
            for dtype in ("float32", "float64"):
                x = np.load({str(data)!r} + f"/x{{k}}{{dtype}}.npy")
                w = np.load({str(data)!r} + f"/w{{k}}{{dtype}}.npy")
                for method in {COMPILED!r}:
                    out = conv.conv2d(x, w, method=method, threads=2, stride=stride,
                                      padding=padding, dilation=dilation)
                    np.save({str(data)!r} + f"/serial-{{method}}{{k}}{{dtype}}.npy", out)
        compiled = sorted(
            m.__file__ for name, m in sys.modules.items()
            if name.startswith("conv.") and (getattr(m, "__file__", "") or "").endswith(".so")
        )
        print(json.dumps(compiled))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={k: v for k, v in os.environ.items()
                                                      if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stdout + run.stderr
    loaded = __import__("json").loads(run.stdout.strip().splitlines()[-1])
    assert loaded and all(f.startswith(str(src)) for f in loaded), loaded

    for k, case in enumerate(cases):
        for dtype in ("float32", "float64"):
            x = np.load(data / f"x{k}{dtype}.npy")
            w = np.load(data / f"w{k}{dtype}.npy")
            for method in COMPILED:
                ours = np.load(data / f"ours-{method}{k}{dtype}.npy")
                serial = np.load(data / f"serial-{method}{k}{dtype}.npy")
                assert serial.dtype == ours.dtype and serial.shape == ours.shape
                _assert_accurate(method, serial, case, x, w, dtype)
                # same code, same summation order: the builds agree bit for bit
                assert np.array_equal(serial, ours), (method, case.id, dtype)


# ===================================================== the plain-C tile (no vector extensions)
_TILE_DRIVER = r"""
#include <stdio.h>
#include "_ukernel.h"
/* Deterministic problems through one float tile: every mr, several nc, paddings,
   strides, dilations, accumulate on/off, non-finite weights; prints the outputs. */
int main(void) {
    enum { H = 7, W = 11, CI = 3, KH = 3, KW = 3 };
    static float x[H * W * CI], wp[KH * KW * CI * CONV_NR_F], zeros[KW * CI], out[CONV_MR * 40];
    int i, mr, nc, s, d, acc, fin, pos;
    const int oys[3] = {0, 3, H - 1}, oxs[3] = {0, 4, W - 3};
    for (i = 0; i < H * W * CI; i++) x[i] = (float)((i * 37) % 23) / 7.0f - 1.5f;
    for (fin = 1; fin >= 0; fin--) {
        for (i = 0; i < KH * KW * CI * CONV_NR_F; i++) wp[i] = (float)((i * 11) % 17) / 5.0f - 1.6f;
        if (!fin) wp[5] = 1.0f / 0.0f;
        for (mr = 1; mr <= CONV_MR; mr++)
        for (nc = 1; nc <= CONV_NR_F; nc += 5)
        for (s = 1; s <= 2; s++)
        for (d = 1; d <= 2; d++)
        for (acc = 0; acc <= 1; acc++)
        for (pos = 0; pos < 9; pos++) {
            for (i = 0; i < CONV_MR * 40; i++) out[i] = (float)(i % 3);
            /* first pixel at the top, middle or bottom row and the left, middle or right
               column (an output grid of H x W, pads 1 and 1): at ox = W-3 the tile
               crosses into the next output row */
            CONV_UKERNEL_F32(x, wp, zeros, out, 40, mr, nc, oys[pos / 3], oxs[pos % 3], W, H, W,
                             CI, KH, KW, s, s, d, d, 1, 1, fin, acc);
            for (i = 0; i < CONV_MR * 40; i++) printf("%.9g\n", out[i]);
        }
    }
    return 0;
}
"""


def test_scalar_tile_matches_vector_tile(tmp_path):
    """The plain-C tile that compilers without vector extensions get (forced here with
    CONV_NO_VECTOR_EXT) computes what the vector tile computes, NaN/Inf included."""
    outputs = vector_and_scalar_runs(tmp_path, _TILE_DRIVER, ["-std=c99", "-O2"])
    vec, sca = outputs["vector"], outputs["scalar"]
    assert vec.size == sca.size > 0
    assert np.array_equal(np.isnan(vec), np.isnan(sca))
    assert np.array_equal(np.isinf(vec), np.isinf(sca))
    finite = np.isfinite(vec)
    # The same taps in the same order; the builds may round differently only where a
    # compiler contracts a multiply-add. Each output adds at most KH * KW * CI = 27
    # products (|x| <= 1.65, |w| <= 1.6) to a start value <= 2, so the two differ by
    # less than 2 * 27 roundings of that size in float32.
    k = 3 * 3 * 3
    tol = 2 * k * np.finfo(np.float32).eps * (k * 1.65 * 1.6 + 2)
    diff = np.abs(sca[finite] - vec[finite])
    assert diff.max() <= tol, (float(diff.max()), tol)


def test_fma_loop_counts_its_flops_and_checks_arguments():
    """The main job's "% peak" divides by this loop's flops: the count must be exact
    (2 flops per lane per FMA, CONV_PEAK_ACC accumulators) for any thread count."""
    from conv.methods import _compiled

    kernels = _compiled.kernels
    lanes = kernels.PEAK_LANES
    if kernels.SIMD in ("avx2+fma", "avx", "sse2", "neon"):  # GCC/Clang vector extensions
        assert lanes == {"float32": 8, "float64": 4}
    if kernels.SIMD == "avx512f":  # 64-byte vectors
        assert lanes == {"float32": 16, "float64": 8}
    for dtype in ("float32", "float64"):
        for threads in (1, 2, 3):
            # iterations are split into 8 tasks per thread: 800 -> 100 per task
            flops = kernels.fma_loop(dtype, 800, threads)
            assert flops == 2 * 12 * lanes[dtype] * 100 * 8 * threads, (dtype, threads)
    with pytest.raises(ValueError, match="dtype"):
        kernels.fma_loop("float16", 8, 1)
    with pytest.raises(ValueError, match="threads"):
        kernels.fma_loop("float32", 8, 0)


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
                    reason="/proc/cpuinfo flags are the independent reference on Linux x86-64")
def test_cpu_has_agrees_with_the_kernels_flags_in_proc_cpuinfo():
    """conv's own run-time detection (it picks the AVX2 build) says what the Linux kernel
    says of this CPU (the kernel lists a feature only when it also saves its registers)."""
    from conv._buildinfo import cpu_has

    with open("/proc/cpuinfo") as fh:
        flags = next(line for line in fh if line.startswith("flags")).split(":", 1)[1].split()
    assert cpu_has("AVX2") == ("avx2" in flags)
    assert cpu_has("FMA3") == ("fma" in flags)
    assert cpu_has("AVX512F") == ("avx512f" in flags)
    assert conv.build_info()["cpu_avx512f"] == ("avx512f" in flags)
    assert cpu_has("AVX2", "FMA3") == ("avx2" in flags and "fma" in flags)
    assert cpu_has() is True
    with pytest.raises(ValueError, match="unknown CPU feature 'SSE9'"):
        cpu_has("SSE9")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_tile_width_gives_the_same_bits(dtype):
    """The drivers take every width in TILE_WIDTHS (the AVX-512 build: two and one vector
    a row); each output element is summed in the same order whatever the width, so the
    results agree bit for bit, and a width the build lacks is refused."""
    from conv.methods import _compiled

    kernels = _compiled.kernels
    rng = np.random.default_rng(5)
    for co in (1, 7, 16, 33):
        x = rng.standard_normal((2, 11, 9, 5)).astype(dtype)
        w = rng.standard_normal((3, 2, 5, co)).astype(dtype)
        zeros = np.zeros(2 * 5, dtype)
        outs = []
        for nr in kernels.TILE_WIDTHS[dtype]:
            for driver in (kernels.conv2d_direct, kernels.conv2d_matmul):
                out = np.empty((2, 10, 8, co), dtype)
                driver(x, _compiled.pack_weights(w, nr), zeros, out, 1, 1, 1, 1, 1, 0,
                       True, False, 2)
                outs.append(out)
        ref = kit.reference_conv2d(x, w, padding=((1, 0), (0, 0)))
        kit.assert_conv_close(outs[0], ref, kit.tolerance_scale(x, w, padding=((1, 0), (0, 0))),
                              dtype)
        for out in outs[1:]:
            assert np.array_equal(out, outs[0]), (co, dtype)
    bad = 3
    with pytest.raises(ValueError, match="channels wide"):
        kernels.conv2d_direct(x, _compiled.pack_weights(w, bad), zeros,
                              np.empty((2, 10, 8, 33), dtype), 1, 1, 1, 1, 1, 0, True, False, 1)


def test_tile_width_rule():
    """Narrower tiles only where the widest would compute at least 1.5x the channels."""
    from conv.methods import _compiled

    for dtype in ("float32", "float64"):
        widths = _compiled.kernels.TILE_WIDTHS[dtype]
        for co in range(1, 100):
            nr = _compiled.tile_width(dtype, co)
            assert nr in widths
            padded = {n: -(-co // n) * n for n in widths}
            if nr != widths[0]:
                assert padded[widths[0]] >= 1.5 * padded[nr]
            else:
                assert all(padded[widths[0]] < 1.5 * padded[n] for n in widths[1:])
    if _compiled.kernels.TILE_WIDTHS["float32"] == (32, 16):  # the AVX-512 build
        assert [_compiled.tile_width("float32", co) for co in (16, 20, 48, 64)] == [16, 32, 32, 32]
