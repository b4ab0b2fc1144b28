"""What people read: progress lines on stderr, the tables and notes on stdout."""
from __future__ import annotations

import json
import math
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .frameworks import TF_BASELINE, TORCH_BASELINE


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def jsonable(value):
    """value with NaN and Inf as None and NumPy scalars as Python numbers (strict JSON)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(out, doc) -> None:
    """doc as one strict JSON document (NaN and Inf as null) on ``out``."""
    json.dump(jsonable(doc), out, indent=2, allow_nan=False)
    out.write("\n")


class Progress:
    """Progress lines on stderr (a single updating line on a terminal)."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self._open = False

    def line(self, msg: str) -> None:
        if not self.enabled:
            return
        self._end_update()
        print(f"conv: {msg}", file=self.stream, flush=True)

    def update(self, msg: str, *, important: bool = False) -> None:
        """Transient status: rewritten in place on a terminal, else printed if important."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write(f"\rconv: {msg}\x1b[K")
            self.stream.flush()
            self._open = True
        elif important:
            print(f"conv: {msg}", file=self.stream, flush=True)

    def clear(self) -> None:
        """Erase a transient status line (before writing to stdout on the same terminal)."""
        self._end_update()

    def _end_update(self) -> None:
        if self._open:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._open = False


# ---------------------------------------------------------------- cells
def _scaled(v: float, small: float, small_fmt: str) -> str:
    """About three significant digits: 1,234 / 12.3 / 1.23, and small_fmt below small."""
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= small:
        return f"{v:.2f}"
    return format(v, small_fmt)


def fmt_ms(ms: Optional[float]) -> str:
    return "-" if ms is None else _scaled(ms, 1, ".3f")


def _fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else _scaled(r, 0.1, ".2g") + "x"


def _fmt_err(e: Optional[float]) -> str:
    if e is None:
        return "-"
    if e == 0:
        return "0"
    if math.isnan(e) or math.isinf(e):
        return str(e)
    return f"{e:.1e}"


def _fmt_gflops(g: Optional[float]) -> str:
    if g is None:
        return "-"
    return f"{g:.3g}" if g < 100 else f"{g:.0f}"


def _fmt_peak(row, ceiling: Optional[float]) -> str:
    if row.gflops is None or not ceiling:
        return "-"
    pct = 100.0 * row.gflops / ceiling
    return "<1%" if pct < 0.5 else f"{pct:.0f}%"


def _markers(row) -> Tuple[str, str]:
    star = "*" if row.extrapolated else ""
    bang = "!" if row.within_tolerance is False else ""
    return star, bang


# ---------------------------------------------------------------- tables
def render_table(headers: Sequence[str], body: Sequence[Sequence[str]],
                 left: Sequence[int] = (0,)) -> str:
    """An aligned plain-text table; columns in ``left`` are left-aligned."""
    widths = [len(h) for h in headers]
    for line in body:
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells):
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers), "  ".join("-" * wd for wd in widths)]
    lines += [fmt(b) if b else "" for b in body]
    return "\n".join(lines)


def _has(rows, method: str) -> bool:
    return any(r.method == method and r.status == "ok" for r in rows)


def format_article_table(rows: Sequence, ceiling: Optional[float]) -> str:
    """The default (article) table for one case."""
    has_tf, has_torch, has_py = (_has(rows, TF_BASELINE), _has(rows, TORCH_BASELINE),
                                 _has(rows, "python"))
    headers = ["method", "max abs err", "max rel err", "time (ms)", "GFLOP/s", "% peak"]
    headers += ["vs TF"] * has_tf + ["vs torch"] * has_torch + ["vs python"] * has_py
    body = []
    for r in rows:
        if r.status != "ok":
            continue
        star, bang = _markers(r)
        cells = [r.label, _fmt_err(r.max_abs_err), _fmt_err(r.max_rel_err) + bang,
                 fmt_ms(r.ms) + star, _fmt_gflops(r.gflops), _fmt_peak(r, ceiling)]
        cells += [_fmt_ratio(r.speedup_vs_tensorflow)] * has_tf
        cells += [_fmt_ratio(r.speedup_vs_torch)] * has_torch
        cells += [_fmt_ratio(r.speedup_vs_python)] * has_py
        body.append(cells)
    return render_table(headers, body)


def format_suite_table(rows: Sequence, ceilings: Dict[str, float]) -> str:
    """The --suite table: every case, one block each."""
    has_tf, has_torch = _has(rows, TF_BASELINE), _has(rows, TORCH_BASELINE)
    headers = ["shape", "dtype", "method", "ms", "GFLOP/s", "% peak"]
    headers += ["vs TF"] * has_tf + ["vs torch"] * has_torch + ["max rel err"]
    body: List[List[str]] = []
    previous = None
    for r in rows:
        if r.status != "ok":
            continue
        key = (r.shape, r.dtype)
        if previous is not None and key != previous:
            body.append([])
        first = key != previous
        previous = key
        star, bang = _markers(r)
        cells = [r.shape if first else "", r.dtype if first else "", r.label,
                 fmt_ms(r.ms) + star, _fmt_gflops(r.gflops),
                 _fmt_peak(r, ceilings.get(r.dtype))]
        cells += [_fmt_ratio(r.speedup_vs_tensorflow)] * has_tf
        cells += [_fmt_ratio(r.speedup_vs_torch)] * has_torch
        cells.append(_fmt_err(r.max_rel_err) + bang)
        body.append(cells)
    return render_table(headers, body, left=(0, 1, 2))


def planning_note(planned: Sequence) -> str:
    """The note on the "planned" rows: what they are, and each plan's planning time."""
    total = sum(r.planning_seconds for r in planned)
    return ("planned: conv.plan(x.shape, w, effort=\"measure\") made once per case (every "
            "installed method but python timed on the problem; the row names its choice), "
            "then called; its time is the call only. Planning took "
            + ", ".join(f"{r.shape} {r.dtype} {r.planning_seconds:.2f} s" for r in planned)
            + (f"; {total:.1f} s in all" if len(planned) > 1 else "")
            + "; the measured choice is dropped from conv's wisdom afterwards, so it does "
            "not steer the \"auto\" rows")


