"""The benchmark's building blocks that asv shares: the timing loop, the shapes, and the
one home of output sizes and flops (checked against the testing kit's independent
reference); the asv suite itself, imported as asv imports it."""
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import conv
import conv.testing as kit
from conv import _geometry
from conv.bench import cli, frameworks, machine, network, planning, shapes, timing

ASV_DIR = Path(__file__).resolve().parents[1] / "asv_bench"
ASV_MODULES = ("common", "conv2d", "baselines", "memory", "network", "plans")
HAS_TF = importlib.util.find_spec("tensorflow") is not None
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


def test_rounds_of_blocks_pauses_after_the_named_blocks(monkeypatch):
    calls = []
    monkeypatch.setattr(timing.time, "sleep", lambda s: calls.append(("sleep", s)))
    timing.rounds_of_blocks([lambda: calls.append("a"), lambda: calls.append("b")],
                            (1, 1, 0.0), 2, [0.0, 0.25])
    # b's block (warm-up + 1 call) is followed by its pause, a's by none
    assert calls == ["a", "a", "b", "b", ("sleep", 0.25), "b", "b", ("sleep", 0.25), "a", "a"]


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


# ------------------------------------------------------------------ --network's layers
#: MobileNet-v2's depthwise 3x3 layers: (input H = W, channels, stride, count)
MOBILENET_V2_DEPTHWISE = [(112, 32, 1, 1), (112, 96, 2, 1), (56, 144, 1, 1), (56, 144, 2, 1),
                          (28, 192, 1, 2), (28, 192, 2, 1), (14, 384, 1, 3), (14, 384, 1, 1),
                          (14, 576, 1, 2), (14, 576, 2, 1), (7, 960, 1, 2), (7, 960, 1, 1)]


