"""Wisdom: what effort="measure" learned, kept, reused by "auto", saved to a file.

An entry says which method (and how many threads) was fastest for one problem, keyed by
everything that decides that: the problem (x's shape, its batch entry possibly None,
w's shape, dtype, stride, padding per side, dilation, threads asked for) and the
environment (conv's version, the loaded kernel build, the threading, the CPU model and
its SIMD features, and the set of installed methods with the versions of the
distributions that provide them). An entry whose environment is not this one is never
used: an imported file's foreign entries are counted and dropped.

The file is JSON a person can read (``export_wisdom``); ``import_wisdom`` checks all of
a file before taking any of it, so a corrupt or foreign file leaves the wisdom in memory
as it was.
"""
from __future__ import annotations

import json
import os
import platform
import re
import threading
import time
from typing import Optional

import numpy as np

from ._frontend import DTYPE_NAMES
from ._registry import REGISTRY

FORMAT = "conv-wisdom"
VERSION = 1
EFFORT_RANK = {"estimate": 0, "measure": 1, "patient": 2}

_lock = threading.Lock()
#: (environment fingerprint, problem key) -> entry (a JSON-ready dict). Read without the
#: lock on conv2d's hot path (a dict lookup is atomic); written under it.
ENTRIES: dict = {}
#: Bumped whenever ENTRIES changes (conv2d's memo of recent calls keys on it).
GENERATION = 0
_env_cache: dict = {}


class WisdomWarning(UserWarning):
    """CONV_WISDOM named a file that could not be imported (conv imports anyway)."""


# ----------------------------------------------------------------- environment
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict:
    """What besides the problem decides which method is fastest (cached; recomputed when
    methods are registered, unregistered or rediscovered)."""
    gen = REGISTRY.generation
    cached = _env_cache.get("env")
    if cached is not None and _env_cache.get("gen") == gen:
        return cached
    from . import __version__
    from ._buildinfo import cpu_has
    from ._config import _kernel_builds

    kernels, _, threading_kind = _kernel_builds()
    env = {
        "conv": __version__,
        "kernels": kernels,
        "threading": threading_kind,
        "cpu": _cpu_model(),
        "simd": [f for f in ("AVX2", "FMA3", "AVX512F") if cpu_has(f)],
        "methods": REGISTRY.method_versions(),
    }
    _env_cache.update(env=env, gen=gen, fingerprint=json.dumps(env, sort_keys=True))
    return env


def _fingerprint() -> str:
    environment()
    return _env_cache["fingerprint"]


# -------------------------------------------------------------------- entries
def problem(spec, n) -> dict:
    """The problem part of a key, as JSON-ready data."""
    return {
        "x_shape": [n, *spec.in_shape],
        "w_shape": list(spec.w.shape),
        "dtype": spec.dtype.name,
        "result_dtype": spec.result_dtype.name,
        "stride": list(spec.stride),
        "padding": [list(p) for p in spec.padding],
        "dilation": list(spec.dilation),
        "threads": spec.threads,
    }


def _key(prob: dict) -> tuple:
    """The problem as a hashable tuple (conv2d's lookups build it straight from a Spec)."""
    return (prob["x_shape"][0], tuple(prob["x_shape"][1:]), tuple(prob["w_shape"]),
            prob["dtype"], prob["result_dtype"], tuple(prob["stride"]),
            tuple(tuple(p) for p in prob["padding"]), tuple(prob["dilation"]), prob["threads"])


def _spec_key(spec, n) -> tuple:
    return (n, spec.in_shape, spec.w.shape, DTYPE_NAMES[spec.dtype],
            _RESULT_NAMES[spec.result_dtype], spec.stride, spec.padding, spec.dilation,
            spec.threads)


_RESULT_NAMES = {**DTYPE_NAMES, np.dtype(np.float16): "float16"}


def lookup(spec, n, effort: Optional[str]):
    """(method, threads, measured times) for this problem from wisdom matching this
    environment, or None. The batch size must match too (None, a plan's "any batch", only
    matches None: a choice measured at one batch size may be wrong at another);
    ``effort`` (None: any) only accepts entries measured with at least that effort. A
    method that cannot be loaded now is ignored."""
    if not ENTRIES:
        return None
    entry = ENTRIES.get((_fingerprint(), _spec_key(spec, n)))
    if entry is None:
        return None
    if effort is not None and EFFORT_RANK[entry["effort"]] < EFFORT_RANK[effort]:
        return None
    try:
        method = REGISTRY.usable(entry["method"])
    except Exception:  # noqa: BLE001 - unusable now: decide without wisdom
        return None
    if DTYPE_NAMES[spec.dtype] not in method.dtypes:
        return None
    return method, min(entry["threads"], spec.threads), dict(entry.get("seconds", {}))


