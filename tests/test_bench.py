"""The benchmark's building blocks that asv shares: the timing loop, the shapes, and the
one home of output sizes and flops (checked against the testing kit's independent
reference); the asv suite itself, imported as asv imports it."""
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

import conv.testing as kit
from conv import _geometry
from conv.bench import planning, shapes, timing

ASV_DIR = Path(__file__).resolve().parents[1] / "asv_bench"
ASV_MODULES = ("common", "conv2d", "baselines", "memory", "network", "plans")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_side_by_side_interleaves_and_counts_calls():
    calls = []
    best = timing.side_by_side(
        [lambda: calls.append("a"), lambda: calls.append("b")], [(3, 3, 0.0), (1, 1, 0.0)])
    assert calls == ["a", "b", "a", "a"]  # interleaved while both want more
    assert len(best) == 2 and all(t >= 0 for t in best)


def test_side_by_side_stops_at_the_time_budget_and_at_the_cap():
    calls = []
    timing.side_by_side([lambda: calls.append(1)], [(2, 1000, 0.0)])
    assert len(calls) == 2  # no budget: the minimum only
    calls.clear()
    timing.side_by_side([lambda: calls.append(1)], [(1, 5, 1e9)])
    assert len(calls) == 5  # budget left: up to the cap


def test_best_of_warms_up_then_times_repeat_calls():
    results = iter(range(100))
    seconds, first = timing.best_of(lambda: next(results), 4)
    assert first == 0 and next(results) == 5 and seconds >= 0


def test_asv_loads_the_same_shapes_and_timing_loop_by_path():
    """asv_bench/benchmarks/common.py loads conv/bench/{shapes,timing}.py by path (older
    commits have no conv.bench): both must import with the standard library alone."""
    root = Path(__file__).resolve().parents[1]
    for name, module in (("shapes", shapes), ("timing", timing)):
        path = root / "conv" / "bench" / f"{name}.py"
        if not path.is_file():
            pytest.skip("not run from a source checkout")
        spec = importlib.util.spec_from_file_location(f"_by_path_{name}", path)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        imported = {line.split()[1].split(".")[0] for line in path.read_text().splitlines()
                    if line.startswith(("import ", "from ")) and not line.startswith("from __")}
        assert imported <= {"gc", "math", "time", "typing"}, (name, imported)
    assert loaded.side_by_side.__doc__ == timing.side_by_side.__doc__


@pytest.mark.parametrize("x_shape,w_shape", shapes.NAMED_SHAPES.values(),
                         ids=list(shapes.NAMED_SHAPES))
def test_named_shapes_parse_back_to_themselves(x_shape, w_shape):
    text = "{},{},{},{}:{},{},{}".format(*x_shape, w_shape[0], w_shape[1], w_shape[3])
    name, xs, ws = shapes.parse_shape(text)
    assert (xs, ws) == (x_shape, w_shape) and shapes.NAMED_SHAPES[name] == (x_shape, w_shape)


@pytest.mark.parametrize("size", [1, 2, 5, 8, 13])
@pytest.mark.parametrize("k,s,d", [(1, 1, 1), (3, 1, 1), (3, 2, 1), (2, 3, 2), (5, 1, 3)])
@pytest.mark.parametrize("padding", ["VALID", "SAME", ((1, 2), (0, 0))])
def test_geometry_agrees_with_the_independent_reference(size, k, s, d, padding):
    """conv._geometry (the front end's sizes) against conv.testing's own computation."""
    x_shape, w_shape = (1, size, 1, 1), (k, 1, 1, 1)  # the width axis always fits
    if padding == "SAME":
        expect = kit.output_shape(x_shape, w_shape, stride=s, padding="SAME", dilation=d)
        assert _geometry.same_out_size(size, s) == expect[1]
        return
    pads = (0, 0) if padding == "VALID" else padding[0]
    padded = size + pads[0] + pads[1]
    if padded < _geometry.span(k, d):
        return  # the kernel does not fit: the front end refuses (tested in test_frontend)
    expect = kit.output_shape(x_shape, w_shape, stride=s, dilation=d,
                              padding=padding if padding == "VALID" else (pads, (0, 0)))
    assert _geometry.out_size(padded, k, s, d) == expect[1]
    assert _geometry.dense_size(padded, k, d) == kit.output_shape(
        (1, padded, 1, 1), (k, 1, 1, 1), dilation=d)[1]
    assert _geometry.flops(expect, w_shape) == 2 * expect[1] * expect[2] * k