def test_mobilenet_v2_layers():
    """torchvision's mobilenet_v2 features: 52 conv layers (the stem, 17 depthwise, 16
    expand, 17 project, the final 1x1), 0.30 G multiply-adds per 224x224 image (torchvision
    publishes 0.30 GFLOPS counted as MACs, with the classifier's 1.3 M), each layer's input
    what the previous one makes."""
    layers = [shapes.layer(entry) for entry in shapes.NETWORKS["mobilenet_v2"]]
    assert sum(layer.count for layer in layers) == 52
    assert layers[0] == ("features.0 stem 3x3/2", 224, 3, 3, 2, 1, 32, 1, 1)
    assert layers[-1] == ("features.18 1x1", 7, 320, 1, 1, 0, 1280, 1, 1)
    depthwise = [layer for layer in layers if layer.groups > 1]
    assert all(layer.depthwise and layer.k == 3 and layer.pad == 1 and layer.c_out == layer.c_in
               for layer in depthwise)
    assert [(d.size, d.c_in, d.stride, d.count) for d in depthwise] == MOBILENET_V2_DEPTHWISE
    assert sum(d.count for d in depthwise) == 17
    pointwise = [layer for layer in layers if layer.k == 1]
    assert sum(p.count for p in pointwise) == 34 and {p.pad for p in pointwise} == {0}
    macs, size, c = 0, 224, 3
    for layer in layers:
        assert (layer.size, layer.c_in) == (size, c), layer.name
        out = kit.output_shape((1, size, size, c), (layer.k, layer.k, 1, layer.c_out),
                               stride=layer.stride, padding=((layer.pad,) * 2,) * 2)
        macs += layer.count * out[1] * out[2] * layer.k ** 2 * (c // layer.groups) * layer.c_out
        size, c = out[1], layer.c_out
    assert round(macs / 1e9, 2) == 0.30


def test_layer_rows_of_a_grouped_layer():
    """A depthwise layer's row: w (K, K, 1, C), the grouped flops, and bytes = x, w and the
    output as the arrays conv makes them; plain 8-tuples are layers with groups 1."""
    rows = {r.layer: r for r in network.layer_rows("mobilenet_v2", 8, "float32")}
    dw = rows["features.2 dw 3x3/2"]
    assert (dw.x_shape, dw.w_shape, dw.groups, dw.stride, dw.padding) == (
        [8, 112, 112, 96], [3, 3, 1, 96], 96, 2, 1)
    assert dw.kind == "depthwise 3x3" and rows["features.18 1x1"].kind == "1x1"
    assert dw.flops == 2 * 8 * 56 * 56 * 9 * 96
    assert dw.bytes == 4 * (8 * 112 * 112 * 96 + 9 * 96 + 8 * 56 * 56 * 96)
    x, w = network._layer_inputs(2, 9, 6, 3, 12, "float64", seed=0, groups=3)
    out = conv.conv2d(x, w, stride=2, padding=((1, 1), (1, 1)), groups=3)
    assert w.shape == (3, 3, 2, 12)
    assert network.call_bytes(x.shape, w.shape, out.shape, "float64") == (
        x.nbytes + w.nbytes + out.nbytes)
    assert shapes.layer(("a", 5, 4, 1, 1, 0, 8, 3)).groups == 1


def _row(name, count, w_shape, groups, seconds, nbytes=10**6, flops=10**6, absent=None):
    """A measured row without measuring: 10^6 bytes and flops a call."""
    return network.LayerRow("net", name, count, 1, "float32", [1, 8, 8, w_shape[2] * groups],
                            list(w_shape), 1, 1, flops, groups=groups, bytes=nbytes,
                            seconds=seconds, absent=absent or {})


def test_gb_per_s_per_layer_kind_and_depthwise_totals():
    """GB/s = bytes / seconds / 1e9 per layer and per total; the per-kind totals; the
    depthwise line's ratios are auto / baseline."""
    assert network.gb_per_s(2e9, 0.5) == 4.0 and network.gb_per_s(1, None) is None
    assert [network.fmt_gb_per_s(v) for v in (None, 0.01234, 12.34, 1234.5)] == [
        "-", "0.0123", "12.3", "1234"]
    secs = {"auto": 5e-4, "planned": 5e-4, "tf.nn.conv2d": 1e-3, "torch": 2.5e-4}
    rows = [_row("dw", 2, (3, 3, 1, 8), 8, dict(secs)),
            _row("pw", 1, (1, 1, 8, 8), 1, dict(secs, auto=1e-4))]
    assert rows[0].gb_per_s == pytest.approx(
        {"auto": 2.0, "planned": 2.0, "tf.nn.conv2d": 1.0, "torch": 4.0})
    assert network.totals(rows)["auto"] == pytest.approx(2 * 5e-4 + 1e-4)
    lines = network.format_table(rows, None).splitlines()
    assert "GB/s" in lines[0]
    assert [line.split()[6] for line in lines[2:4]] == ["2", "10"]  # after "% peak"
    kinds = {line.split(" total")[0]: line for line in lines if " total (" in line}
    assert set(kinds) == {"depthwise 3x3", "1x1"} and "(2 layers)" in kinds["depthwise 3x3"]
    assert lines[-1].startswith("total (3 layers)")
    assert kinds["depthwise 3x3"].split()[-2:] == ["2.00x", "0.50x"]  # vs TF, vs torch
    line = network.depthwise_line(rows)
    assert line.startswith("depthwise layers total (2 layers, 1 distinct): auto 1.00 ms, 2 GB/s")
    assert "auto / TF 0.50 (TF 2.00 ms, 1 GB/s)" in line and "auto / torch 2.00" in line
    assert network.depthwise_line(rows[1:]) is None
    one_kind = network.format_table(rows[1:], None)
    assert "1x1 total" not in one_kind and "total (1 layers)" in one_kind


def test_a_baseline_absent_from_a_layer_is_na_with_its_reason():
    secs = {"auto": 5e-4, "planned": 5e-4, "tf.nn.conv2d": 1e-3, "torch": 2.5e-4}
    why = {"tf.nn.conv2d": "UnimplementedError: no grouped conv here"}
    rows = [_row("grouped", 1, (3, 3, 2, 8), 4, {k: v for k, v in secs.items()
                                                    if k != "tf.nn.conv2d"}, absent=why),
            _row("pw", 1, (1, 1, 8, 8), 1, dict(secs))]
    assert network.totals(rows)["tf.nn.conv2d"] is None
    table = network.format_table(rows, None)
    grouped = next(line for line in table.splitlines() if line.startswith("grouped "))
    assert grouped.split()[-4:] == ["n/a", "0.250", "-", "0.50x"]
    assert ("n/a: tf.nn.conv2d failed on grouped (UnimplementedError: no grouped conv here)"
            in table)


def test_copy_bandwidth_counts_read_and_write():
    assert 0.1 < machine.copy_bandwidth(nbytes=1 << 20, repeat=2) < 1e4


def test_wisdom_table_has_a_groups_column_for_grouped_problems():
    problems = [planning.Problem("dw", (1, 5, 5, 4), (3, 3, 1, 4), "float32", groups=4),
                planning.Problem("dense", (1, 5, 5, 4), (3, 3, 4, 4), "float32")]
    assert planning.Problem("dw", (1, 5, 5, 4), (3, 3, 1, 4), "float32").key != problems[0].key
    table = planning.format_table(problems).splitlines()
    assert "groups" in table[0].split() and table[2].split()[3] == "4"
    assert "groups" not in planning.format_table(problems[1:])


@pytest.mark.parametrize("groups,c_out", [(6, 6), (6, 12), (2, 4)])
def test_the_baselines_compute_grouped_layers_as_conv_does(groups, c_out):
    """frameworks' TensorFlow (tf.nn.depthwise_conv2d when w's C_in is 1) and PyTorch
    callables on a grouped layer: conv.conv2d's result."""
    x, w = network._layer_inputs(2, 7, 6, 3, c_out, "float32", seed=1, groups=groups)
    expect = conv.conv2d(x, w, stride=2, padding=((1, 1), (1, 1)), groups=groups)
    torch = frameworks.torch()
    if torch is not None:
        call, to_nhwc = frameworks.torch_callable(torch, x, w, 1, 2, 1, groups=groups)
        np.testing.assert_allclose(to_nhwc(call()), expect, rtol=1e-4, atol=1e-5)
    if frameworks.tensorflow_available():
        got = frameworks.tensorflow_callable(x, w, 2, 1, groups=groups)()
        np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)


