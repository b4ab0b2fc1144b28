"""The method registry: entry points, run-time registration, the contract, emulation, isolation."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import tempfile
import sys
import textwrap
import warnings
from importlib import metadata

import numpy as np
import pytest

import conv
import conv.testing as kit
from conftest import case_data

BUILTIN = ("direct", "numpy", "python", "tensorflow")


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


HAS_TF = _importable("tensorflow")


def _run_python(code, **env):
    """Run code in a fresh interpreter (this venv); return stdout, failing on a non-zero exit."""
    import os

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        cwd=tempfile.gettempdir(),  # the source tree would shadow the installed conv
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# ================================================================ listing
def test_list_methods_contents():
    names = conv.list_methods()
    assert names == sorted(names)
    assert {"python", "numpy", "direct"} <= set(names)
    assert ("tensorflow" in names) == HAS_TF
    assert "auto" not in names


def test_builtins_are_entry_points_of_conv():
    eps = {ep.name: ep for ep in metadata.entry_points(group="conv.methods")
           if ep.dist is not None and ep.dist.metadata["Name"] == conv._registry.OWN_DISTRIBUTION}
    assert set(BUILTIN) <= set(eps)
    assert eps["numpy"].value == "conv.methods.numpy_slices:METHOD"
    assert eps["tensorflow"].value == "conv.methods.tensorflow_conv:METHOD"


@pytest.mark.parametrize("name", ["python", "numpy", "direct", "tensorflow"])
def test_get_method_fields(name):
    m = conv.get_method(name)  # listed or not, a built-in is always describable
    assert isinstance(m, conv.Method)
    assert m.name == name
    assert isinstance(m.description, str) and len(m.description) > 10
    assert m.dtypes == ("float32", "float64")
    assert isinstance(m.parallel, bool)
    assert m.distribution == "conv2d-cpu"
    assert m.version == metadata.version("conv2d-cpu") == conv.__version__
    assert callable(m.kernel)


def test_parallel_flags():
    assert conv.get_method("direct").parallel is True
    assert conv.get_method("python").parallel is False


def test_tensorflow_method_declares_its_requirement():
    m = conv.get_method("tensorflow")
    assert m.requires == ("tensorflow",)
    assert m.install_hint == 'pip install "conv2d-cpu[tf]"'


def test_get_method_unknown():
    with pytest.raises(ValueError, match="'nope'.*numpy"):
        conv.get_method("nope")
    with pytest.raises(TypeError):
        conv.get_method(3)


def test_import_conv_does_not_import_tensorflow():
    out = _run_python(
        """
        import sys, conv
        assert "tensorflow" not in sys.modules, "import conv"
        names = conv.list_methods()
        conv.get_method("tensorflow")
        import numpy as np
        conv.conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)))
        assert "tensorflow" not in sys.modules, "list/get_method/conv2d"
        print(",".join(names))
        """
    )
    assert "numpy" in out


def test_without_tensorflow_the_method_is_unlisted_and_explains(tmp_path):
    # Simulate an environment without TensorFlow: a finder that refuses to find it.
    out = _run_python(
        """
        import sys, importlib.abc
        class NoTF(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, NoTF())
        import numpy as np, conv
        assert "tensorflow" not in conv.list_methods(), conv.list_methods()
        assert "numpy" in conv.list_methods()
        try:
            conv.conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), method="tensorflow")
        except conv.MethodUnavailableError as exc:
            assert isinstance(exc, ImportError)
            print(exc)
        else:
            raise SystemExit("no MethodUnavailableError")
        """
    )
    assert 'pip install "conv2d-cpu[tf]"' in out
    assert "tensorflow" in out


# ================================================================ run-time registration
def _numpy_kernel(p):
    return conv.get_method("numpy").kernel(p)


def test_register_replace_unregister(registered):
    m = conv.Method("mine", _numpy_kernel, description="numpy under another name", pads_itself=True)
    got = registered(m)
    assert got.name == "mine" and got.distribution is None and got.version is None
    assert "mine" in conv.list_methods()
    assert conv.get_method("mine").description == "numpy under another name"
    x, w = np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 2))
    assert np.array_equal(conv.conv2d(x, w, method="mine", padding="SAME"),
                          conv.conv2d(x, w, method="numpy", padding="SAME"))

    with pytest.raises(ValueError, match="replace=True"):
        conv.register_method(conv.Method("mine", _numpy_kernel))

    def twos(p):
        return np.full(p.out_shape, 2.0, p.dtype)

    registered(conv.Method("mine", twos, description="twos"), replace=True)
    assert conv.get_method("mine").description == "twos"
    assert (conv.conv2d(x, w, method="mine") == 2).all()

    conv.unregister_method("mine")
    assert "mine" not in conv.list_methods()
    with pytest.raises(ValueError, match="mine"):
        conv.conv2d(x, w, method="mine")
    with pytest.raises(ValueError):
        conv.unregister_method("mine")


def test_register_over_a_builtin_needs_replace(registered):
    with pytest.raises(ValueError, match="numpy"):
        conv.register_method(conv.Method("numpy", _numpy_kernel))

    def ones(p):
        return np.ones(p.out_shape, p.dtype)

    registered(conv.Method("numpy", ones), replace=True)
    x, w = np.zeros((1, 3, 3, 1)), np.zeros((2, 2, 1, 1))
    assert (conv.conv2d(x, w, method="numpy") == 1).all()
    conv.unregister_method("numpy")  # the entry point's method is back
    assert conv.get_method("numpy").distribution == "conv2d-cpu"
    assert (conv.conv2d(x, w, method="numpy") == 0).all()


def test_register_rejects_non_methods():
    with pytest.raises(TypeError):
        conv.register_method(lambda p: None)


def test_unregister_entry_point_method_is_refused():
    with pytest.raises(ValueError):
        conv.unregister_method("numpy")
    assert "numpy" in conv.list_methods()


def test_method_validates_its_declaration():
    with pytest.raises(ValueError):
        conv.Method("not an identifier", _numpy_kernel)
    with pytest.raises(TypeError):
        conv.Method("x", "not callable")
    with pytest.raises(ValueError):
        conv.Method("x", _numpy_kernel, dtypes=("float16",))
    with pytest.raises(ValueError):
        conv.Method("x", _numpy_kernel, dtypes=())
    assert conv.Method("x", _numpy_kernel, dtypes=[np.float32]).dtypes == ("float32",)


# ================================================================ contract breaches
BREACHES = {
    "wrong_shape": lambda p: np.zeros(p.out_shape[:3] + (p.out_shape[3] + 1,), p.dtype),
    "transposed": lambda p: np.zeros(p.out_shape[::-1], p.dtype),
    "wrong_dtype": lambda p: np.zeros(p.out_shape, np.float16),
    "other_float": lambda p: np.zeros(
        p.out_shape, np.float32 if p.dtype == np.float64 else np.float64),
    "a_list": lambda p: np.zeros(p.out_shape, p.dtype).tolist(),
    "none": lambda p: None,
    "matrix": lambda p: np.zeros(p.out_shape, p.dtype).reshape(-1, p.out_shape[3]),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("breach", sorted(BREACHES))
def test_contract_breach_raises_method_error(breach, dtype, registered):
    registered(conv.Method(f"breach_{breach}", BREACHES[breach]))
    x, w = np.ones((2, 5, 5, 2), dtype), np.ones((3, 3, 2, 3), dtype)
    with pytest.raises(conv.MethodError, match=f"breach_{breach}"):
        conv.conv2d(x, w, method=f"breach_{breach}", padding="SAME")


def test_kit_rejects_a_contract_breach(registered):
    registered(conv.Method("breach_kit", BREACHES["wrong_shape"]))
    with pytest.raises(AssertionError, match="breach_kit"):
        kit.check_method("breach_kit")


def test_undeclared_dtype_is_a_type_error(registered):
    registered(conv.Method("only32", _numpy_kernel, dtypes=("float32",), pads_itself=True))
    x, w = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 1))
    with pytest.raises(TypeError, match="only32"):
        conv.conv2d(x, w, method="only32")
    out = conv.conv2d(x.astype(np.float32), w.astype(np.float32), method="only32")
    assert out.dtype == np.float32
    kit.check_method("only32")  # the kit runs float32 only and checks float64 is refused


# ================================================================ missing requirements
def test_missing_requirement_hides_method_and_explains(registered):
    registered(conv.Method("needs_fake", _numpy_kernel, requires=("conv_no_such_module_xyz",),
                           install_hint="pip install conv-no-such-module"))
    assert "needs_fake" not in conv.list_methods()
    m = conv.get_method("needs_fake")  # still describable
    assert m.missing_requirements() == ("conv_no_such_module_xyz",)
    assert not m.is_available()
    with pytest.raises(conv.MethodUnavailableError,
                       match="conv_no_such_module_xyz.*pip install conv-no-such-module"):
        conv.conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), method="needs_fake")


def test_tensorflow_install_hint_when_missing(registered):
    tf_method = conv.get_method("tensorflow")
    fake = dataclasses.replace(tf_method, requires=("conv_no_such_tensorflow",))
    registered(fake, replace=True)
    assert "tensorflow" not in conv.list_methods()
    with pytest.raises(conv.MethodUnavailableError, match=r'pip install "conv2d-cpu\[tf\]"'):
        conv.conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), method="tensorflow")
    with pytest.raises(ImportError):  # MethodUnavailableError is an ImportError
        conv.conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), method="tensorflow")


# ================================================================ emulated capabilities
def _im2col_method(name, *, supports_stride, supports_dilation, pads_itself):
    """A simple numpy im2col kernel that refuses whatever it does not declare."""

    def kernel(p):
        if not supports_stride:
            assert p.stride == (1, 1), p.stride
        if not supports_dilation:
            assert p.dilation == (1, 1), p.dilation
        if not pads_itself:
            assert p.padding == ((0, 0), (0, 0)), p.padding
        assert p.x.flags.c_contiguous and p.w.flags.c_contiguous
        x = p.x
        if pads_itself:
            x = np.pad(x, ((0, 0), p.padding[0], p.padding[1], (0, 0)))
        (sh, sw), (dh, dw) = p.stride, p.dilation
        n, oh, ow, co = p.out_shape
        kh, kw, ci, _ = p.w.shape
        cols = np.empty((n, oh, ow, kh, kw, ci), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j, :] = x[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                                           j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
        with np.errstate(invalid="ignore"):  # Inf * 0 inside the input is NaN, as it should be
            return (cols.reshape(-1, kh * kw * ci) @ p.w.reshape(-1, co)).reshape(p.out_shape)

    return conv.Method(name, kernel, supports_stride=supports_stride,
                       supports_dilation=supports_dilation, pads_itself=pads_itself)


CAPABILITIES = [(s, d, p) for s in (False, True) for d in (False, True) for p in (False, True)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("caps", CAPABILITIES,
                         ids=lambda c: "stride%d-dilation%d-pads%d" % c)
def test_front_end_emulates_missing_capabilities(caps, dtype, registered):
    s, d, p = caps
    registered(_im2col_method("im2col", supports_stride=s, supports_dilation=d, pads_itself=p))
    for case in kit.CASES:
        x, w, ref, scale = case_data(case, dtype)
        out = conv.conv2d(x, w, method="im2col", **case.kwargs)
        try:
            assert out.dtype == np.dtype(dtype)
            kit.assert_conv_close(out, ref, scale, dtype)
        except AssertionError as exc:
            raise AssertionError(f"case {case.id}: {exc}") from None


def test_emulation_calls_the_kernel_only_with_what_it_supports(registered):
    calls = []
    inner = _im2col_method("inner", supports_stride=False, supports_dilation=False,
                           pads_itself=False)

    def spy(p):
        calls.append((p.stride, p.dilation, p.padding, p.x.shape))
        return inner.kernel(p)

    registered(conv.Method("spy_emul", spy, supports_stride=False, supports_dilation=False))
    x, w = np.ones((1, 9, 8, 2)), np.ones((3, 2, 2, 1))
    out = conv.conv2d(x, w, method="spy_emul", stride=2, dilation=(2, 3), padding="SAME")
    assert out.shape == (1, 5, 4, 1)
    assert calls and all(c[:3] == ((1, 1), (1, 1), ((0, 0), (0, 0))) for c in calls)
    kit.assert_conv_close(out, kit.reference_conv2d(x, w, stride=2, dilation=(2, 3),
                                                    padding="SAME"), 1.0, "float64")


def test_emulated_padding_keeps_inf_semantics(registered):
    """conv pads for a method that does not pad itself; an Inf weight in a padded tap must
    still be skipped (Inf), not multiplied by a padded zero (NaN)."""
    registered(_im2col_method("im2col_nan", supports_stride=True, supports_dilation=True,
                              pads_itself=False))
    x = np.ones((1, 3, 3, 1))
    w = np.ones((3, 3, 1, 1))
    w[0, 0, 0, 0] = np.inf  # the top-left tap is in the padding for output (0, 0)
    ref = kit.reference_conv2d(x, w, padding="SAME")
    assert ref[0, 0, 0, 0] == 4.0  # finite: the Inf tap is skipped
    out = conv.conv2d(x, w, method="im2col_nan", padding="SAME")
    kit.assert_conv_close(out, ref, kit.tolerance_scale(x, w, padding="SAME"), "float64")


def _span(out_size, in_size, tap, s, d, before):
    """Outputs [lo, hi) whose tap lands in the input, and the input index of lo."""
    off = tap * d - before
    lo = max(0, -(off // s))  # ceil(-off / s)
    hi = min(out_size, (in_size - 1 - off) // s + 1) if in_size - 1 - off >= 0 else 0
    return lo, max(lo, hi), lo * s + off


def _taploop_method(name, *, supports_stride, supports_dilation):
    """Pads itself by skipping padded taps (like conv's own); refuses what it does not declare."""

    def kernel(p):
        if not supports_stride:
            assert p.stride == (1, 1), p.stride
        if not supports_dilation:
            assert p.dilation == (1, 1), p.dilation
        _, h, wd, ci = p.x.shape
        kh, kw, _, co = p.w.shape
        n, oh, ow, _ = p.out_shape
        (sh, sw), (dh, dw) = p.stride, p.dilation
        (pt, _), (pl, _) = p.padding
        out = np.zeros(p.out_shape, p.dtype)
        with np.errstate(all="ignore"):
            for i in range(kh):
                y0, y1, iy = _span(oh, h, i, sh, dh, pt)
                for j in range(kw):
                    x0, x1, ix = _span(ow, wd, j, sw, dw, pl)
                    if y0 == y1 or x0 == x1:
                        continue
                    patch = p.x[:, iy: iy + (y1 - y0 - 1) * sh + 1: sh,
                                ix: ix + (x1 - x0 - 1) * sw + 1: sw, :]
                    out[:, y0:y1, x0:x1, :] += (patch.reshape(-1, ci) @ p.w[i, j]).reshape(
                        n, y1 - y0, x1 - x0, co)
        return out

    return conv.Method(name, kernel, supports_stride=supports_stride,
                       supports_dilation=supports_dilation, pads_itself=True)


def test_taploop_kernel_is_itself_correct(registered):
    registered(_taploop_method("taploop_full", supports_stride=True, supports_dilation=True))
    kit.check_method("taploop_full")


@pytest.mark.parametrize("caps", [(False, True), (True, False), (False, False)],
                         ids=["no-stride", "no-dilation", "neither"])
def test_kit_passes_an_emulated_method_that_pads_itself(caps, registered):
    """The whole kit, NaN/Inf included, through the stride and dilation emulation."""
    registered(_taploop_method("taploop", supports_stride=caps[0], supports_dilation=caps[1]))
    kit.check_method("taploop")


@pytest.mark.parametrize("caps", [(s, d) for s in (False, True) for d in (False, True)],
                         ids=lambda c: "stride%d-dilation%d" % c)
def test_kit_passes_an_emulated_method_padded_by_conv(caps, registered):
    """A method that multiplies whatever it is given (zero padding included) still passes the
    kit, NaN/Inf included: conv must not hand it padded zeros next to non-finite weights."""
    registered(_im2col_method("im2col_kit", supports_stride=caps[0], supports_dilation=caps[1],
                              pads_itself=False))
    kit.check_method("im2col_kit")


@pytest.mark.parametrize("supports_stride", [True, False])
def test_dilation_emulation_keeps_inf_semantics(supports_stride, registered):
    registered(_taploop_method("taploop_nd", supports_stride=supports_stride,
                               supports_dilation=False))
    x = np.ones((1, 5, 5, 1))
    w = np.ones((3, 3, 1, 1))
    w[0, 0, 0, 0] = np.inf  # in the padding for output (0, 0) under SAME with dilation 2
    kwargs = dict(padding="SAME", dilation=2)
    ref = kit.reference_conv2d(x, w, **kwargs)
    assert np.isfinite(ref[0, 0, 0, 0])
    out = conv.conv2d(x, w, method="taploop_nd", **kwargs)
    kit.assert_conv_close(out, ref, kit.tolerance_scale(x, w, **kwargs), "float64")


# ================================================================ plugin isolation
def _fake_dist(root, dist, entries, modules):
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        "[conv.methods]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
    )
    for name, src in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(src))


