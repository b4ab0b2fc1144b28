"""The main job, ``python -m conv``: run in-process through main(argv) and as a subprocess,
always on tiny shapes with --quick so the whole file stays well under a minute."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import conv
import conv.testing
from conv.bench import cli, frameworks, machine, measure, planning, reference, shapes

TINY = ["--quick", "--shape", "4,8,8,3:3,3,4"]  # python runs 1 of 4 images: extrapolated
HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # plugin warnings, if any


def run(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, argv):
    """(rc, parsed JSON, stderr + a summary of failed or flagged rows, for messages)."""
    rc, out, err = run(capsys, list(argv) + ["--json"])
    doc = json.loads(out)
    bad = [f"{r['method']} {r['dtype']}: {r['status']} {r['message']} rel={r['max_rel_err']}"
           for r in doc["rows"] if r["status"] == "failed" or r["within_tolerance"] is False]
    return rc, doc, err + "\n".join(bad)


def table_rows(out):
    """Method names in the first column of the article table(s)."""
    names, inside = [], False
    for line in out.splitlines():
        if line.startswith("method "):
            inside = True
            continue
        if inside and line.startswith("---"):
            continue
        if inside and line.strip() and not line.startswith(("%", "the article")):
            names.append(line.split("  ")[0].strip())
        elif inside:
            inside = False
    return names


def suite_labels(out):
    """The method column of the --suite table's rows (not of its notes)."""
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("shape "))
    dtype, method = lines[i].index("dtype"), lines[i].index("method")
    return [line[method:].split("  ")[0] for line in lines[i + 2:]
            if line and (not line[:method].strip()
                         or line[dtype:dtype + 7] in ("float32", "float64"))]


def expected_methods():
    names = [m for m in conv.list_methods() if HAS_TF or m != "tensorflow"]
    return names + ["auto"]


# ------------------------------------------------------------------ default run
def test_table_has_every_method_and_the_extrapolation_label(capsys):
    rc, out, err = run(capsys, TINY)
    assert rc == 0, out + err
    rows = table_rows(out)
    for name in expected_methods():
        assert any(r == name or r.startswith(name + " (") for r in rows), (name, rows)
    py = next(line for line in out.splitlines() if line.startswith("python "))
    assert "*" in py
    assert "extrapolated linearly from 1 of 4 images" in out
    assert "--full" in out
    if HAS_TF:
        assert "vs TF" in out and "tf.nn.conv2d" in rows
        assert "reference: tf.nn.conv2d" in out
    assert "vs python" in out
    assert "Traceback" not in out + err
    assert "conv:" in err  # progress goes to stderr


def test_json_keys_and_small_errors(capsys):
    rc, doc, err = run_json(capsys, TINY + ["--dtype", "both"])
    assert rc == 0, err
    for key in ("machine", "rows", "reference", "settings", "ceiling_gflops", "cases"):
        assert key in doc
    for key in conv.build_info():
        assert key in doc["machine"]
    assert set(doc["ceiling_gflops"]) == {"float32", "float64"}
    rows = [r for r in doc["rows"] if r["status"] == "ok"]
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    names = {r["method"] for r in rows}
    assert set(expected_methods()) <= names
    for r in rows:
        for key in ("method", "dtype", "ms", "gflops", "max_abs_err", "max_rel_err",
                    "speedup_vs_python", "extrapolated", "x_shape", "w_shape", "flops"):
            assert key in r
        assert r["ms"] > 0 and r["gflops"] > 0
        assert r["max_rel_err"] <= reference.TOLERANCE[r["dtype"]], r
        assert r["within_tolerance"] is True
        assert r["flops"] == 2 * 4 * 6 * 6 * 3 * 3 * 3 * 4
        if HAS_TF:
            assert r["speedup_vs_tensorflow"] > 0
    py = [r for r in rows if r["method"] == "python"]
    assert py and all(r["extrapolated"] and r["measured_images"] == 1 for r in py)
    assert all(not r["extrapolated"] for r in rows if r["method"] != "python")


