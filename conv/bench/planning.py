"""Plans as a user measures them, ``conv.plan(..., effort="measure")``: the "planned" rows
of ``--suite`` and ``--network``, and ``--wisdom FILE``.

A measured plan adds its choice to conv's wisdom, and conv2d's "auto" follows wisdom. So
each plan here is measured afresh (no wisdom in memory while it is made) and the wisdom is
put back as it was afterwards: the "auto" rows keep showing auto's own choice (or the
wisdom the user imported), and a plan's planning time is always a measurement's.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import conv

from .report import render_table
from .shapes import tup

PLANNED = "planned"  # the rows' and columns' name
EFFORT = "measure"


@contextlib.contextmanager
def wisdom_set_aside():
    """Run the block with no wisdom in memory; afterwards the wisdom is what it was before
    (whatever the block measured is dropped). Through the public API: the wisdom is
    exported to a temporary file and imported back."""
    with tempfile.TemporaryDirectory(prefix="conv-bench-") as tmp:
        path = os.path.join(tmp, "wisdom.json")
        kept = conv.export_wisdom(path)
        conv.forget_wisdom()
        try:
            yield
        finally:
            conv.forget_wisdom()
            if kept:
                conv.import_wisdom(path)


def measured_plan(x_shape, w: np.ndarray, threads: int, **kwargs):
    """conv.plan(x_shape, w, threads=threads, effort="measure", **kwargs), measured afresh;
    the wisdom in memory is left as it was."""
    with wisdom_set_aside():
        return conv.plan(tuple(x_shape), w, threads=threads, effort=EFFORT, **kwargs)


# ---------------------------------------------------------------- --wisdom FILE
@dataclass
class Problem:
    """One problem ``--wisdom`` measures: a square ``padding`` of zeros on every side;
    ``groups`` as conv.plan's (w is (KH, KW, C_in / groups, C_out))."""

    name: str
    x_shape: Tuple[int, int, int, int]
    w_shape: Tuple[int, int, int, int]
    dtype: str
    stride: int = 1
    padding: int = 0
    groups: int = 1
    also: int = 0  # further problems (network layers) of the same shape, measured once
    method: Optional[str] = None  # the plan's choice
    planning_seconds: Optional[float] = None
    error: str = ""

    @property
    def key(self) -> tuple:
        return self.x_shape, self.w_shape, self.dtype, self.stride, self.padding, self.groups


def distinct(problems: Sequence[Problem]) -> List[Problem]:
    """The problems in order, each shape measured once (``also`` counts the repeats)."""
    seen: Dict[tuple, Problem] = {}
    for p in problems:
        if p.key in seen:
            seen[p.key].also += 1
        else:
            seen[p.key] = p
    return list(seen.values())


def check_path(path: str) -> None:
    """--wisdom FILE: a regular file (or none yet) in a directory that takes files; checked
    before any work (ValueError otherwise). conv.export_wisdom writes a temporary file
    there and renames it over FILE."""
    if os.path.isdir(path):
        raise ValueError(f"--wisdom {path!r} is a directory; name a file, e.g. "
                         f"{os.path.join(path, 'wisdom.json')!r}")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"--wisdom {path!r} is not a regular file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"--wisdom {path!r}: directory {parent!r} does not exist")
    try:  # the only sure test that the directory takes a file
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".conv-wisdom-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"--wisdom {path!r}: cannot write there ({exc.strerror})") from None


def _weights(p: Problem) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal(p.w_shape).astype(p.dtype)


def measure_and_write(problems: Sequence[Problem], path: str, threads: int,
                      progress) -> int:
    """Plan each problem with effort="measure" (filling its method and planning time, or
    its error), write the wisdom they made to ``path``, and return the number of entries
    written. The wisdom in memory is left as it was (what was imported is not written)."""
    with wisdom_set_aside():
        for i, p in enumerate(problems, 1):
            progress.update(f"wisdom: [{i}/{len(problems)}] {p.name} {p.dtype}: conv.plan "
                            f"(effort=\"{EFFORT}\")", important=True)
            pads = ((p.padding, p.padding), (p.padding, p.padding))
            try:
                plan = conv.plan(p.x_shape, _weights(p), stride=p.stride, padding=pads,
                                 threads=threads, effort=EFFORT, groups=p.groups)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - the others are still measured
                p.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                progress.line(f"wisdom: {p.name} {p.dtype} failed: {p.error}")
                continue
            p.method, p.planning_seconds = plan.method, plan.planning_seconds
        return conv.export_wisdom(path)


def format_table(problems: Sequence[Problem]) -> str:
    """A line per problem: its shapes, dtype, the method the plan chose, planning time."""
    geometry = any(p.stride != 1 or p.padding for p in problems)
    grouped = any(p.groups != 1 for p in problems)
    headers = ["problem", "x", "w"] + ["stride", "pad"] * geometry + ["groups"] * grouped
    headers += ["dtype", "method", "planning s"]
    body = []
    for p in problems:
        name = p.name + (f" (+{p.also} more of this shape)" if p.also else "")
        cells = [name, tup(p.x_shape), tup(p.w_shape)]
        cells += [str(p.stride), str(p.padding)] * geometry + [str(p.groups)] * grouped
        cells += [p.dtype, p.method or "FAILED",
                  "-" if p.planning_seconds is None else f"{p.planning_seconds:.2f}"]
        body.append(cells)
    return render_table(headers, body, left=(0, 1, 2))
