"""The plugin story end to end: the example plugin packages, pip-installed.

A session fixture builds ``examples/conv-fft`` (a real third-party method) and
``examples/conv-broken`` (a deliberately broken plugin) with pip into a temporary
``--target`` directory. Every check then runs in a fresh interpreter with that
directory on ``PYTHONPATH``, so the plugins are visible there exactly as after a
``pip install`` and this test process's own registry never sees them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PLUGINS = ("conv-fft", "conv-broken")
MARK = "@@RESULT@@"

# Prepended to every child script: imports, and report(**kw) to hand results back.
PRELUDE = textwrap.dedent(
    f"""
    import json, sys, warnings
    def report(**kw):
        print({MARK!r} + json.dumps(kw, default=repr))
    """
)


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """A directory holding conv-fft and conv-broken as pip installed them."""
    missing = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(
            f"tests/test_plugins.py pip-installs examples/conv-fft and examples/conv-broken with "
            f"--no-build-isolation, which needs {' and '.join(missing)} in the test environment "
            f"({sys.executable}); install it with: {sys.executable} -m pip install {' '.join(missing)}",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("plugins")
    # Build from copies: pip builds in tree, and build/ or *.egg-info must not land in
    # the repository (nor race with another test run building the same sources).
    sources = []
    for name in PLUGINS:
        dst = base / "src" / name
        shutil.copytree(
            EXAMPLES / name,
            dst,
            ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"),
        )
        sources.append(str(dst))
    site = base / "site"
    cmd = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
        "--no-index", "--target", str(site), *sources,
    ]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=base)
    if proc.returncode != 0:
        hint = ""
        if "setuptools" in (proc.stdout + proc.stderr):
            hint = f"\n(is setuptools installed and recent? {sys.executable} -m pip install -U setuptools)"
        pytest.fail(
            f"pip could not install the example plugins:\n$ {' '.join(cmd)}\n"
            f"{proc.stdout}\n{proc.stderr}{hint}",
            pytrace=False,
        )
    for pkg in ("conv_fft", "conv_broken"):
        assert (site / pkg / "__init__.py").is_file(), f"pip did not install {pkg} into {site}"
    return site


@pytest.fixture
def run_child(plugin_site, tmp_path):
    """run_child(code) runs ``code`` in a new interpreter that sees the plugins; returns
    what it passed to report(...) and its stderr."""

    def run(code, timeout=300):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(plugin_site)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        script = PRELUDE + textwrap.dedent(code)
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"child interpreter failed (exit {proc.returncode}):\n--- script\n{script}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
                pytrace=False,
            )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        assert len(lines) == 1, f"child did not report exactly once:\n{proc.stdout}\n{proc.stderr}"
        return json.loads(lines[0][len(MARK):]), proc.stderr

    return run


def _example_version(name):
    text = (EXAMPLES / name / "pyproject.toml").read_text()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


# ----------------------------------------------------------------------- (a)
def test_import_conv_is_lazy(run_child):
    r, _ = run_child(
        """
        def plugin_modules():
            return sorted(m for m in sys.modules if m.split(".")[0] in ("conv_fft", "conv_broken"))
        import conv
        after_import = plugin_modules()
        tf_after_import = "tensorflow" in sys.modules
        # Using one method imports that method's module only.
        import numpy as np
        conv.conv2d(np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 3)), method="numpy")
        after_numpy = plugin_modules()
        conv.get_method("fft")
        after_fft = plugin_modules()
        report(after_import=after_import, tf=tf_after_import, after_numpy=after_numpy,
               after_fft=after_fft, tf_at_end="tensorflow" in sys.modules)
        """
    )
    assert r["after_import"] == [], "import conv imported plugin modules"
    assert r["tf"] is False, "import conv imported TensorFlow"
    assert r["after_numpy"] == [], "using 'numpy' imported plugin modules"
    assert "conv_fft" in r["after_fft"]
    assert not any(m.startswith("conv_broken") for m in r["after_fft"])
    assert r["tf_at_end"] is False


# ----------------------------------------------------------------------- (b)
def test_list_methods_lists_fft_and_warns_once_per_broken_plugin(run_child):
    r, _ = run_child(
        """
        from importlib import metadata
        import conv
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            first = conv.list_methods()
            second = conv.list_methods()
        eps = {ep.name: ep.value for ep in metadata.entry_points(group="conv.methods")
               if ep.dist is not None and ep.dist.metadata["Name"].lower().replace("_", "-") == "conv-broken"}
        report(
            first=first, second=second,
            warnings=[[w.category.__name__, issubclass(w.category, conv.PluginWarning), str(w.message)]
                      for w in rec],
            broken_dist=metadata.distribution("conv-broken").metadata["Name"],
            broken_eps=eps,
            imported=sorted(m for m in sys.modules if m.startswith("conv_broken")),
        )
        """
    )
    assert "fft" in r["first"] and "numpy" in r["first"]
    assert r["second"] == r["first"]
    assert not {"broken_import", "broken_object"} & set(r["first"])
    plugin_warnings = [msg for _, is_plugin, msg in r["warnings"] if is_plugin]
    dist = r["broken_dist"]
    assert _canonical(dist) == "conv-broken"

    def about(name):
        return [m for m in plugin_warnings if f"'{name}'" in m]

    for name, error_words in (
        ("broken_import", ("RuntimeError", "deliberately broken")),
        ("broken_object", ("not a conv.Method",)),
    ):
        found = about(name)
        assert len(found) == 1, f"expected exactly one PluginWarning about {name!r}; got {found}"
        msg = found[0]
        # The distribution must be named as such, not merely show up in the module path.
        assert dist in msg.replace(r["broken_eps"][name], ""), msg
        for word in error_words:
            assert word in msg, msg
    dup = about("numpy")
    assert len(dup) == 1, f"expected one PluginWarning about the duplicate 'numpy'; got {dup}"
    assert dist in dup[0].replace(r["broken_eps"]["numpy"], "")
    # Nothing else about these plugins (other PluginWarnings would be about other installed
    # packages, which are not this test's business).
    assert len([m for m in plugin_warnings if dist in m or "conv_broken" in m]) == 3, plugin_warnings
    assert not any("'fft'" in m for m in plugin_warnings)
    # The loser of the duplicate is never imported.
    assert "conv_broken.impostor" not in r["imported"]


# ----------------------------------------------------------------------- (c)
def test_fft_through_conv2d_matches_the_reference(run_child):
    r, _ = run_child(
        """
        import itertools
        import numpy as np
        import conv, conv.testing
        rng = np.random.default_rng(20240)
        worst = {"float32": 0.0, "float64": 0.0}
        n_checked = 0
        for dtype in (np.float32, np.float64):
            for shape, stride, dilation, padding in itertools.product(
                [((2, 9, 11, 3), (3, 4, 3, 5)), ((1, 6, 5, 1), (1, 1, 1, 2)), ((1, 16, 16, 4), (5, 5, 4, 3))],
                [1, 2, (3, 1)], [1, (2, 1), 2], ["VALID", "SAME", ((1, 2), (0, 3))],
            ):
                xs, ws = shape
                x = rng.standard_normal(xs).astype(dtype)
                w = rng.standard_normal(ws).astype(dtype)
                kw = dict(stride=stride, dilation=dilation, padding=padding)
                d = (dilation, dilation) if isinstance(dilation, int) else dilation
                extra = (3, 3) if padding == ((1, 2), (0, 3)) else (0, 0)
                if padding != "SAME" and any(
                    xs[1 + a] + extra[a] < (ws[a] - 1) * d[a] + 1 for a in (0, 1)
                ):
                    continue  # the dilated kernel does not fit: not a valid problem
                ref = conv.testing.reference_conv2d(x, w, **kw)
                got = conv.conv2d(x, w, method="fft", **kw)
                assert got.dtype == dtype, (got.dtype, dtype)
                assert got.shape == ref.shape, (got.shape, ref.shape, kw)
                bound = np.abs(x).max() * np.abs(w).max() * w.shape[0] * w.shape[1] * w.shape[2]
                err = float(np.max(np.abs(got.astype(np.float64) - ref)) / bound) if got.size else 0.0
                worst[np.dtype(dtype).name] = max(worst[np.dtype(dtype).name], err)
                n_checked += 1
        report(worst=worst, n_checked=n_checked)
        """
    )
    assert r["n_checked"] > 100
    assert r["worst"]["float64"] < 1e-13, r
    assert r["worst"]["float32"] < 1e-6, r


def test_fft_passes_the_kit(run_child):
    r, _ = run_child(
        """
        import conv.testing
        conv.testing.check_method("fft")
        report(ok=True)
        """,
        timeout=900,
    )
    assert r["ok"]


def test_conv_fft_own_test_suite_passes(run_child, plugin_site):
    """The plugin author's own pytest suite (which calls the kit in one line) passes
    against the installed plugin."""
    tests = plugin_site.parent / "src" / "conv-fft" / "tests"
    r, _ = run_child(
        f"""
        import subprocess
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", {str(tests)!r}],
            capture_output=True, text=True,
        )
        report(rc=proc.returncode, out=proc.stdout[-4000:], err=proc.stderr[-4000:])
        """,
        timeout=900,
    )
    assert r["rc"] == 0, r["out"] + r["err"]


def test_front_end_emulates_what_fft_lacks(run_child):
    """A kernel declaring fft's capabilities only ever receives what docs/plugins.md
    promises: padded, stride 1, dilation 1, contiguous, read-only, one dtype."""
    r, _ = run_child(
        """
        import dataclasses
        import numpy as np
        import conv
        fft = conv.get_method("fft")
        seen = []
        def spy(p):
            seen.append(dict(
                stride=p.stride, dilation=p.dilation, padding=p.padding, threads=p.threads,
                x_c=p.x.flags.c_contiguous, w_c=p.w.flags.c_contiguous,
                x_ro=not p.x.flags.writeable, w_ro=not p.w.flags.writeable,
                dtypes=[p.x.dtype.name, p.w.dtype.name], out_shape=p.out_shape,
                x_shape=p.x.shape,
            ))
            return fft.kernel(p)
        conv.register_method(dataclasses.replace(fft, name="fft_spy", kernel=spy))
        rng = np.random.default_rng(1)
        x = np.asfortranarray(rng.standard_normal((2, 10, 9, 3)))   # not C-contiguous
        w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)      # promotes to float64
        got = conv.conv2d(x, w, method="fft_spy", stride=2, dilation=(2, 1), padding="SAME", threads=1)
        ref = conv.conv2d(x, w, method="numpy", stride=2, dilation=(2, 1), padding="SAME")
        report(seen=seen, close=bool(np.allclose(got, ref, rtol=1e-12, atol=1e-12)),
               dtype=got.dtype.name, shape=got.shape)
        """
    )
    assert r["close"]
    assert r["dtype"] == "float64"
    assert len(r["seen"]) == 2  # one call per dilation phase (2 x 1 phases)
    for call in r["seen"]:
        assert call["stride"] == [1, 1] and call["dilation"] == [1, 1], call
        assert call["padding"] == [[0, 0], [0, 0]], call
        assert call["x_c"] and call["w_c"] and call["x_ro"] and call["w_ro"], call
        assert call["dtypes"] == ["float64", "float64"], call
        assert call["threads"] == 1


def test_emulated_padding_skips_padded_taps(run_child):
    """The contract says padded taps are skipped, not multiplied by zero; when conv pads
    for a method (fft does not pad itself) that must still hold: an inf weight whose tap
    lands in the padding must not turn the output into NaN."""
    r, _ = run_child(
        """
        import numpy as np
        import conv, conv.testing
        x = np.ones((1, 3, 3, 1))
        w = np.ones((3, 3, 1, 1))
        w[0, 0, 0, 0] = np.inf
        report(
            fft=conv.conv2d(x, w, method="fft", padding="SAME")[0, :, :, 0].tolist(),
            ref=conv.testing.reference_conv2d(x, w, padding="SAME")[0, :, :, 0].tolist(),
        )
        """
    )
    assert r["fft"] == r["ref"], f"fft through conv's padding: {r['fft']}; reference: {r['ref']}"


# ----------------------------------------------------------------------- (d)
def test_broken_plugins_raise_method_error_and_isolate(run_child):
    r, _ = run_child(
        """
        import numpy as np
        import conv
        warnings.simplefilter("ignore", conv.PluginWarning)
        x, w = np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 1))
        out = {}
        for name in ("broken_import", "broken_object"):
            for attempt in (1, 2):  # a second call fails the same way
                try:
                    conv.conv2d(x, w, method=name)
                except conv.MethodError as e:
                    out[f"{name}{attempt}"] = dict(
                        msg=str(e), cause=type(e.__cause__).__name__ if e.__cause__ else None,
                        cause_msg=str(e.__cause__) if e.__cause__ else None,
                        original_is_cause=e.original is e.__cause__,
                    )
                except BaseException as e:
                    out[f"{name}{attempt}"] = dict(wrong=type(e).__name__, msg=str(e))
                else:
                    out[f"{name}{attempt}"] = dict(wrong="no error")
            try:
                conv.get_method(name)
            except conv.MethodError as e:
                out[f"{name}_get"] = "MethodError"
        # Everything else still works.
        ref = conv.conv2d(x, w, method="numpy")
        out["fft_ok"] = bool(np.allclose(conv.conv2d(x, w, method="fft"), ref))
        out["auto_ok"] = bool(np.allclose(conv.conv2d(x, w), ref))
        report(**out)
        """
    )
    for attempt in (1, 2):
        e = r[f"broken_import{attempt}"]
        assert "wrong" not in e, e
        assert e["cause"] == "RuntimeError" and e["cause_msg"] == "deliberately broken", e
        assert e["original_is_cause"], e
        assert "broken_import" in e["msg"] and "deliberately broken" in e["msg"], e
        e = r[f"broken_object{attempt}"]
        assert "wrong" not in e, e
        assert "not a conv.Method" in e["msg"], e
    assert r["broken_import_get"] == r["broken_object_get"] == "MethodError"
    assert r["fft_ok"] and r["auto_ok"]


# ----------------------------------------------------------------------- (e)
def test_duplicate_name_conv_own_wins_with_a_warning(run_child):
    r, _ = run_child(
        """
        import numpy as np
        import conv, conv.testing
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            m = conv.get_method("numpy")
        rng = np.random.default_rng(3)
        x, w = rng.standard_normal((1, 6, 6, 2)), rng.standard_normal((3, 3, 2, 2))
        got = conv.conv2d(x, w, method="numpy", padding="SAME")
        ref = conv.testing.reference_conv2d(x, w, padding="SAME")
        report(
            distribution=m.distribution, version=m.version, conv_version=conv.__version__,
            warnings=[[issubclass(w.category, conv.PluginWarning), str(w.message)] for w in rec],
            matches=bool(np.allclose(got, ref, rtol=1e-12, atol=1e-12)),
            impostor_imported="conv_broken.impostor" in sys.modules,
        )
        """
    )
    assert r["distribution"] == "conv2d-cpu"
    assert r["version"] == r["conv_version"]
    dup = [msg for is_plugin, msg in r["warnings"] if is_plugin and "'numpy'" in msg]
    assert len(dup) == 1, r["warnings"]
    assert "conv-broken" in dup[0] or "conv_broken" in dup[0]
    assert r["matches"]
    assert not r["impostor_imported"]


# ----------------------------------------------------------------------- (f)
def test_get_method_fft_reports_its_distribution(run_child):
    r, _ = run_child(
        """
        from importlib import metadata
        import conv
        m = conv.get_method("fft")
        report(
            name=m.name, distribution=m.distribution, version=m.version,
            dist_name=metadata.distribution("conv-fft").metadata["Name"],
            dist_version=metadata.version("conv-fft"),
            dtypes=m.dtypes, parallel=m.parallel, supports_stride=m.supports_stride,
            supports_dilation=m.supports_dilation, pads_itself=m.pads_itself,
            description=m.description, available=m.is_available(),
        )
        """
    )
    assert r["name"] == "fft"
    assert _canonical(r["distribution"]) == "conv-fft"
    assert r["distribution"] == r["dist_name"]
    assert r["version"] == r["dist_version"] == _example_version("conv-fft")
    assert r["dtypes"] == ["float32", "float64"]
    assert r["parallel"] is False
    assert not (r["supports_stride"] or r["supports_dilation"] or r["pads_itself"])
    assert "float64" in r["description"]
    assert r["available"]


def test_this_process_is_not_polluted(plugin_site):
    """The plugins are visible only to the child interpreters."""
    assert str(plugin_site) not in sys.path
    for mod in ("conv_fft", "conv_broken"):
        loaded = sys.modules.get(mod)
        assert loaded is None or not str(getattr(loaded, "__file__", "")).startswith(str(plugin_site))
