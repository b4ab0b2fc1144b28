"""The compiled methods and Python threads: the GIL is released while they compute, calls
from several Python threads at once are correct and leave their inputs alone, the result
does not depend on threads=, and the portable (non-AVX2) kernel build agrees.

No test here asserts a speed: the machine is shared and has 2 cores. The GIL test measures
how long another Python thread is kept from running, relative to the call's own duration.
"""
from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import conv
import conv.testing as kit
from conv._buildinfo import cpu_has
from conv._frontend import available_cpus
from conv.methods import _compiled

COMPILED = [m for m in ("direct", "matmul") if m in conv.list_methods()]
pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled method (direct, matmul) is "
                                "installed here; build the extension with pip install -e .")


@functools.lru_cache(maxsize=None)
def _inputs(case, dtype, seed=0):
    x, w = kit.make_inputs(case, dtype, seed)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


@functools.lru_cache(maxsize=None)
def _reference(case, dtype, seed=0):
    x, w = _inputs(case, dtype, seed)
    return case.reference(x, w), case.scale(x, w)


def _check_reference(out, case, dtype, seed=0):
    ref, scale = _reference(case, np.dtype(dtype).name, seed)
    kit.assert_conv_close(out, ref, scale, dtype)


# ===================================================================== the GIL
def _gil_blocked_for(fn):
    """Run fn() in this thread while a ticker thread wakes every millisecond to append a
    timestamp (which needs the GIL). Returns (fn's result, its duration, ticks during it,
    the longest stretch of its run without a tick). A call holding the GIL throughout shows one
    stretch as long as itself; a call releasing it shows gaps of a few milliseconds."""
    stamps = []
    stop = threading.Event()
    started = threading.Event()

    def tick():
        started.set()
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        started.wait(5)
        time.sleep(0.02)  # ticking steadily before the call starts
        t0 = time.perf_counter()
        result = fn()
        t1 = time.perf_counter()
    finally:
        stop.set()
        ticker.join(5)
    inside = [s for s in list(stamps) if t0 <= s <= t1]
    points = [t0, *inside, t1]
    gap = max(b - a for a, b in zip(points, points[1:]))
    return result, t1 - t0, len(inside), gap


def _gil_can_block():
    return getattr(sys, "_is_gil_enabled", lambda: True)()


# One call of a few hundred milliseconds with threads=1 (10 GFLOP, float64): ~0.25 s on
# the reference machine when idle, longer when it is busy.
GIL_CASE = kit.Case("gil-long", (4, 32, 32, 256), (5, 5, 256, 256))
MIN_CALL_SECONDS = 0.08
MAX_GIL_IMAGES = 64  # where a fast machine needs a longer call: 16x GIL_CASE's 4 images


def _spot_check(out, x, w, case):
    """A few output pixels of a VALID stride-1 problem, against the exact reference (the
    kit's tolerance: conv's summation order is not NumPy's)."""
    kh, kw = w.shape[:2]
    rng = np.random.default_rng(1)
    for _ in range(4):
        n = rng.integers(out.shape[0])
        oy, ox = rng.integers(out.shape[1]), rng.integers(out.shape[2])
        patch = x[n:n + 1, oy:oy + kh, ox:ox + kw, :]  # the pixel's receptive field
        kit.assert_conv_close(out[n:n + 1, oy:oy + 1, ox:ox + 1], kit.reference_conv2d(patch, w),
                              kit.tolerance_scale(patch, w), out.dtype)


def test_gil_detector_sees_a_call_that_holds_the_gil():
    """Control for the test below: builtin sum over a range runs in C without ever
    releasing the GIL, and the ticker is stalled for essentially the whole call."""
    if not _gil_can_block():
        pytest.skip("free-threaded Python without a GIL: nothing to detect")
    n = 2_000_000
    t = time.perf_counter()
    sum(range(n))
    per_item = max((time.perf_counter() - t) / n, 1e-10)
    n = int(min(max(0.15 / per_item, 1e6), 1e9))  # ~0.15 s of GIL-holding C code
    _, seconds, ticks, gap = _gil_blocked_for(lambda: sum(range(n)))
    assert gap >= 0.8 * seconds, (seconds, ticks, gap)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", COMPILED)