GOOD_MODULE = """
    import numpy as np
    import conv

    def _k(p):
        return conv.get_method("numpy").kernel(p)

    OK = conv.Method("fake_ok", _k, pads_itself=True, description="fake ok")
    MISNAMED = conv.Method("another_name", _k, pads_itself=True)
    NOT_METHOD = object()
    HIJACK = conv.Method("numpy", lambda p: np.zeros(p.out_shape, p.dtype))
    DUP_A = conv.Method("dup", _k, pads_itself=True, description="from aaa")
    DUP_Z = conv.Method("dup", _k, pads_itself=True, description="from zzz")
"""


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "conv-fakeplug", {
        "fake_ok": "conv_fakeplug_mod:OK",
        "fake_boom": "conv_fakeplug_boom:METHOD",
        "fake_misnamed": "conv_fakeplug_mod:MISNAMED",
        "fake_notmethod": "conv_fakeplug_mod:NOT_METHOD",
        "numpy": "conv_fakeplug_mod:HIJACK",
    }, {
        "conv_fakeplug_mod": GOOD_MODULE,
        "conv_fakeplug_boom": "raise RuntimeError('fakeplug exploded on import')\n",
    })
    _fake_dist(tmp_path, "zzz-fakedup", {"dup": "conv_fakeplug_mod:DUP_Z"}, {})
    _fake_dist(tmp_path, "aaa-fakedup", {"dup": "conv_fakeplug_mod:DUP_A"}, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    conv._REGISTRY.reload()
    try:
        yield
    finally:
        monkeypatch.undo()
        for mod in ("conv_fakeplug_mod", "conv_fakeplug_boom"):
            sys.modules.pop(mod, None)
        conv._REGISTRY.reload()
        assert "fake_ok" not in conv.list_methods()


def test_plugins_are_isolated(fake_plugins):
    with pytest.warns(conv.PluginWarning) as record:
        names = conv.list_methods()
    messages = "\n".join(str(r.message) for r in record)
    assert "fake_ok" in names and "dup" in names
    for bad in ("fake_boom", "fake_misnamed", "fake_notmethod"):
        assert bad not in names
        assert bad in messages
    assert "conv-fakeplug" in messages and "fakeplug exploded on import" in messages
    # conv's own methods are untouched, and win a name clash
    assert {"python", "numpy", "direct"} <= set(names)
    assert conv.get_method("numpy").distribution == "conv2d-cpu"
    # the duplicate: the alphabetically first distribution wins, with a warning naming both
    assert conv.get_method("dup").description == "from aaa"
    assert conv.get_method("dup").distribution == "aaa-fakedup"
    assert "zzz-fakedup" in messages and "aaa-fakedup" in messages
    # warned once: listing again is quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert conv.list_methods() == names


def test_working_plugin_is_usable(fake_plugins):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", conv.PluginWarning)
        m = conv.get_method("fake_ok")
        assert m.distribution == "conv-fakeplug" and m.version == "1.2.3"
        kit.check_method("fake_ok", cases=kit.CASES[:6])


def test_broken_plugin_raises_with_the_original_error(fake_plugins):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", conv.PluginWarning)
        x, w = np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1))
        with pytest.raises(conv.MethodError, match="fake_boom") as info:
            conv.conv2d(x, w, method="fake_boom")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert isinstance(info.value.original, RuntimeError)
        for bad in ("fake_misnamed", "fake_notmethod"):
            with pytest.raises(conv.MethodError, match=bad):
                conv.conv2d(x, w, method=bad)
        assert conv.conv2d(x, w, method="numpy").shape == (1, 2, 2, 1)