def footnotes(rows: Sequence, tolerance: Dict[str, float]) -> List[str]:
    """The notes under a table: extrapolations, short runs, baselines, failures."""
    notes = []
    for r in rows:
        if r.extrapolated:
            notes.append(
                f"* {r.method} ({r.shape} {r.dtype}): extrapolated linearly from "
                f"{r.measured_images} of {r.x_shape[0]} images (best of {r.runs}); "
                f"--full runs the whole batch")
    for r in rows:
        if r.status == "ok" and not r.extrapolated and r.runs and any(
                o.runs > r.runs for o in rows if o.dtype == r.dtype and o.shape == r.shape):
            notes.append(f"{r.method} ({r.shape} {r.dtype}): best of {r.runs} run(s) only "
                         f"({r.measured_images} images)")
    ok = {r.method for r in rows if r.status == "ok"}
    if TF_BASELINE in ok and "tensorflow" in ok:
        notes.append(f"{TF_BASELINE}: TensorFlow called directly, as the article's reference "
                     "(the baseline of \"vs TF\"); tensorflow: the same TensorFlow kernel as a "
                     "conv method, through conv.conv2d (argument checks, padding, conversion): "
                     "a gap between the two rows is that overhead plus timing noise")
    if TORCH_BASELINE in ok:
        notes.append(f"{TORCH_BASELINE}: torch.nn.functional.conv2d on x as a channels_last "
                     "tensor (the NHWC array seen as NCHW) and OIHW weights made before "
                     "timing, the baseline of \"vs torch\"")
    planned = [r for r in rows if r.kind == "planned" and r.planning_seconds is not None]
    if planned:
        notes.append(planning_note(planned))
    if any(r.within_tolerance is False for r in rows):
        notes.append("! error above tolerance (max rel err > "
                     + ", ".join(f"{v:g} for {k}" for k, v in tolerance.items()) + ")")
    for r in rows:
        if r.status == "skipped":
            notes.append(f"not run: {r.method} on {r.shape} {r.dtype} ({r.message})")
        elif r.status == "failed":
            notes.append(f"FAILED: {r.method} on {r.shape} {r.dtype}: {r.message}")
    return notes