def test_gil_is_released_while_computing(method, threads):
    if not _gil_can_block():
        pytest.skip("free-threaded Python without a GIL: nothing to detect")
    x, w = _inputs(GIL_CASE, "float64")
    conv.conv2d(x[:1, :8, :8], w, method=method, threads=threads)  # warm up (imports)
    for _ in range(3):
        out, seconds, ticks, gap = _gil_blocked_for(
            lambda: conv.conv2d(x, w, method=method, threads=threads)
        )
        if seconds >= MIN_CALL_SECONDS or len(x) >= MAX_GIL_IMAGES:
            break
        # too fast to tell a released GIL from a held one: more images, a longer call
        grow = int(np.ceil(3 * MIN_CALL_SECONDS / max(seconds, 1e-3)))
        x = np.concatenate([x] * grow)[:MAX_GIL_IMAGES]
    if seconds < MIN_CALL_SECONDS:
        pytest.skip(f"this machine ran a {len(x)}-image call in {seconds * 1e3:.0f} ms: too "
                    "fast to tell a released GIL from a held one")
    # Held for the whole kernel, the longest tick-free stretch would be ~the whole call.
    # Released, it is a few ms (the GIL-holding NumPy/Python set-up around the kernel
    # plus scheduling delay on a busy machine).
    assert gap < 0.5 * seconds, (
        f"{method} threads={threads}: another Python thread could not run for "
        f"{gap * 1e3:.0f} ms of a {seconds * 1e3:.0f} ms call ({ticks} ticks): the GIL "
        "looks held while computing"
    )
    assert ticks >= 10, (seconds, ticks, gap)
    assert out.shape == (len(x),) + GIL_CASE.out_shape[1:] and out.dtype == np.float64
    _spot_check(out, x, w, GIL_CASE)


@pytest.mark.parametrize("method", COMPILED)
def test_python_threads_run_alongside_a_call_in_a_worker_thread(method):
    """The other direction: conv2d runs in a worker thread, and the main thread's pure
    Python loop keeps making progress throughout (checked per 5% slice of the call)."""
    if not _gil_can_block():
        pytest.skip("free-threaded Python without a GIL: nothing to detect")
    x, w = _inputs(GIL_CASE, "float64")
    conv.conv2d(x[:1, :8, :8], w, method=method, threads=1)
    done = threading.Event()
    box = {}

    def work():
        box["t0"] = time.perf_counter()
        try:
            box["out"] = conv.conv2d(x, w, method=method, threads=1)
        finally:
            box["t1"] = time.perf_counter()
            done.set()

    stamps = []
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while not done.is_set():  # pure Python: needs the GIL for every iteration
        stamps.append(time.perf_counter())
        for _ in range(200):
            pass
    worker.join(30)
    t0, t1 = box["t0"], box["t1"]
    seconds = t1 - t0
    if seconds < MIN_CALL_SECONDS:
        pytest.skip(f"the call took {seconds * 1e3:.0f} ms: too fast to tell")
    inside = [s for s in stamps if t0 <= s <= t1]
    points = [t0, *inside, t1]
    gap = max(b - a for a, b in zip(points, points[1:]))
    assert gap < 0.5 * seconds, (
        f"{method}: the main thread's Python loop stalled for {gap * 1e3:.0f} ms of a "
        f"{seconds * 1e3:.0f} ms conv2d call in another thread"
    )
    assert len(inside) >= 10, (seconds, len(inside), gap)
    _spot_check(box["out"], x, w, GIL_CASE)


