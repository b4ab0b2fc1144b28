"""``--network``: a real network's conv layers, layer by layer, conv's "auto" and a
measured plan against TensorFlow and PyTorch side by side, and the whole network's total.

For each distinct layer a plan is made once with ``conv.plan(..., effort="measure")``
(planning.measured_plan; its planning time is reported apart, never in a time). The
layer is then timed in ``rounds`` rounds; in a round each contender (auto, the plan,
TensorFlow, PyTorch, the order rotating from round to round) makes one untimed call and
then keeps its best of several consecutive calls (timing.rounds_of_blocks: the frameworks'
idle threads keep spinning after their calls, which would slow the next contender's call
under per-call interleaving); a layer's time is the median of its rounds. The network's total is the sum over its layers
of time x multiplicity, for each contender alike.
"""
from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

import conv

from .. import _introspect
from . import frameworks, planning
from .frameworks import TF_BASELINE, TORCH_BASELINE
from .reference import errors
from .report import fmt_ms, render_table
from .shapes import NETWORKS
from .timing import rounds_of_blocks

AUTO = "auto"
PLANNED = planning.PLANNED
#: per contender and round: at least 3 calls, then more while under 0.2 s, at most 15
REPEAT = (3, 15, 0.2)
ROUNDS = 3


@dataclass
class LayerRow:
    """One layer of the network at one batch size and dtype; times in seconds."""

    network: str
    layer: str
    count: int
    batch: int
    dtype: str
    x_shape: List[int]
    w_shape: List[int]
    stride: int
    padding: int
    flops: int  # one call
    chosen: Optional[str] = None
    seconds: Dict[str, float] = field(default_factory=dict)  # contender -> median of rounds
    max_rel_err_vs_tf: Optional[float] = None
    plan_method: Optional[str] = None  # the measured plan's choice
    planning_seconds: Optional[float] = None  # making that plan (once per distinct layer)
    planned_max_rel_err_vs_tf: Optional[float] = None

    @property
    def key(self) -> tuple:
        """The layer's problem: layers with the same key are measured once."""
        return tuple(self.x_shape), tuple(self.w_shape), self.stride, self.padding, self.dtype


def _layer_inputs(batch, h, c_in, k, c_out, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, h, h, c_in)).astype(dtype)
    w = (rng.standard_normal((k, k, c_in, c_out)) / np.sqrt(k * k * c_in)).astype(dtype)
    return x, w


def measure_layer(row: LayerRow, threads: int, rounds: int, torch) -> None:
    """Make the layer's measured plan, then fill row.seconds (auto, the plan, and the
    baselines that are installed) and the errors against TensorFlow."""
    gc.collect()
    n, h, _, c_in = row.x_shape
    k, _, _, c_out = row.w_shape
    x, w = _layer_inputs(n, h, c_in, k, c_out, row.dtype, seed=h * 1000 + c_in + c_out)
    s, p = row.stride, row.padding
    pads = ((p, p), (p, p))
    plan = planning.measured_plan(x.shape, w, threads, stride=s, padding=pads)
    row.plan_method, row.planning_seconds = plan.method, plan.planning_seconds
    fns = {AUTO: lambda: conv.conv2d(x, w, stride=s, padding=pads, threads=threads),
           PLANNED: lambda: plan(x)}
    row.chosen = _introspect.auto_choice(x, w, threads, stride=s, padding=pads)
    if frameworks.tensorflow_available():
        fns[TF_BASELINE] = frameworks.tensorflow_callable(x, w, s, p)
    if torch is not None:
        fns[TORCH_BASELINE], _ = frameworks.torch_callable(torch, x, w, threads, s, p)
    first = {name: fn() for name, fn in fns.items()}  # first calls: errors, start-up
    if TF_BASELINE in first:
        row.max_rel_err_vs_tf = errors(first[AUTO], first[TF_BASELINE])[1]
        row.planned_max_rel_err_vs_tf = errors(first[PLANNED], first[TF_BASELINE])[1]
    names = list(fns)
    per_fn = rounds_of_blocks([fns[m] for m in names], REPEAT, rounds)
    row.seconds = {m: statistics.median(per_fn[i]) for i, m in enumerate(names)}