def test_full_runs_python_on_the_whole_batch(capsys):
    rc, doc, err = run_json(capsys, TINY + ["--full", "--methods", "python,numpy"])
    assert rc == 0, err
    py = next(r for r in doc["rows"] if r["method"] == "python")
    assert not py["extrapolated"] and py["measured_images"] == 4


def test_methods_filter(capsys):
    rc, out, err = run(capsys, TINY + ["--methods", "numpy,auto"])
    assert rc == 0, out + err
    rows = table_rows(out)
    methods = [r for r in rows if r not in ("tf.nn.conv2d", "torch")]  # the baselines
    assert methods[0] == "numpy" and methods[1].startswith("auto")
    assert len(methods) == 2
    assert "vs python" not in out  # python was not run


def test_pytorch_column_when_installed_and_a_line_when_not(capsys, monkeypatch):
    rc, out, err = run(capsys, TINY + ["--methods", "numpy"])
    assert rc == 0, out + err
    header = next(line for line in out.splitlines() if line.startswith("method "))
    assert ("vs torch" in header) == HAS_TORCH
    assert ("torch" in table_rows(out)) == HAS_TORCH
    assert ("PyTorch: not installed" in out) == (not HAS_TORCH)
    monkeypatch.setattr(frameworks, "torch", lambda: None)
    rc, out, err = run(capsys, TINY + ["--methods", "numpy"])
    assert rc == 0, out + err
    header = next(line for line in out.splitlines() if line.startswith("method "))
    assert "PyTorch: not installed" in out and "vs torch" not in header
    assert "torch" not in table_rows(out)


def test_peak_is_the_fma_loop_of_the_loaded_build(capsys):
    rc, out, err = run(capsys, TINY + ["--methods", "numpy"])
    assert rc == 0, out + err
    from conv.methods import _compiled

    foot = next(line for line in out.splitlines() if line.startswith("% peak:"))
    assert "FMA loop" in foot and f"({_compiled.kernels.SIMD})" in foot
    assert "matmul" not in foot


def test_two_tensorflow_rows_are_explained(capsys):
    if not HAS_TF:
        pytest.skip("TensorFlow is not installed: there is neither TensorFlow row")
    rc, out, err = run(capsys, TINY + ["--methods", "tensorflow"])
    assert rc == 0, out + err
    rows = table_rows(out)
    assert "tf.nn.conv2d" in rows and "tensorflow" in rows
    assert any(line.startswith("tf.nn.conv2d: TensorFlow called directly") for line in
               out.splitlines())


def test_without_tensorflow_uses_the_exact_reference(capsys, monkeypatch):
    monkeypatch.setattr(frameworks, "tensorflow_available", lambda: False)
    rc, out, err = run(capsys, TINY)
    assert rc == 0, out + err
    assert "TensorFlow: not installed" in out
    assert "conv.testing.reference_conv2d" in out
    rows = table_rows(out)
    assert "tf.nn.conv2d" not in rows and "tensorflow" not in rows
    assert "vs TF" not in out
    rc, doc, err = run_json(capsys, TINY)
    assert doc["reference"]["name"] == "exact"
    assert doc["tensorflow_available"] is False
    for r in doc["rows"]:
        assert r["max_rel_err"] <= reference.TOLERANCE[r["dtype"]]
        assert r["speedup_vs_tensorflow"] is None
    # Naming TensorFlow's method is then a usage error.
    rc, out, err = run(capsys, TINY + ["--methods", "tensorflow"])
    assert rc == 2 and "TensorFlow" in err and len(err.strip().splitlines()) == 1