def test_table_cells_keep_about_three_digits():
    from conv.bench import report

    assert [report.fmt_ms(v) for v in (None, 0.0123, 0.5, 5.678, 12.34, 12345.6)] == [
        "-", "0.012", "0.500", "5.68", "12.3", "12,346"]
    assert [report._fmt_ratio(v) for v in (None, 0.0123, 0.5, 12.34, 123.4)] == [
        "-", "0.012x", "0.50x", "12.3x", "123x"]


def test_rounds_of_blocks_rotates_and_warms_up():
    calls = []
    best = timing.rounds_of_blocks([lambda: calls.append("a"), lambda: calls.append("b")],
                                   (2, 2, 0.0), 2)
    # round 1: a (warm-up + 2), b (warm-up + 2); round 2 starts with b
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert [len(b) for b in best] == [2, 2]


# ------------------------------------------------------------------ the asv suite
def _drop_benchmarks():
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        del sys.modules[name]


@pytest.fixture
def asv_suite(monkeypatch):
    """Import a module of the asv suite as asv does (the package ``benchmarks`` of
    asv_bench/, as `asv check` run there finds it); the package is dropped afterwards."""
    if not (ASV_DIR / "benchmarks" / "__init__.py").is_file():
        pytest.skip("not run from a source checkout")
    monkeypatch.syspath_prepend(str(ASV_DIR))
    _drop_benchmarks()
    yield lambda name: importlib.import_module(f"benchmarks.{name}")
    _drop_benchmarks()


def _benchmarks(module):
    """(class, names of its asv benchmark methods) for each benchmark class of a module."""
    prefixes = ("time_", "track_", "peakmem_", "mem_")
    found = []
    for name, cls in vars(module).items():
        if isinstance(cls, type) and not name.startswith("_"):
            methods = [m for m in vars(cls) if m.startswith(prefixes)]
            if methods:
                found.append((cls, methods))
    return found


def test_asv_suite_imports(asv_suite):
    """Every module of the suite imports; each benchmark class names its parameters."""
    for name in ASV_MODULES:
        module = asv_suite(name)
        for cls, _ in _benchmarks(module):
            assert cls.__module__ == module.__name__, (name, cls)  # not imported twice
            assert len(cls.params) == len(cls.param_names), cls
    plans = asv_suite("plans")
    assert {cls.__name__ for cls, _ in _benchmarks(plans)} == {
        "CallOverhead", "DeepLayer", "ResNet50Plans"}


def test_asv_plans_run_once_each(asv_suite):
    """Every parameter of plans.py's benchmarks: setup, then one timed-method call (no
    timing checked). Only the PyTorch row may be skipped, and only without PyTorch."""
    plans = asv_suite("plans")
    for cls, methods in _benchmarks(plans):
        for param in cls.params[0]:
            bench = cls()
            try:
                bench.setup(param)
            except NotImplementedError:
                assert param == "torch" and not HAS_TORCH, (cls, param)
                continue
            for method in methods:
                getattr(bench, method)(param)


# ------------------------------------------------------------------ --wisdom's table
def test_wisdom_problems_are_measured_once_per_shape():
    problems = [planning.Problem("a", (1, 5, 5, 2), (3, 3, 2, 4), "float32"),
                planning.Problem("b", (1, 5, 5, 2), (3, 3, 2, 4), "float32"),
                planning.Problem("c", (1, 5, 5, 2), (3, 3, 2, 4), "float64"),
                planning.Problem("d", (1, 5, 5, 2), (3, 3, 2, 4), "float32", stride=2)]
    once = planning.distinct(problems)
    assert [p.name for p in once] == ["a", "c", "d"] and once[0].also == 1
    once[0].method, once[0].planning_seconds = "direct", 0.25
    table = planning.format_table(once).splitlines()
    assert table[0].split() == ["problem", "x", "w", "stride", "pad", "dtype", "method",
                                "planning", "s"]
    assert table[2].split()[-2:] == ["direct", "0.25"] and "(+1 more" in table[2]
    assert table[3].split()[-2:] == ["FAILED", "-"]
    assert "stride" not in planning.format_table(once[:2])  # VALID, stride 1 throughout