#: A stand-in for MobileNet-v2: the stem, a depthwise 3x3, a depthwise 3x3/2 with two
#: filters a channel, a grouped 3x3 that is not depthwise, a 1x1
TINY_GROUPED = (("stem 3x3/2", 9, 3, 3, 2, 1, 8, 1),
                shapes.Layer("dw 3x3", 5, 8, 3, 1, 1, 8, 2, groups=8),
                shapes.Layer("dw 3x3/2 x2", 5, 8, 3, 2, 1, 16, 1, groups=8),
                shapes.Layer("grouped 3x3", 5, 8, 3, 1, 1, 4, 1, groups=2),
                ("pw 1x1", 5, 8, 1, 1, 0, 8, 3))


def _run(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_network_with_grouped_layers_json(capsys, monkeypatch):
    """--network --quick --json on a tiny grouped network: groups, bytes and GB/s per row,
    the copy bandwidth, auto and the plan within float32's error of TensorFlow."""
    import json

    monkeypatch.setitem(shapes.NETWORKS, "mobilenet_v2", TINY_GROUPED)
    monkeypatch.setattr(machine, "copy_bandwidth", lambda *a, **k: 12.5)
    rc, out, err = _run(capsys, ["--network", "mobilenet_v2", "--batch", "2", "--quick",
                                 "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["copy_bandwidth_gb_per_s"] == 12.5
    rows = {r["layer"]: r for r in doc["rows"]}
    assert [r["groups"] for r in doc["rows"]] == [1, 8, 8, 2, 1]
    dw = rows["dw 3x3/2 x2"]
    assert dw["w_shape"] == [3, 3, 1, 16] and dw["absent"] == {}
    assert dw["bytes"] == 4 * (2 * 5 * 5 * 8 + 9 * 16 + 2 * 3 * 3 * 16)
    for r in doc["rows"]:
        assert r["gb_per_s"]["auto"] == pytest.approx(r["bytes"] / r["seconds"]["auto"] / 1e9)
        if HAS_TF:
            assert r["max_rel_err_vs_tf"] < 1e-5 and r["planned_max_rel_err_vs_tf"] < 1e-5


def test_network_table_says_why_tensorflow_is_absent_from_a_layer(capsys, monkeypatch):
    """A TensorFlow that refuses a grouped layer: n/a and its reason, no crash; the
    depthwise line and the per-kind totals."""
    def refusing(x, w, stride=1, pad=0, groups=1):
        if groups > 1 and w.shape[2] > 1:
            def call():
                raise RuntimeError("grouped conv2d is not supported on CPU")
            return call
        return lambda: np.zeros(1)  # not compared: its errors are not in the table

    monkeypatch.setitem(shapes.NETWORKS, "mobilenet_v2", TINY_GROUPED)
    monkeypatch.setattr(machine, "copy_bandwidth", lambda *a, **k: 12.5)
    monkeypatch.setattr(frameworks, "tensorflow_available", lambda: True)
    monkeypatch.setattr(frameworks, "init_tensorflow", lambda threads: "stand-in")
    monkeypatch.setattr(frameworks, "tensorflow_callable", refusing)
    rc, out, err = _run(capsys, ["--network", "mobilenet_v2", "--batch", "1", "--quick"])
    assert rc == 0, err
    assert "copies 12.5 GB/s" in out and "GB/s" in out.split("\n\n")[1].splitlines()[1]
    grouped = next(line for line in out.splitlines() if line.startswith("grouped 3x3 "))
    assert "n/a" in grouped.split()
    assert ("n/a: tf.nn.conv2d failed on grouped 3x3 (RuntimeError: grouped conv2d is not "
            "supported on CPU), so the totals with it have no TF time") in out
    assert "depthwise 3x3 total (3 layers)" in out and "total (8 layers)" in out
    assert "depthwise layers total (3 layers, 2 distinct): auto " in out
    assert "tf.nn.depthwise_conv2d on the depthwise layers" in out


def test_the_suite_pauses_after_contenders_whose_threads_spin(monkeypatch):
    """run_case lets a framework-backed contender's idle threads stop spinning before the
    next one runs: a pause after the numpy and tensorflow methods and after each
    framework's baseline, none after conv's own methods."""
    from conv.bench import measure, reference

    events = []
    monkeypatch.setattr(measure.time, "sleep", lambda s: events.append(("pause", s)))
    for cls in (measure.Method, measure.TensorFlowBaseline, measure.TorchBaseline):
        def spy(self, *args, _real=cls.measure, **kwargs):
            events.append(("timed", self.name))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "measure", spy)

    class Quiet:
        def update(self, *args, **kwargs):
            pass

        def line(self, *args, **kwargs):
            pass

    case = measure.Workload("tiny", (1, 6, 6, 2), (3, 3, 2, 3), "float32")
    methods = ["direct", "numpy"] + (["tensorflow"] if HAS_TF else []) + ["matmul"]
    opts = measure.Options(threads=1, repeat=1, with_torch=HAS_TORCH)
    ref = reference.Reference("exact", "exact", lambda x, w: kit.reference_conv2d(x, w))
    rows = measure.run_case(case, methods, ref, opts, Quiet())
    assert all(r.status == "ok" for r in rows), [(r.method, r.message) for r in rows]
    spinning = {"numpy", "tensorflow", measure.TF_BASELINE, measure.TORCH_BASELINE}
    timed = [name for kind, name in events if kind == "timed"]
    assert timed == [r.method for r in rows]
    for k, (kind, name) in enumerate(events):
        if kind == "timed":
            paused = k + 1 < len(events) and events[k + 1][0] == "pause"
            assert paused == (name in spinning), (name, events)
    assert all(s == measure.SPIN_PAUSE_SECONDS for kind, s in events if kind == "pause")