def test_a_failing_or_dtype_limited_plugin_is_reported_not_fatal(capsys):
    def boom(problem):
        raise RuntimeError("kaput")

    conv.register_method(conv.Method(name="boom_test", kernel=boom))
    conv.register_method(conv.Method(
        name="f32only_test", dtypes=("float32",),
        kernel=lambda p: np.zeros(p.out_shape, dtype=p.dtype)))
    try:
        rc, out, err = run(capsys, TINY + ["--dtype", "float64",
                                           "--methods", "numpy,boom_test,f32only_test"])
    finally:
        conv.unregister_method("boom_test")
        conv.unregister_method("f32only_test")
    assert rc == 1
    assert "FAILED: boom_test" in out and "kaput" in out
    assert "not run: f32only_test" in out and "float32 only" in out
    assert "Traceback" not in out + err


def test_wrong_results_are_flagged(capsys):
    conv.register_method(conv.Method(
        name="wrong_test", kernel=lambda p: np.ones(p.out_shape, dtype=p.dtype)))
    try:
        rc, out, err = run(capsys, TINY + ["--methods", "wrong_test"])
    finally:
        conv.unregister_method("wrong_test")
    assert rc == 1
    assert "!" in next(line for line in out.splitlines() if line.startswith("wrong_test"))
    assert "above tolerance" in out


# ------------------------------------------------------------------------ suite
def test_suite(capsys):
    rc, out, err = run(capsys, ["--suite", "--quick", "--repeat", "1",
                                "--shape", "2,8,8,3:3,3,4", "--shape", "2,6,6,4:1,1,5"])
    assert rc == 0, out + err
    header = next(line for line in out.splitlines() if line.startswith("shape "))
    for col in ("method", "dtype", "ms", "GFLOP/s", "% peak", "max rel err"):
        assert col in header
    assert ("vs TF" in header) == HAS_TF
    assert ("vs torch" in header) == HAS_TORCH
    assert "float64" in out and "float32" in out
    labels = suite_labels(out)
    assert "python" not in labels  # excluded unless named
    assert any(label.startswith("auto (") for label in labels)
    rc, doc, err = run_json(capsys, ["--suite", "--quick", "--repeat", "1",
                                     "--shape", "2,8,8,3:3,3,4", "--methods", "python,numpy"])
    assert rc == 0, err
    assert doc["mode"] == "suite"
    assert {r["method"] for r in doc["rows"] if r["kind"] != "baseline"} == {"python", "numpy"}
    if HAS_TORCH:
        torch_rows = [r for r in doc["rows"] if r["method"] == "torch"]
        assert torch_rows and all(r["max_rel_err"] <= reference.TOLERANCE[r["dtype"]]
                                  for r in torch_rows)


SUITE_TINY = ["--suite", "--quick", "--repeat", "1", "--shape", "2,8,8,3:3,3,4"]


def test_suite_has_a_planned_row_after_auto(capsys):
    """--suite: right after auto's row a "planned" row, a plan made with effort="measure"
    and then called like the others; the row names the plan's method, its planning time is
    in a note and in the JSON (never in its time)."""
    rc, out, err = run(capsys, SUITE_TINY + ["--methods", "numpy,auto"])
    assert rc == 0, out + err
    labels = suite_labels(out)
    planned = [label for label in labels if label.startswith("planned (")]
    assert len(planned) == 2, labels  # float32, float64
    for label in planned:
        assert label[len("planned ("):-1] in conv.list_methods(), label
        assert labels[labels.index(label) - 1].startswith("auto ("), labels
    note = next(line for line in out.splitlines() if line.startswith("planned: "))
    assert 'conv.plan(x.shape, w, effort="measure")' in note and "Planning took" in note
    assert "2,8,8,3:3,3,4 float32" in note and "2,8,8,3:3,3,4 float64" in note
    assert 'planned: a plan made with conv.plan(effort="measure")' in out  # the header

    rc, doc, err = run_json(capsys, SUITE_TINY + ["--dtype", "float32", "--methods", "auto"])
    assert rc == 0, err
    assert doc["settings"]["planned"] is True
    kinds = [r["kind"] for r in doc["rows"] if r["kind"] != "baseline"]
    assert kinds == ["auto", "planned"]
    row = next(r for r in doc["rows"] if r["kind"] == "planned")
    assert row["method"] == "planned" and row["status"] == "ok"
    assert row["label"] == f"planned ({row['chosen']})"
    assert row["chosen"] in conv.list_methods() and row["within_tolerance"] is True
    assert row["planning_seconds"] > 0 and row["ms"] > 0
    assert isinstance(row["plan_times"][row["chosen"]], float)