# ======================================================= several Python threads
def _concurrent_jobs():
    """(x, w, kwargs) calls of every kind: both dtypes, float16 and int inputs, strides,
    paddings, dilations, threads 1-3; small ones checked against the reference, medium
    ones (tens of MFLOP) large enough for the kernels to use several threads.
    Several jobs share one input array, some inputs are non-contiguous views. Jobs with
    the same "group" have the same shapes and settings but different data."""
    jobs = []
    small = [
        kit.Case("cc-valid", (2, 9, 11, 3), (3, 3, 3, 5)),
        kit.Case("cc-same-s2", (3, 12, 10, 4), (3, 3, 4, 17), stride=2, padding="SAME"),
        kit.Case("cc-dil", (1, 14, 13, 6), (3, 2, 6, 9), padding=((1, 2), (0, 3)), dilation=2),
        kit.Case("cc-s2-d2", (2, 15, 16, 5), (3, 3, 5, 24), stride=(2, 1), padding="SAME",
                 dilation=(1, 2)),
        kit.Case("cc-1x1", (4, 7, 7, 8), (1, 1, 8, 33)),
    ]
    for case in small:
        for dtype in ("float32", "float64"):
            for seed in (0, 1):
                x, w = _inputs(case, dtype, seed)
                jobs.append(dict(case=case, dtype=dtype, x=x, w=w, kwargs=case.kwargs,
                                 ref=True, group=(case.id, dtype)))
    medium = [
        kit.Case("cc-mid-same", (4, 28, 28, 32), (3, 3, 32, 40), padding="SAME"),
        kit.Case("cc-mid-s2", (2, 40, 40, 24), (5, 5, 24, 30), stride=2, padding=2),
        kit.Case("cc-mid-d2", (1, 48, 44, 16), (3, 3, 16, 50), padding="SAME", dilation=2),
    ]
    for case in medium:
        for dtype in ("float32", "float64"):
            for seed in (0, 1):
                x, w = _inputs(case, dtype, seed)
                jobs.append(dict(case=case, dtype=dtype, x=x, w=w, kwargs=case.kwargs,
                                 ref=False, group=(case.id, dtype)))
    # one input array read by several calls at once, with different filters and settings
    shared = np.random.default_rng(5).uniform(-1, 1, (3, 30, 26, 12))
    for k, (kh, kw, co, stride, padding, dil) in enumerate(
        [(3, 3, 16, 1, "SAME", 1), (5, 3, 7, 2, "VALID", 1), (3, 3, 21, 1, "SAME", 2),
         (1, 1, 64, 1, "VALID", 1), (2, 4, 9, 3, 1, 1)]
    ):
        w = np.random.default_rng(10 + k).uniform(-1, 1, (kh, kw, 12, co))
        kwargs = dict(stride=stride, padding=padding, dilation=dil)
        jobs.append(dict(case=None, dtype="float64", x=shared, w=w, kwargs=kwargs, ref=True,
                         group=("shared", k, 64)))
        jobs.append(dict(case=None, dtype="float32", x=shared[:, ::-1, 1::2],
                         w=np.asfortranarray(w.astype(np.float32)), kwargs=kwargs, ref=True,
                         group=("shared", k, 32)))
    # float16 (computed in float32) and integer inputs (computed in float64)
    jobs.append(dict(case=None, dtype="float16", x=shared.astype(np.float16),
                     w=np.ones((3, 3, 12, 5), np.float16) / 8, kwargs={}, ref=False,
                     group="float16"))
    jobs.append(dict(case=None, dtype="float64",
                     x=np.arange(2 * 9 * 9 * 3, dtype=np.int64).reshape(2, 9, 9, 3) % 7,
                     w=(np.arange(2 * 2 * 3 * 10).reshape(2, 2, 3, 10) % 5 - 2).astype(np.int32),
                     kwargs=dict(padding="SAME"), ref=True, group="int"))
    for k, job in enumerate(jobs):
        job["threads"] = (1, 2, 3)[k % 3]
    return jobs


def _run(job, method):
    return conv.conv2d(job["x"], job["w"], method=method, threads=job["threads"], **job["kwargs"])


@pytest.mark.parametrize("method", [*COMPILED, "auto"])
def test_calls_from_several_python_threads_at_once(method):
    jobs = _concurrent_jobs()
    pristine = [(job["x"].copy(), job["w"].copy()) for job in jobs]
    alone = [_run(job, method) for job in jobs]
    for job, out in zip(jobs, alone):
        if not job["ref"]:
            continue
        ref = kit.reference_conv2d(job["x"], job["w"], **job["kwargs"])
        scale = kit.tolerance_scale(job["x"], job["w"], **job["kwargs"])
        kit.assert_conv_close(out, ref, scale, job["dtype"])

    order = random.Random(0)
    for round_ in range(3):
        # Every job three times per round, groups in shuffled order, a group's members
        # interleaved: neighbouring calls start together on the six workers, so the same
        # call, same-shaped calls on different data and unrelated calls all overlap.
        groups = {}
        for k, job in enumerate(jobs):
            groups.setdefault(job["group"], []).append(k)
        members = list(groups.values())
        order.shuffle(members)
        todo = [k for ks in members for _ in range(3) for k in ks]
        barrier = threading.Barrier(6)

        def call(k):
            return k, _run(jobs[k], method)

        def start_together(_):
            barrier.wait(10)  # all six workers are alive before the first call starts

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(start_together, range(6)))
            results = list(pool.map(call, todo))
        for k, out in results:
            want = alone[k]
            assert out.dtype == want.dtype and out.shape == want.shape, (round_, k)
            assert np.array_equal(out, want), (
                f"{method} round {round_}, job {k} ({jobs[k]['group']}, threads="
                f"{jobs[k]['threads']}): the concurrent result differs from the same call made "
                f"alone at {int((out != want).sum())} of {out.size} elements"
            )
    for job, (x0, w0) in zip(jobs, pristine):  # inputs never modified
        assert np.array_equal(job["x"], x0) and job["x"].dtype == x0.dtype
        assert np.array_equal(job["w"], w0) and job["w"].dtype == w0.dtype