def test_import_conv_survives_a_broken_plugin(tmp_path):
    _fake_dist(tmp_path, "conv-fakeboom", {"fake_boom": "conv_fakeplug_boom2:METHOD"},
               {"conv_fakeplug_boom2": "raise ImportError('no such thing')\n"})
    out = _run_python(
        """
        import warnings, conv
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            names = conv.list_methods()
        assert "fake_boom" not in names and "numpy" in names, names
        assert any("fake_boom" in str(r.message) for r in rec)
        print("ok")
        """,
        PYTHONPATH=str(tmp_path),
    )
    assert out.strip() == "ok"


def test_broken_method_errors_do_not_accumulate_callers_frames():
    """The registry remembers why a plugin failed, not the raised error: each call gets a
    fresh MethodError, so repeated failures do not keep callers' frames (and arrays) alive."""
    from importlib.metadata import EntryPoint

    from conv._registry import Registry

    reg = Registry(group="conv.tests.nonexistent")
    reg._entries = {"bad": _Entry_for_test(EntryPoint("bad", "conv_no_such_module_xyz:M", "g"))}
    depths = []
    for _ in range(4):
        with pytest.raises(conv.MethodError) as info:
            reg.get_method("bad")
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
        tb, depth = info.value.__traceback__, 0
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert len(set(depths)) == 1, depths