def test_suite_without_auto_has_no_planned_row(capsys):
    rc, doc, err = run_json(capsys, SUITE_TINY + ["--dtype", "float32", "--methods", "numpy"])
    assert rc == 0, err
    assert doc["settings"]["planned"] is False
    assert not [r for r in doc["rows"] if r["kind"] == "planned"]


def test_article_run_has_no_planned_row(capsys):
    rc, doc, err = run_json(capsys, TINY + ["--methods", "numpy,auto"])
    assert rc == 0, err
    assert not [r for r in doc["rows"] if r["kind"] == "planned"]


def test_measured_plans_leave_the_wisdom_as_it_was(tmp_path):
    """A planned row's plan is measured afresh (not taken from wisdom), and the wisdom in
    memory is as it was before: the "auto" rows are not steered by the bench's plans."""
    conv.forget_wisdom()
    try:
        w = np.ones((1, 1, 1, 2), np.float32)
        user = conv.plan((1, 3, 3, 1), w, threads=1, effort="measure")  # the user's wisdom
        assert conv.export_wisdom(tmp_path / "before.json") == 1
        again = planning.measured_plan((1, 3, 3, 1), w, 1)
        other = planning.measured_plan((2, 5, 5, 1), w, 1)
        assert "measured" in again.reason and "measured" in other.reason
        assert again.method in conv.list_methods() and user.method in conv.list_methods()
        assert conv.export_wisdom(tmp_path / "after.json") == 1
        assert ((tmp_path / "after.json").read_text()
                == (tmp_path / "before.json").read_text())
    finally:
        conv.forget_wisdom()


# ----------------------------------------------------------------------- wisdom
def test_wisdom_writes_a_file_import_wisdom_takes(capsys, tmp_path):
    """--wisdom FILE: each distinct problem planned once (both dtypes by default), a line
    per problem, and a file conv.import_wisdom takes whole; nothing left in memory."""
    path = tmp_path / "wisdom.json"
    conv.forget_wisdom()
    try:
        rc, out, err = run(capsys, ["--wisdom", str(path), "--quick",
                                    "--shape", "2,8,8,3:3,3,4", "--shape", "2,6,6,4:1,1,5",
                                    "--shape", "2,8,8,3:3,3,4"])
        assert rc == 0, out + err
        lines = [line for line in out.splitlines() if line.startswith("2,")]
        assert len(lines) == 4, out  # 2 distinct shapes x 2 dtypes
        for line in lines:
            cells = line.split()
            assert cells[-3] in ("float32", "float64") and cells[-2] in conv.list_methods()
            float(cells[-1])  # planning seconds
        assert "(+1 more of this shape)" in out
        assert f"wrote 4 wisdom entries to {path}" in out
        assert "Traceback" not in out + err
        assert conv.export_wisdom(tmp_path / "memory.json") == 0  # left as it was: empty
        assert conv.import_wisdom(path) == {"imported": 4, "ignored": 0}
    finally:
        conv.forget_wisdom()


def test_wisdom_defaults_to_the_suite_in_both_dtypes(tmp_path):
    s = cli.settings(["--wisdom", str(tmp_path / "w.json"), "--quick"])
    problems = cli._wisdom_problems(s)
    assert [(p.name, p.x_shape, p.w_shape) for p in problems[::2]] == [
        (name, *shapes.NAMED_SHAPES[name]) for name in shapes.SUITE_SHAPES]
    assert [p.dtype for p in problems] == ["float32", "float64"] * len(shapes.SUITE_SHAPES)
    s = cli.settings(["--wisdom", str(tmp_path / "w.json"), "--dtype", "float64"])
    assert {p.dtype for p in cli._wisdom_problems(s)} == {"float64"}