def test_direct_and_matmul_at_once_on_shared_inputs():
    """Both compiled methods, threads=2, on the same writeable arrays from 4 threads at
    once: every result equals the single-threaded one and the arrays are untouched."""
    if len(COMPILED) < 2:
        pytest.skip("needs both direct and matmul")
    case = kit.Case("shared-mixed", (4, 30, 30, 32), (3, 3, 32, 36), stride=1, padding="SAME")
    results = {}
    for dtype in ("float32", "float64"):
        x, w = kit.make_inputs(case, dtype, seed=3)  # writeable
        x0, w0 = x.copy(), w.copy()
        want = conv.conv2d(x, w, method="direct", threads=1, **case.kwargs)
        calls = [(m, t) for m in COMPILED for t in (1, 2)] * 4
        with ThreadPoolExecutor(max_workers=4) as pool:
            outs = list(pool.map(
                lambda mt: conv.conv2d(x, w, method=mt[0], threads=mt[1], **case.kwargs), calls))
        for (m, t), out in zip(calls, outs):
            assert np.array_equal(out, want), (dtype, m, t)
        assert np.array_equal(x, x0) and np.array_equal(w, w0)
        assert x.flags.writeable and w.flags.writeable
        results[dtype] = want
    _check_reference(results["float64"], case, "float64", seed=3)


# ====================================================== thread-count independence
# Each >= 20 MFLOP, so the kernels really split the work 4 ways (FLOPS_PER_THREAD caps
# the team at one thread per 2 MFLOP). C_out never a multiple of 16 except "wide".
THREAD_CASES = [
    kit.Case("t-same", (4, 30, 30, 32), (3, 3, 32, 36), padding="SAME"),
    kit.Case("t-stride2", (4, 48, 47, 24), (5, 5, 24, 50), stride=2),
    kit.Case("t-dilation2", (3, 40, 36, 16), (3, 3, 16, 70), padding="SAME", dilation=2),
    kit.Case("t-s2-d2-explicit", (2, 50, 45, 20), (3, 4, 20, 45), stride=(2, 1),
             padding=((2, 1), (0, 3)), dilation=(2, 2)),
    kit.Case("t-batch1", (1, 64, 64, 32), (3, 3, 32, 33), padding="SAME"),
    kit.Case("t-1x1-wide", (2, 40, 40, 64), (1, 1, 64, 96)),
    # 1x1, unpadded: "direct" runs a matrix product on the kernels' 1x1 forms (tiles
    # cross output rows), "matmul" tile by tile on the kernels themselves: same bits
    kit.Case("t-1x1-rows", (4, 30, 29, 96), (1, 1, 96, 70)),
    kit.Case("t-1x1-s2", (4, 80, 70, 64), (1, 1, 64, 96), stride=2),  # the same, strided
    # padding after the image: outputs past it read none, so not a matrix product
    kit.Case("t-1x1-pad-after", (2, 60, 50, 64), (1, 1, 64, 70), padding=((0, 3), (0, 2))),
    # the packed weights outweigh x and make 17-34 channel tiles: a call's tasks pack them
    kit.Case("t-pack-in-tasks", (1, 9, 9, 64), (3, 3, 64, 530), padding="SAME"),
]


@pytest.fixture
def team_sizes(monkeypatch):
    """The thread counts the compiled drivers were actually given (spying on threads_for)."""
    seen = []
    real = _compiled.threads_for

    def spy(p):
        n = real(p)
        seen.append(n)
        return n

    monkeypatch.setattr(_compiled, "threads_for", spy)
    return seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", THREAD_CASES, ids=lambda c: c.id)