def layer_rows(network: str, batch: int, dtype: str) -> List[LayerRow]:
    rows = []
    for name, h, c_in, k, s, p, c_out, count in NETWORKS[network]:
        oh = (h + 2 * p - k) // s + 1
        rows.append(LayerRow(network, name, count, batch, dtype, [batch, h, h, c_in],
                             [k, k, c_in, c_out], s, p,
                             _introspect.flops((batch, oh, oh, c_out), (k, k, c_in, c_out))))
    return rows


def run(network: str, batches: Sequence[int], dtypes: Sequence[str], threads: int,
        progress, rounds: int = ROUNDS) -> List[LayerRow]:
    """Every layer of ``network`` at each batch size and dtype. Layers of the same shape
    are measured once."""
    torch = frameworks.torch()
    rows: List[LayerRow] = []
    for dtype in dtypes:
        for batch in batches:
            seen: Dict[tuple, LayerRow] = {}
            todo = layer_rows(network, batch, dtype)
            for i, row in enumerate(todo, 1):
                progress.update(f"{network} {dtype} batch {batch}: [{i}/{len(todo)}] "
                                f"{row.layer}", important=True)
                if row.key in seen:
                    _copy_measurement(seen[row.key], row)
                else:
                    measure_layer(row, threads, rounds, torch)
                    seen[row.key] = row
                rows.append(row)
    return rows


def _copy_measurement(src: LayerRow, dst: LayerRow) -> None:
    dst.seconds = dict(src.seconds)
    for name in ("chosen", "max_rel_err_vs_tf", "plan_method", "planning_seconds",
                 "planned_max_rel_err_vs_tf"):
        setattr(dst, name, getattr(src, name))


def _pct(gflops: float, ceiling: Optional[float]) -> str:
    return f"{100 * gflops / ceiling:.0f}%" if ceiling else "-"


def format_table(rows: Sequence[LayerRow], ceiling: Optional[float]) -> str:
    """One (network, batch, dtype): a line per layer, then the total."""
    bases = [b for b in (TF_BASELINE, TORCH_BASELINE) if b in rows[0].seconds]
    short = {TF_BASELINE: "TF", TORCH_BASELINE: "torch"}
    headers = ["layer", "x", "GFLOP", "auto ms", "GFLOP/s", "% peak", "planned ms", "plan"]
    headers += [f"{short[b]} ms" for b in bases] + [f"vs {short[b]}" for b in bases]
    body = []

    def line(label, count, flops, secs, plan):
        g = flops / secs[AUTO] / 1e9
        cells = [label, count, f"{flops / 1e9:.3g}", fmt_ms(secs[AUTO] * 1e3), f"{g:.0f}",
                 _pct(g, ceiling), fmt_ms(secs[PLANNED] * 1e3), plan]
        cells += [fmt_ms(secs[b] * 1e3) for b in bases]
        cells += [f"{secs[b] / secs[AUTO]:.2f}x" for b in bases]
        return cells

    for r in rows:
        body.append(line(r.layer, str(r.count), r.flops, r.seconds, r.plan_method or "-"))
    total = totals(rows)
    body.append([])
    body.append(line(f"total ({sum(r.count for r in rows)} layers)", "",
                     sum(r.count * r.flops for r in rows), total, ""))
    return render_table(headers, body, left=(0, 7))


def planning_total(rows: Sequence[LayerRow]) -> float:
    """Seconds spent making the plans: once per distinct layer."""
    once = {r.key: r.planning_seconds or 0.0 for r in rows}
    return sum(once.values())


def planning_line(rows: Sequence[LayerRow]) -> str:
    """The line under a table: how many plans, and the time their planning took."""
    plans = len({r.key for r in rows})
    return (f"planned: {plans} plans made with conv.plan(..., effort=\"{planning.EFFORT}\"), "
            f"one per distinct layer, in {planning_total(rows):.2f} s of planning (not in "
            f"any time); plan: the method each chose")


def totals(rows: Sequence[LayerRow]) -> Dict[str, float]:
    """Seconds for the whole network, per contender."""
    return {m: sum(r.count * r.seconds[m] for r in rows) for m in rows[0].seconds}