def test_wisdom_for_a_network(capsys, monkeypatch, tmp_path):
    """--wisdom with --network: the network's distinct layers at each --batch size."""
    monkeypatch.setitem(shapes.NETWORKS, "resnet50", TINY_NET)
    path = tmp_path / "net.json"
    conv.forget_wisdom()
    try:
        rc, out, err = run(capsys, ["--network", "resnet50", "--batch", "1,2",
                                    "--wisdom", str(path)])
        assert rc == 0, out + err
        assert "resnet50's conv layers" in out and "stride" in out.splitlines()[1]
        assert out.count("stem 3x3/2") == 2 and out.count("(+1 more of this shape)") == 2
        assert f"wrote 4 wisdom entries to {path}" in out
        assert conv.import_wisdom(path) == {"imported": 4, "ignored": 0}
    finally:
        conv.forget_wisdom()


WISDOM_BAD = [
    ["--wisdom", "{tmp}/w.json", "--methods", "numpy"],
    ["--wisdom", "{tmp}/w.json", "--json"],
    ["--wisdom", "{tmp}/w.json", "--repeat", "3"],
    ["--wisdom", "{tmp}/w.json", "--full"],
    ["--wisdom", "{tmp}/w.json", "--plot", "{tmp}/x.png"],
    ["--wisdom", "{tmp}/w.json", "--accuracy"],
    ["--wisdom", "{tmp}/w.json", "--batch", "1"],
    ["--wisdom", "{tmp}"],                     # a directory
    ["--wisdom", "{tmp}/no/such/dir/w.json"],
    ["--wisdom", "/dev/null"],                 # not a regular file
    ["--wisdom"],
]


@pytest.mark.parametrize("argv", WISDOM_BAD, ids=lambda a: " ".join(a))
def test_wisdom_bad_options(capsys, monkeypatch, tmp_path, argv):
    monkeypatch.setattr(planning, "measure_and_write", lambda *a, **k: pytest.fail("measured"))
    rc, out, err = run(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conv: error:"), err
    assert list(tmp_path.iterdir()) == []  # nothing written


# ------------------------------------------------------------------------- plot
@pytest.mark.skipif(not HAS_MPL, reason="matplotlib not installed")
def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "chart.png"
    rc, out, err = run(capsys, TINY + ["--methods", "numpy,python", "--plot", str(path)])
    assert rc == 0, out + err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(frameworks, "matplotlib_available", lambda: False)
    rc, out, err = run(capsys, TINY + ["--plot", str(tmp_path / "x.png")])
    assert rc == 2
    assert err.strip().splitlines() == [err.strip()]
    assert 'pip install "conv2d-cpu[plot]"' in err
    assert out == ""


# ----------------------------------------------------------------- bad options
BAD = [
    ["--shape", "1,2,3"],
    ["--shape", "4,8,8,3:9,9,4"],
    ["--shape", "4,8,8,3:3,3,5,4"],
    ["--shape", "a,b,c,d:1,1,1"],
    ["--shape", "nosuchshape"],
    ["--methods", "nosuchmethod"],
    ["--methods", ","],
    ["--threads", "0"],
    ["--threads", "two"],
    ["--repeat", "0"],
    ["--dtype", "float16"],
    ["--no-such-option"],
    ["--plot", "/no/such/directory/x.png"],
    ["--plot", "/"],                      # a directory (matplotlib would write "/.png")
    ["--plot", "chart.xyz"],              # not an image format
    ["--plot", "chart"],                  # no format at all
    ["--plot", "/proc/chart.png"],        # a directory that takes no files
    ["--plot", "/dev/full"],              # not a regular file
    ["--threads", "99999999999999999999"],
    ["--shape", "100000,1000,1000,1000:3,3,16"],  # terabytes
    ["--methods", ""],
    ["--methods", " , "],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a))