def test_results_do_not_depend_on_threads(case, dtype, team_sizes):
    assert 2 * case.macs >= 20_000_000 and 2 * case.macs >= 4 * _compiled.FLOPS_PER_THREAD
    x, w = _inputs(case, dtype, 1)
    base = conv.conv2d(x, w, method=COMPILED[0], threads=1, **case.kwargs)
    _check_reference(base, case, dtype, 1)
    for method in COMPILED:
        for threads in (1, 2, 3, 4, 2, 4):  # repeated: a race shows up only sometimes
            del team_sizes[:]
            out = conv.conv2d(x, w, method=method, threads=threads, **case.kwargs)
            # The kernel was really given that many threads (dilated problems run as
            # several phase sub-problems; the largest gets the full team).
            assert team_sizes and max(team_sizes) == min(threads, available_cpus()), (
                method, threads, team_sizes)
            assert np.array_equal(out, base), (
                f"{method} threads={threads} differs from {COMPILED[0]} threads=1 at "
                f"{int((out != base).sum())} of {out.size} elements (max |diff| "
                f"{float(np.abs(out - base).max()):.3g})"
            )


def test_a_call_whose_weights_outweigh_its_input_packs_them_in_its_tasks(monkeypatch):
    """A direct or matmul call whose packed weights outweigh x (batch 1, a small image,
    many channels) has the driver's tasks pack them, each channel tile just before its
    use, not a pass of its own (pack_checked); the same bits as a plan's prepacked ones."""
    case = THREAD_CASES[-1]
    for dtype in ("float32", "float64"):
        x, w = _inputs(case, dtype, 4)
        planned = {m: conv.plan(x.shape, w, method=m, **case.kwargs)(x) for m in COMPILED}

        def refuse(*args, **kwargs):
            raise AssertionError("the weights were packed in a pass of their own")

        with monkeypatch.context() as patch:
            patch.setattr(_compiled, "pack_checked", refuse)
            for m in COMPILED:
                for threads in (1, 2):
                    out = conv.conv2d(x, w, method=m, threads=threads, **case.kwargs)
                    assert np.array_equal(out, planned[m]), (dtype, m, threads)


def test_1x1_tiles_run_on_across_the_images_of_a_batch(monkeypatch):
    """A 1x1 kernel without padding whose output rows are every sh-th input row runs the
    batch as one image of N * H rows, its tiles crossing from one image into the next;
    each image's result is its own call's bit for bit (direct and matmul, 1 and 2
    threads). An odd height at stride 2 keeps the images apart."""
    seen = []
    real = _compiled.batch_as_rows

    def spy(p, out):
        x, o = real(p, out)
        seen.append(x.shape[0])
        return x, o

    monkeypatch.setattr(_compiled, "batch_as_rows", spy)
    rng = np.random.default_rng(8)
    for shape, stride, folded in (((3, 7, 7, 40), 1, True), ((3, 14, 10, 24), 2, True),
                                  ((3, 15, 15, 24), 2, False)):
        x = rng.standard_normal(shape)
        w = rng.standard_normal((1, 1, shape[3], 50))
        for m in COMPILED:
            for threads in (1, 2):
                del seen[:]
                out = conv.conv2d(x, w, method=m, stride=stride, threads=threads)
                assert seen == [1 if folded else shape[0]], (shape, m, seen)
                for n in range(shape[0]):
                    one = conv.conv2d(x[n:n + 1], w, method=m, stride=stride, threads=threads)
                    assert np.array_equal(out[n:n + 1], one), (shape, m, threads, n)


# =============================================================== portable build
PORTABLE_CASES = [
    kit.Case("p-valid", (2, 13, 12, 7), (3, 3, 7, 19)),
    kit.Case("p-same-s2-d2", (2, 17, 15, 5), (3, 3, 5, 24), stride=2, padding="SAME", dilation=2),
    kit.Case("p-explicit", (1, 20, 18, 9), (2, 5, 9, 33), stride=(1, 2), padding=((1, 0), (2, 2))),
    kit.Case("p-1x1-rows", (2, 9, 11, 21), (1, 1, 21, 19)),
    THREAD_CASES[0],
]