def _Entry_for_test(ep):
    from conv._registry import _Entry

    return _Entry(ep.name, ep, "conv-broken-test", "0")


def _fake_distribution(site, name, entry_points, modules=None):
    """A distribution on a fake site directory: `name`'s dist-info with these
    `entry_points.txt` lines, and top-level modules {name: source}. Returns `site`."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    for mod, src in (modules or {}).items():
        (site / f"{mod}.py").write_text(textwrap.dedent(src))
    return site


def _run_with_site(site, code, cwd):
    """Run `code` in a fresh interpreter with `site` on sys.path; its last stdout line,
    parsed as JSON."""
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("SLOWPOKE_DONE", None)
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=240, env=env, cwd=str(cwd))
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_an_impostor_distribution_named_like_conv_does_not_count_as_conv(tmp_path):
    """A distribution named `Conv` (or `conv2d-cpu`) that declares `direct` does not
    win over conv's own `direct`: conv's own is the distribution that installed the
    running package, not a name. (Before: its `direct` filled outputs with 666.)"""
    for name in ("Conv", "conv2d-cpu", "conv2d_cpu"):
        site = _fake_distribution(tmp_path / name, name,
                                  "[conv.methods]\ndirect = a_hp_impostor:DIRECT\n",
                                  {"a_hp_impostor": """
            import numpy as np, conv
            DIRECT = conv.Method("direct", lambda p: np.full(p.out_shape, 666.0, p.dtype))
            """})
        code = textwrap.dedent("""
            import json, warnings, numpy as np, conv
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                x, w = np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1))
                out = conv.conv2d(x, w, padding="SAME")
                m = conv.get_method("direct")
            print(json.dumps({"first": float(out.flat[0]), "dist": m.distribution,
                              "warnings": [str(c.message) for c in caught]}))
            """)
        r = _run_with_site(site, code, tmp_path)
        assert r["first"] == 4.0, (name, r)  # a SAME corner: 4 taps of ones
        assert r["dist"] == metadata.distribution("conv2d-cpu").metadata["Name"], (name, r)
        clash = [m for m in r["warnings"] if "declared by several distributions" in m]
        assert clash and "a_hp_impostor:DIRECT" in clash[0].split("ignoring", 1)[1], (name, r)


def test_a_slow_or_reentrant_plugin_import_blocks_nobody_else(tmp_path):
    """Plugins are imported outside the registry lock: while one thread imports a plugin
    that is stuck, another thread's conv2d(method="direct") completes; and a plugin whose
    import starts a thread that asks the registry for a method, and joins it, loads
    (it deadlocked for ever when the import held the lock)."""
    site = _fake_distribution(
        tmp_path / "site", "conv-lock-test",
        "[conv.methods]\nslow = slow_plugin:SLOW\nreentrant = reentrant_plugin:REENTRANT\n",
        {"slow_plugin": """
            import builtins, numpy as np, conv
            builtins._conv_test_entered.set()
            builtins._conv_test_gate.wait(60)           # stuck until the test lets it go
            SLOW = conv.Method("slow", lambda p: np.zeros(p.out_shape, p.dtype))
            """,
         "reentrant_plugin": """
            import threading, numpy as np, conv
            box = []
            t = threading.Thread(target=lambda: box.append(conv.get_method("direct").name))
            t.start()
            t.join(30)
            assert box == ["direct"], box
            REENTRANT = conv.Method("reentrant", lambda p: np.zeros(p.out_shape, p.dtype))
            """})
    code = textwrap.dedent("""
        import builtins, json, os, threading, numpy as np, conv
        builtins._conv_test_entered = threading.Event()
        builtins._conv_test_gate = threading.Event()
        report = {}
        lister = threading.Thread(target=lambda: conv.get_method("slow"), daemon=True)
        lister.start()
        report["entered"] = builtins._conv_test_entered.wait(30)
        done = []
        x, w = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2))
        other = threading.Thread(
            target=lambda: done.append(float(conv.conv2d(x, w, method="direct")[0, 0, 0, 0])),
            daemon=True)
        other.start()
        other.join(30)                   # while the slow import is still stuck
        report["other_done_while_stuck"] = done == [18.0]
        builtins._conv_test_gate.set()
        lister.join(30)
        got = []
        t = threading.Thread(target=lambda: got.append(conv.get_method("reentrant").name),
                             daemon=True)
        t.start()
        t.join(60)
        report["reentrant"] = got
        print(json.dumps(report), flush=True)
        os._exit(0)                      # a deadlocked daemon thread must not keep us alive
        """)
    r = _run_with_site(site, code, tmp_path)
    assert r == {"entered": True, "other_done_while_stuck": True, "reentrant": ["reentrant"]}, r


def test_warnings_as_errors_fail_one_call_at_most(tmp_path):
    """With PluginWarning turned into an error (`python -W error`), a duplicate name makes
    at most the first call raise: discovery is cached before the warning is issued, so
    every later conv2d, of any method, works (before, every call raised)."""
    site = _fake_distribution(tmp_path / "site", "conv-dup-test",
                              "[conv.methods]\nnumpy = dup_plugin:NUMPY\n",
                              {"dup_plugin": "raise RuntimeError('never imported: it loses')\n"})
    code = textwrap.dedent("""
        import json, warnings, numpy as np, conv
        warnings.simplefilter("error", conv.PluginWarning)
        x, w = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2))
        outcomes = []
        for method in ("direct", "direct", "numpy", "matmul", "direct"):
            try:
                outcomes.append(float(conv.conv2d(x, w, method=method)[0, 0, 0, 0]))
            except conv.PluginWarning as exc:
                outcomes.append("warning: " + str(exc)[:60])
        print(json.dumps(outcomes))
        """)
    outcomes = _run_with_site(site, code, tmp_path)
    assert outcomes[1:] == [18.0] * 4, outcomes
    assert outcomes[0] == 18.0 or "declared by several distributions" in outcomes[0], outcomes


def test_whatever_a_plugin_does_only_that_plugin_is_lost(tmp_path):
    """Each of these broke list_methods(), build_info(), get_method() and conv2d of every
    method (some on every call). Now each loses only its own method, with one
    PluginWarning naming it, and a Method subclass with a constructor of its own works."""
    entry_points = textwrap.dedent("""
        [conv.methods]
        baseexc = hostile_baseexc:M
        sysexit = hostile_sysexit:M
        ctor = hostile_ctor:M
        avail = hostile_avail:M
        bare = hostile_bare:M
        claims = hostile_claims:M
        selfish = hostile_selfish:M
        """)
    mods = {
        "hostile_baseexc": "class Boom(BaseException): pass\nraise Boom('custom')\n",
        "hostile_sysexit": "raise SystemExit(3)\n",
        "hostile_ctor": textwrap.dedent("""
            import numpy as np, conv
            class MyMethod(conv.Method):
                def __init__(self, k):
                    super().__init__(name="ctor", kernel=k)
            M = MyMethod(lambda p: np.zeros(p.out_shape, p.dtype))
            """),
        "hostile_avail": textwrap.dedent("""
            import numpy as np, conv
            class Flaky(conv.Method):
                def is_available(self):
                    raise RuntimeError("cannot tell")
            M = Flaky("avail", lambda p: np.zeros(p.out_shape, p.dtype))
            """),
        "hostile_bare": "import conv\nM = object.__new__(conv.Method)\n",
        "hostile_claims": textwrap.dedent("""
            import conv
            class Liar:
                @property
                def __class__(self):
                    return conv.Method
                name = "claims"
            M = Liar()
            """),
        "hostile_selfish": textwrap.dedent("""
            import numpy as np, conv
            LISTED_DURING_IMPORT = conv.list_methods()
            M = conv.Method("selfish", lambda p: np.zeros(p.out_shape, p.dtype))
            """),
    }
    site = _fake_distribution(tmp_path / "site", "conv-hostile", entry_points, mods)
    # an unrelated distribution with a malformed entry_points.txt
    _fake_distribution(site, "unrelated", "[console_scripts]\nno-equals-sign-here\n")
    code = textwrap.dedent("""
        import json, warnings, numpy as np, conv
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            listed = conv.list_methods()
            again = conv.list_methods()
            info = conv.build_info()
            x, w = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2))
            direct = float(conv.conv2d(x, w, method="direct")[0, 0, 0, 0])
            ctor = conv.get_method("ctor").distribution
            errors = {}
            for name in ("baseexc", "sysexit", "bare", "claims", "typo"):
                try:
                    conv.conv2d(x, w, method=name)
                    errors[name] = "no error"
                except (conv.MethodError, ValueError) as exc:
                    errors[name] = type(exc).__name__
        import hostile_selfish
        print(json.dumps({"listed": listed, "again": again, "methods": info["methods"],
                          "direct": direct, "ctor": ctor, "errors": errors,
                          "during": hostile_selfish.LISTED_DURING_IMPORT,
                          "warnings": [str(c.message) for c in caught
                                       if issubclass(c.category, conv.PluginWarning)]}))
        """)
    r = _run_with_site(site, code, tmp_path)
    assert r["direct"] == 18.0
    assert r["listed"] == r["again"] == r["methods"]
    assert "ctor" in r["listed"] and "selfish" in r["listed"] and "direct" in r["listed"]
    for gone in ("baseexc", "sysexit", "avail", "bare", "claims"):
        assert gone not in r["listed"], gone
        assert sum(f"'{gone}'" in m for m in r["warnings"]) == 1, (gone, r["warnings"])
    assert r["ctor"] == "conv-hostile"
    assert r["errors"] == {"baseexc": "MethodError", "sysexit": "MethodError",
                           "bare": "MethodError", "claims": "MethodError", "typo": "ValueError"}
    assert "selfish" not in r["during"] and "direct" in r["during"]
    assert not any("'selfish'" in m for m in r["warnings"]), r["warnings"]
    assert sum("could not read the entry points" in m for m in r["warnings"]) == 1


def test_a_plugin_raising_keyboardinterrupt_is_its_failure_but_ctrl_c_interrupts(tmp_path):
    """A plugin that raises KeyboardInterrupt at import is broken (recorded, warned once,
    other methods work; before, every call re-raised it). A real Ctrl-C (SIGINT) during
    a plugin's import interrupts the caller once and is not recorded against it."""
    site = _fake_distribution(
        tmp_path / "site", "conv-ki",
        "[conv.methods]\nki = ki_plugin:M\nslowpoke = slowpoke_plugin:M\n",
        {"ki_plugin": "raise KeyboardInterrupt\n",
         "slowpoke_plugin": """
            import os, signal, time, numpy as np, conv
            if not os.environ.get("SLOWPOKE_DONE"):
                os.environ["SLOWPOKE_DONE"] = "1"
                os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C mid-import
                time.sleep(5)
            M = conv.Method("slowpoke", lambda p: np.zeros(p.out_shape, p.dtype))
            """})
    code = textwrap.dedent("""
        import json, warnings, numpy as np, conv
        out = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                conv.get_method("slowpoke")
                out["first"] = "no interrupt"
            except KeyboardInterrupt:
                out["first"] = "KeyboardInterrupt"
            out["second"] = conv.get_method("slowpoke").name  # not recorded: works now
            out["listed"] = conv.list_methods()
            out["listed_again"] = conv.list_methods()
            x, w = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2))
            out["direct"] = float(conv.conv2d(x, w, method="direct")[0, 0, 0, 0])
            try:
                conv.get_method("ki")
                out["ki"] = "no error"
            except conv.MethodError as exc:
                out["ki"] = str(exc)
        out["warnings"] = [str(c.message) for c in caught
                           if issubclass(c.category, conv.PluginWarning)]
        print(json.dumps(out))
        """)
    r = _run_with_site(site, code, tmp_path)
    assert r["first"] == "KeyboardInterrupt" and r["second"] == "slowpoke", r
    assert "ki" not in r["listed"] and r["listed"] == r["listed_again"], r
    assert "slowpoke" in r["listed"] and r["direct"] == 18.0, r
    assert "KeyboardInterrupt" in r["ki"], r
    assert sum("'ki'" in m for m in r["warnings"]) == 1, r["warnings"]