def test_bad_options_in_process(capsys, argv):
    rc, out, err = run(capsys, argv)
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conv: error:"), err
    assert "Traceback" not in err


def test_bad_options_are_refused_before_any_work(capsys, monkeypatch):
    """Refusals come before the first measurement: nothing is timed or computed."""
    monkeypatch.setattr(measure, "run_case", lambda *a, **k: pytest.fail("a case ran"))
    monkeypatch.setattr(machine.Peak, "measure", lambda *a, **k: pytest.fail("peak measured"))
    for argv in (["--plot", "chart.xyz"], ["--threads", "99999999999999999999"],
                 ["--shape", "100000,1000,1000,1000:3,3,16"], ["--methods", ""]):
        rc, out, err = run(capsys, TINY[:1] + argv)
        assert rc == 2 and out == "", (argv, err)


def test_memory_refusal_gives_the_size(capsys):
    rc, out, err = run(capsys, ["--shape", "100000,1000,1000,1000:3,3,16"])
    assert rc == 2
    assert " GB " in err and "available" in err and "--shape" in err


def test_plot_path_refusals_leave_no_file(capsys, tmp_path):
    if not HAS_MPL:
        pytest.skip("matplotlib is not installed: --plot is refused for that first")
    rc, out, err = run(capsys, TINY + ["--plot", str(tmp_path)])
    assert rc == 2 and "is a directory" in err
    rc, out, err = run(capsys, TINY + ["--plot", str(tmp_path / "x.xyz")])
    assert rc == 2 and "unknown image format" in err and ".png" in err
    assert list(tmp_path.iterdir()) == []  # the writability probe removed its file


@pytest.mark.skipif(os.name != "posix", reason="closes file descriptor 1 in the child")
def test_closed_stdout_is_one_line_exit_2():
    p = subprocess.run([sys.executable, "-m", "conv", "--quick"], stdout=None,
                       stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1), cwd=tempfile.gettempdir())
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines == [lines[0]] and "stdout is closed" in lines[0], p.stderr


def subprocess_conv(*args, timeout=120):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    # cwd: away from the source tree, which would shadow the installed (compiled) conv
    return subprocess.run([sys.executable, "-m", "conv", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tempfile.gettempdir())


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--shape", "1,2:3"],
                                  ["--methods", "nosuchmethod"], ["--wisdom", "/"]],
                         ids=lambda a: " ".join(a))
def test_bad_options_subprocess(argv):
    p = subprocess_conv(*argv)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conv: error:"), p.stderr
    assert "Traceback" not in p.stderr


def test_subprocess_json():
    p = subprocess_conv(*TINY, "--json")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    doc = json.loads(p.stdout)  # stdout is nothing but the JSON document
    assert {r["method"] for r in doc["rows"]} >= set(expected_methods())
    assert "conv:" in p.stderr  # progress


def test_help():
    p = subprocess_conv("--help")
    assert p.returncode == 0
    assert "N,H,W,CIN:KH,KW,COUT" in p.stdout and "--suite" in p.stdout


# ---------------------------------------------------------------- the helpers
def test_parse_shape():
    assert shapes.parse_shape("seed") == ("seed", (100, 32, 32, 3), (3, 3, 3, 16))
    assert shapes.parse_shape("100,32,32,3:3,3,16")[0] == "seed"
    assert shapes.parse_shape("2,8,8,3:3,3,3,4") == ("2,8,8,3:3,3,4", (2, 8, 8, 3), (3, 3, 3, 4))
    for name, (x, w) in shapes.NAMED_SHAPES.items():
        assert shapes.parse_shape(name.upper()) == (name, x, w)
    for bad in ["", "1,2,3,4", "1,2,3,4:1,1", "0,8,8,3:3,3,4", "1,2,2,1:3,3,1"]:
        with pytest.raises(ValueError):
            shapes.parse_shape(bad)