def record(spec, n, method: str, threads: int, effort: str, times: dict) -> None:
    """Keep what a measurement found (replacing an entry of lower or equal effort)."""
    entry = {
        "problem": problem(spec, n),
        "environment": environment(),
        "method": method,
        "threads": int(threads),
        "effort": effort,
        "seconds": {k: v for k, v in times.items() if isinstance(v, float)},
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    key = (_fingerprint(), _key(entry["problem"]))
    global GENERATION
    with _lock:
        old = ENTRIES.get(key)
        if old is None or EFFORT_RANK[old["effort"]] <= EFFORT_RANK[effort]:
            ENTRIES[key] = entry
            GENERATION += 1


# ------------------------------------------------------------------ the file
def export(path) -> int:
    """Write every entry to ``path`` as JSON (atomically: a temporary file renamed);
    returns how many."""
    with _lock:
        entries = [ENTRIES[k] for k in sorted(ENTRIES)]
    doc = {"format": FORMAT, "version": VERSION,
           "note": "conv wisdom: which conv2d method was fastest for each problem on one "
                   "machine and build; written by conv.export_wisdom",
           "entries": entries}
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    text = json.dumps(doc, indent=1, sort_keys=True)
    # lists of numbers and strings on one line each: [3, 3, 64, 64], not five lines
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  text)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
    return len(entries)


def _fail(path, why):
    raise ValueError(f"{path} is not a conv wisdom file ({FORMAT} version {VERSION}): {why}; "
                     f"the wisdom in memory is unchanged")


def _int_list(value, length, what, path, allow_none_first=False):
    if not isinstance(value, list) or len(value) != length:
        _fail(path, f"{what} must be a list of {length}")
    for i, v in enumerate(value):
        if i == 0 and allow_none_first and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            _fail(path, f"{what} must hold ints >= 0; got {value!r}")


def _check_entry(e, path, i):
    where = f"entry {i}"
    if not isinstance(e, dict):
        _fail(path, f"{where} is not an object")
    for field, kind in (("problem", dict), ("environment", dict), ("method", str),
                        ("threads", int), ("effort", str)):
        if not isinstance(e.get(field), kind) or isinstance(e.get(field), bool):
            _fail(path, f"{where} lacks a valid {field!r}")
    if e["effort"] not in EFFORT_RANK or e["threads"] < 1:
        _fail(path, f"{where} has effort {e['effort']!r} and threads {e['threads']!r}")
    if "seconds" in e and not isinstance(e["seconds"], dict):
        _fail(path, f"{where}'s 'seconds' must be an object")
    p = e["problem"]
    expected = {"x_shape", "w_shape", "dtype", "result_dtype", "stride", "padding",
                "dilation", "threads"}
    if set(p) != expected:
        _fail(path, f"{where}'s problem must have exactly the fields {sorted(expected)}")
    _int_list(p["x_shape"], 4, f"{where}'s x_shape", path, allow_none_first=True)
    _int_list(p["w_shape"], 4, f"{where}'s w_shape", path)
    _int_list(p["stride"], 2, f"{where}'s stride", path)
    _int_list(p["dilation"], 2, f"{where}'s dilation", path)
    if not isinstance(p["padding"], list) or len(p["padding"]) != 2:
        _fail(path, f"{where}'s padding must be [[top, bottom], [left, right]]")
    for pair in p["padding"]:
        _int_list(pair, 2, f"{where}'s padding", path)
    if p["dtype"] not in ("float32", "float64") or p["result_dtype"] not in (
            "float16", "float32", "float64"):
        _fail(path, f"{where} has dtype {p['dtype']!r} / {p['result_dtype']!r}")
    if isinstance(p["threads"], bool) or not isinstance(p["threads"], int) or p["threads"] < 1:
        _fail(path, f"{where}'s problem threads must be an int >= 1")


def import_(path) -> dict:
    """Read ``path``; take its entries for this environment (replacing entries for the
    same problems), count and drop the rest. {"imported": k, "ignored": m}."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError as exc:
        _fail(path, f"not JSON ({exc})")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(path, "its 'format' field is not " + repr(FORMAT))
    if doc.get("version") != VERSION:
        _fail(path, f"version {doc.get('version')!r}")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        _fail(path, "'entries' is not a list")
    for i, e in enumerate(entries):
        _check_entry(e, path, i)
    fp = _fingerprint()
    env = environment()
    taken = {}
    for e in entries:
        if json.dumps(e["environment"], sort_keys=True) == fp and e["environment"] == env:
            taken[(fp, _key(e["problem"]))] = e
    global GENERATION
    with _lock:
        ENTRIES.update(taken)
        GENERATION += 1
    return {"imported": len(taken), "ignored": len(entries) - len(taken)}


def forget() -> None:
    """Drop every entry."""
    global GENERATION
    with _lock:
        ENTRIES.clear()
        GENERATION += 1


def load_from_environment() -> None:
    """CONV_WISDOM=path: import it now; a failure is a WisdomWarning, never an error."""
    path = os.environ.get("CONV_WISDOM", "").strip()
    if not path:
        return
    import warnings

    try:
        import_(path)
    except Exception as exc:  # noqa: BLE001 - conv must import whatever the file holds
        warnings.warn(f"CONV_WISDOM={path}: not imported ({type(exc).__name__}: {exc})",
                      WisdomWarning, stacklevel=3)