_PORTABLE_SCRIPT = """
import json, sys
import numpy as np
import conv
from conv.methods import _compiled
data = dict(np.load(sys.argv[1]))
cases = json.loads(sys.argv[2])
methods = json.loads(sys.argv[3])
out = {}
for k, kwargs in enumerate(cases):
    kwargs = {key: (tuple(map(tuple, v)) if key == "padding" and isinstance(v, list) else v)
              for key, v in kwargs.items()}
    for dtype in ("float32", "float64"):
        x, w = data[f"x{k}{dtype}"], data[f"w{k}{dtype}"]
        for m in methods:
            for t in (1, 2):
                out[f"{m}-{t}-{k}{dtype}"] = conv.conv2d(x, w, method=m, threads=t, **kwargs)
np.savez(sys.argv[4], **out)
print(json.dumps({"impl": _compiled.kernels.__name__, "conv": conv.__file__}))
"""


def _run_other_build(tmp_path, env_flag):
    """PORTABLE_CASES through every compiled method at 1 and 2 threads in a subprocess
    whose environment sets ``env_flag`` (another kernel build); (module it loaded,
    inputs, outputs)."""
    data, cases = {}, []
    for k, case in enumerate(PORTABLE_CASES):
        cases.append(case.kwargs)
        for dtype in ("float32", "float64"):
            x, w = _inputs(case, dtype, 2)
            data[f"x{k}{dtype}"], data[f"w{k}{dtype}"] = x, w
    np.savez(tmp_path / "in.npz", **data)
    env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}
    env[env_flag] = "1"
    script = tmp_path / "other_build.py"
    script.write_text(textwrap.dedent(_PORTABLE_SCRIPT))
    # run outside the source tree, which would shadow the installed package
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in.npz"), json.dumps(cases),
         json.dumps(COMPILED), str(tmp_path / "out.npz")],
        cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return info["impl"], data, np.load(tmp_path / "out.npz")


def test_portable_build_agrees(tmp_path):
    if not cpu_has("AVX2", "FMA3"):
        pytest.skip("this CPU lacks AVX2/FMA, so the portable kernels are already the ones "
                    "in use: there is no second build to compare")
    if os.environ.get("CONV_FORCE_PORTABLE", "").strip() not in ("", "0"):
        pytest.skip("CONV_FORCE_PORTABLE is set for this run: both builds are the portable one")
    if _compiled.kernels.__name__ == "conv.methods._kernels":
        pytest.skip("no wider build is installed here: both builds are the portable one")
    impl, data, port = _run_other_build(tmp_path, "CONV_FORCE_PORTABLE")
    assert impl == "conv.methods._kernels", impl
    for k, case in enumerate(PORTABLE_CASES):
        for dtype in ("float32", "float64"):
            x, w = data[f"x{k}{dtype}"], data[f"w{k}{dtype}"]
            ref, scale = _reference(case, dtype, 2)
            wide = conv.conv2d(x, w, method=COMPILED[0], threads=2, **case.kwargs)
            first = port[f"{COMPILED[0]}-1-{k}{dtype}"]
            for m in COMPILED:
                for t in (1, 2):
                    got = port[f"{m}-{t}-{k}{dtype}"]
                    assert got.dtype == np.dtype(dtype) and got.shape == case.out_shape
                    kit.assert_conv_close(got, ref, scale, dtype)
                    # not bitwise: the wide builds contract multiply-adds into FMAs
                    kit.assert_conv_close(got, wide, scale, dtype)
                    # within the portable build, the same summation order everywhere
                    assert np.array_equal(got, first), (case.id, dtype, m, t)


def test_avx2_build_agrees_with_the_avx512_build_bit_for_bit(tmp_path):
    """The AVX-512 build runs the same code on 64-byte vectors: 32 (float32) or 16
    (float64) channels a tile instead of 16 or 8, every element summed in the same order
    with the same fused multiply-adds, so both builds agree bit for bit."""
    if _compiled.kernels.__name__ != "conv.methods._kernels_avx512":
        pytest.skip(f"the AVX-512 build is not the one in use here "
                    f"({_compiled.kernels.__name__})")
    impl, data, avx2 = _run_other_build(tmp_path, "CONV_NO_AVX512")
    assert impl == "conv.methods._kernels_avx2", impl
    for k, case in enumerate(PORTABLE_CASES):
        for dtype in ("float32", "float64"):
            x, w = data[f"x{k}{dtype}"], data[f"w{k}{dtype}"]
            for m in COMPILED:
                wide = conv.conv2d(x, w, method=m, threads=2, **case.kwargs)
                for t in (1, 2):
                    got = avx2[f"{m}-{t}-{k}{dtype}"]
                    assert np.array_equal(got, wide), (case.id, dtype, m, t)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