def test_case_flops_matches_problem_flops():
    case = measure.Workload("k5", *shapes.NAMED_SHAPES["k5"], "float32")
    n, oh, ow, co = case.out_shape
    assert case.out_shape == (16, 60, 60, 32)
    assert case.flops == 2 * 16 * 60 * 60 * 5 * 5 * 16 * 32


def test_errors():
    ref = np.array([1.0, -4.0, 2.0])
    assert reference.errors(ref, ref) == (0.0, 0.0)
    abs_err, rel_err = reference.errors(ref + [0, 0, 0.04], ref)
    assert math.isclose(abs_err, 0.04) and math.isclose(rel_err, 0.01)
    assert math.isnan(reference.errors(np.array([np.nan, 0, 0]), ref)[0])


# ================================================================ an unbuilt source tree
def _unbuilt_copy(tmp_path):
    """A copy of conv's sources without any compiled module, as in a fresh clone."""
    import shutil

    src = os.path.dirname(conv.__file__)
    shutil.copytree(src, tmp_path / "conv", ignore=shutil.ignore_patterns(
        "*.so", "*.pyd", "*.c", "__pycache__", "*.html"))
    return tmp_path


# An editable install adds a finder that would serve conv's compiled modules to any `conv`
# package on sys.path; a fresh clone next to a regular install has none, so drop it.
_NO_EDITABLE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not "
                "getattr(f, '__module__', '').startswith('__editable__')]; ")


def test_unbuilt_tree_python_m_conv_says_what_to_do(tmp_path):
    """`python -m conv` from a clone's root that was never built: one line, exit 2."""
    root = _unbuilt_copy(tmp_path)
    # as `python -m conv` does: sys.argv[0] is "-m" while runpy imports the package (as
    # CPython documents) and sys.orig_argv holds the command line
    p = subprocess.run([sys.executable, "-c", _NO_EDITABLE + "sys.argv[0] = '-m'; "
                        "sys.orig_argv = [sys.executable, '-m', 'conv']; import conv"],
                       capture_output=True, text=True, timeout=60, cwd=root)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conv: error:"), p.stderr
    assert "source tree" in lines[0] and "pip install -e ." in lines[0]
    assert str(root / "conv") in lines[0]
    editable = any(getattr(f, "__module__", "").startswith("__editable__")
                   for f in sys.meta_path)
    if not editable:  # the real command, where nothing else can serve the compiled modules
        p = subprocess.run([sys.executable, "-m", "conv", "--quick"], capture_output=True,
                           text=True, timeout=60, cwd=root)
        assert p.returncode == 2 and p.stdout == "", p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_unbuilt_tree_import_raises_importerror_naming_the_fix(tmp_path):
    root = _unbuilt_copy(tmp_path)
    code = _NO_EDITABLE + textwrap.dedent("""
        try:
            import conv
        except ImportError as exc:
            print(exc)
            raise SystemExit(0)
        raise SystemExit("imported an unbuilt tree without an error")
        """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=root)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no compiled extensions" in p.stdout and "pip install -e ." in p.stdout


# ================================================================ --network
TINY_NET = (("stem 3x3/2", 9, 3, 3, 2, 1, 4, 1), ("body 1x1", 5, 4, 1, 1, 0, 8, 3),
            ("body 1x1 again", 5, 4, 1, 1, 0, 8, 2))


def test_network_json_rows_and_totals(capsys, monkeypatch):
    """--network on a tiny stand-in network: one row per layer and batch, auto's time and
    the baselines', auto's error against TensorFlow small, repeated shapes measured once."""
    monkeypatch.setitem(shapes.NETWORKS, "resnet50", TINY_NET)
    rc, out, err = run(capsys, ["--network", "resnet50", "--batch", "1,2", "--quick", "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "network" and len(doc["rows"]) == 6
    for r in doc["rows"]:
        assert r["seconds"]["auto"] > 0 and r["chosen"] in conv.list_methods()
        assert r["seconds"]["planned"] > 0 and r["plan_method"] in conv.list_methods()
        assert r["planning_seconds"] > 0
        assert ("tf.nn.conv2d" in r["seconds"]) == HAS_TF
        assert ("torch" in r["seconds"]) == HAS_TORCH
        if HAS_TF:
            assert r["max_rel_err_vs_tf"] < 1e-5 and r["planned_max_rel_err_vs_tf"] < 1e-5
    assert doc["planning_seconds"] > 0
    stem = doc["rows"][0]
    assert stem["x_shape"] == [1, 9, 9, 3] and stem["w_shape"] == [3, 3, 3, 4]
    assert stem["flops"] == 2 * 5 * 5 * 9 * 3 * 4  # (9 + 2 - 3) // 2 + 1 = 5
    again = [r for r in doc["rows"] if r["batch"] == 1 and r["layer"].startswith("body")]
    assert again[0]["seconds"] == again[1]["seconds"]  # the same shape, measured once
    assert again[0]["planning_seconds"] == again[1]["planning_seconds"]  # one plan


def test_network_table(capsys, monkeypatch):
    monkeypatch.setitem(shapes.NETWORKS, "resnet50", TINY_NET)
    rc, out, err = run(capsys, ["--network", "resnet50", "--batch", "1", "--quick"])
    assert rc == 0, err
    assert "resnet50, float32, batch 1" in out and "total (6 layers)" in out
    assert ("vs torch" in out) == HAS_TORCH and ("vs TF" in out) == HAS_TF
    header = next(line for line in out.splitlines() if line.startswith("layer "))
    assert "planned ms" in header and " plan " in header
    assert 'planned: 2 plans made with conv.plan(..., effort="measure")' in out
    stem = next(line for line in out.splitlines() if line.startswith("stem 3x3/2"))
    assert any(cell in conv.list_methods() for cell in stem.split())


@pytest.mark.parametrize("argv", [["--network", "resnet50", "--suite"],
                                  ["--network", "resnet50", "--shape", "seed"],
                                  ["--batch", "1"], ["--network", "resnet50", "--batch", "0"],
                                  ["--network", "vgg"]])
def test_network_bad_options(capsys, argv):
    rc, out, err = run(capsys, argv)
    assert rc == 2 and out == "" and err.startswith("conv: error:"), err


def test_resnet50_layers():
    """torchvision's ResNet-50 v1.5: 53 conv layers, 4.09 G multiply-adds per 224x224 image
    (the figure torchvision publishes: 4.09 GFLOPS counted as MACs), each layer's input the
    size its predecessor in the same stage produces."""
    layers = shapes.NETWORKS["resnet50"]
    assert sum(layer.count for layer in layers) == 53 and {layer.groups for layer in layers} == {1}
    macs = 0
    for name, h, c_in, k, s, p, c_out, count, _ in layers:
        out = conv.testing.output_shape((1, h, h, c_in), (k, k, c_in, c_out), stride=s,
                                        padding=((p, p), (p, p)))
        macs += count * out[1] * out[2] * k * k * c_in * c_out
    assert round(macs / 1e9, 2) == 4.09


def test_accuracy_table(capsys):
    rc, out, err = run(capsys, ["--accuracy", "--dtype", "float64", "--methods", "direct,numpy"])
    assert rc == 0, err
    assert "float64 max error" in out and "float32" not in out.split("\n")[1]
    assert {line.split()[0] for line in out.splitlines()[3:5]} == {"direct", "numpy"}


@pytest.mark.parametrize("argv", [["--accuracy", "--suite"], ["--accuracy", "--json"],
                                  ["--accuracy", "--network", "resnet50"]])
def test_accuracy_bad_options(capsys, argv):
    rc, out, err = run(capsys, argv)
    assert rc == 2 and out == "", err