@pytest.mark.skipif(conv.build_info()["threading"] != "pthreads",
                    reason="only conv's pthreads pool starts workers in a forked child")
def test_forked_children_keep_their_threads_and_do_not_hang():
    """conv's pool is fork-safe: a child forked after its parent ran a multi-thread call
    (and a grandchild forked after the child's) starts workers of its own, so it neither
    hangs (as a GNU OpenMP child would) nor loses its threads, and results are unchanged."""
    code = textwrap.dedent(
        """
        import os, sys, numpy as np, conv
        from conv.methods import _compiled
        given = []
        real = _compiled.threads_for
        _compiled.threads_for = lambda p: given.append(real(p)) or given[-1]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 40, 40, 16)); w = rng.standard_normal((3, 3, 16, 32))
        want = conv.conv2d(x, w, method="direct", threads=2)  # a real 2-thread call
        assert given == [2], given
        assert _compiled.kernels.pool_threads_seen(2) == 2

        def child():
            ok = all(np.array_equal(conv.conv2d(x, w, method=m, threads=2), want)
                     for m in ("direct", "matmul"))
            # and the child's own workers really take tasks (not just the caller alone)
            seen = _compiled.kernels.pool_threads_seen(2)
            return 0 if (ok and given[-1] == 2 and seen == 2) else 3

        pid = os.fork()
        if pid == 0:
            code = child()
            if code == 0:
                gpid = os.fork()                     # after the child's own 2-thread call
                if gpid == 0:
                    os._exit(child())
                _, st = os.waitpid(gpid, 0)
                code = os.waitstatus_to_exitcode(st)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tempfile.gettempdir())
    assert run.returncode == 0, (run.returncode, run.stdout + run.stderr)


# ==================================================================== Ctrl-C
@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32",
                    reason="sends SIGINT to a child process")
def test_ctrl_c_interrupts_a_long_compiled_call():
    """SIGINT during a long direct/matmul/winograd call (seconds on one core here) raises
    KeyboardInterrupt promptly at 1 and 2 threads, returns no partial result, and leaves
    the interpreter and the kernels usable. The bound checked is loose (5 s after the
    signal, against a call of several seconds); the latency measured is milliseconds."""
    code = textwrap.dedent(
        """
        import json, os, signal, sys, threading, time
        import numpy as np, conv
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 128, 128, 256)).astype(np.float32)
        w5 = rng.standard_normal((5, 5, 256, 512)).astype(np.float32)
        w3 = rng.standard_normal((3, 3, 256, 512)).astype(np.float32)
        x3 = np.concatenate([x, x])
        xs, ws = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2))
        report = []
        for method, x, w in (("direct", x, w5), ("matmul", x, w5), ("winograd", x3, w3)):
            for threads in (1, 2):
                sent = []
                def fire():
                    time.sleep(0.3)
                    sent.append(time.perf_counter())
                    os.kill(os.getpid(), signal.SIGINT)
                threading.Thread(target=fire).start()
                out = None
                try:
                    out = conv.conv2d(x, w, method=method, threads=threads)
                    outcome = "finished"
                except KeyboardInterrupt:
                    outcome = "interrupted"
                done = time.perf_counter()
                while not sent:  # the call ended before the signal: let it land here
                    time.sleep(0.01)
                after = conv.conv2d(xs, ws, method=method, threads=threads)
                report.append({"method": method, "threads": threads, "outcome": outcome,
                               "latency": done - sent[0], "partial": out is not None,
                               "after_ok": bool((after == 18.0).all())})
        print(json.dumps(report))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tempfile.gettempdir())
    assert run.returncode == 0, run.stdout + run.stderr
    for r in json.loads(run.stdout.strip().splitlines()[-1]):
        assert r["outcome"] == "interrupted" and not r["partial"], r
        assert r["latency"] < 5.0, r
        assert r["after_ok"], r
