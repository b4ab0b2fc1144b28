"""``--network``: a real network's conv layers, layer by layer, conv's "auto" and a
measured plan against TensorFlow and PyTorch side by side, and the whole network's total.

For each distinct layer a plan is made once with ``conv.plan(..., effort="measure")``
(planning.measured_plan; its planning time is reported apart, never in a time). The
layer is then timed in ``rounds`` rounds; in a round each contender (auto, the plan,
TensorFlow, PyTorch, the order rotating from round to round) makes one untimed call and
then keeps its best of several consecutive calls (timing.rounds_of_blocks), and after
each framework's block the loop pauses measure.SPIN_PAUSE_SECONDS (the frameworks' idle
threads keep spinning after their calls, slowing whatever runs next: under per-call
interleaving every call, in blocks without the pause the next contender's whole block);
a layer's time is the median of its rounds. The network's total is the sum over its layers
of time x multiplicity, for each contender alike, and so are the totals per kind of layer
(1x1, 3x3, depthwise 3x3, ...).

Grouped layers (MobileNet-v2's depthwise 3x3) run conv.conv2d(..., groups=g), PyTorch's
conv2d(..., groups=g) and TensorFlow's tf.nn.depthwise_conv2d (depthwise) or tf.nn.conv2d
(other groupings); a baseline whose first call fails has no time for that layer, and the
table says why. GB/s: the bytes one call must move at least (x, w and the output, each
once) over the time, to set against the machine's copy bandwidth.
"""
from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

import conv

from .. import _introspect
from . import frameworks, measure, planning
from .frameworks import TF_BASELINE, TORCH_BASELINE
from .reference import errors
from .report import fmt_ms, one_line, render_table
from .shapes import NETWORKS, layer
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
    groups: int = 1
    bytes: int = 0  # one call: x, w and the output
    chosen: Optional[str] = None
    seconds: Dict[str, float] = field(default_factory=dict)  # contender -> median of rounds
    max_rel_err_vs_tf: Optional[float] = None
    plan_method: Optional[str] = None  # the measured plan's choice
    planning_seconds: Optional[float] = None  # making that plan (once per distinct layer)
    planned_max_rel_err_vs_tf: Optional[float] = None
    absent: Dict[str, str] = field(default_factory=dict)  # baseline -> why it has no time

    @property
    def key(self) -> tuple:
        """The layer's problem: layers with the same key are measured once."""
        return (tuple(self.x_shape), tuple(self.w_shape), self.stride, self.padding,
                self.groups, self.dtype)

    @property
    def kind(self) -> str:
        """The kind of layer, as the per-kind totals name it: "1x1", "3x3", "depthwise 3x3",
        "grouped 3x3"."""
        k = self.w_shape[0]
        if self.groups > 1:
            return f"{'depthwise' if self.w_shape[2] == 1 else 'grouped'} {k}x{k}"
        return f"{k}x{k}"

    @property
    def gb_per_s(self) -> Dict[str, float]:
        """GB/s per contender: self.bytes over its time."""
        return {m: gb_per_s(self.bytes, t) for m, t in self.seconds.items()}


def gb_per_s(nbytes: float, seconds: Optional[float]) -> Optional[float]:
    """nbytes moved in ``seconds``, in GB/s (10^9 bytes); None without a time."""
    return nbytes / seconds / 1e9 if seconds else None


def fmt_gb_per_s(v: Optional[float]) -> str:
    """About three significant digits: 0.123 / 12.3 / 123."""
    return "-" if v is None else f"{v:.3g}" if v < 100 else f"{v:.0f}"


def call_bytes(x_shape, w_shape, out_shape, dtype) -> int:
    """The bytes one call reads and writes at least: x, w and the output, each once."""
    return np.dtype(dtype).itemsize * sum(int(np.prod(s)) for s in (x_shape, w_shape, out_shape))


def _layer_inputs(batch, h, c_in, k, c_out, dtype, seed, groups=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, h, h, c_in)).astype(dtype)
    fan_in = k * k * (c_in // groups)
    w = (rng.standard_normal((k, k, c_in // groups, c_out)) / np.sqrt(fan_in)).astype(dtype)
    return x, w


def measure_layer(row: LayerRow, threads: int, rounds: int, torch) -> None:
    """Make the layer's measured plan, then fill row.seconds (auto, the plan, and the
    baselines that are installed) and the errors against TensorFlow. A baseline whose
    first call raises (a TensorFlow without grouped convolution) is left out of the layer,
    the reason in row.absent."""
    gc.collect()
    n, h, _, c_in = row.x_shape
    k, _, _, c_out = row.w_shape
    g = row.groups
    x, w = _layer_inputs(n, h, c_in, k, c_out, row.dtype, seed=h * 1000 + c_in + c_out,
                         groups=g)
    s, p = row.stride, row.padding
    pads = ((p, p), (p, p))
    plan = planning.measured_plan(x.shape, w, threads, stride=s, padding=pads, groups=g)
    row.plan_method, row.planning_seconds = plan.method, plan.planning_seconds
    fns = {AUTO: lambda: conv.conv2d(x, w, stride=s, padding=pads, threads=threads, groups=g),
           PLANNED: lambda: plan(x)}
    row.chosen = _introspect.auto_choice(x, w, threads, stride=s, padding=pads, groups=g)
    if frameworks.tensorflow_available():
        fns[TF_BASELINE] = frameworks.tensorflow_callable(x, w, s, p, groups=g)
    if torch is not None:
        fns[TORCH_BASELINE], _ = frameworks.torch_callable(torch, x, w, threads, s, p,
                                                           groups=g)
    first = {}  # first calls: errors, start-up
    for name, fn in list(fns.items()):
        if name not in (TF_BASELINE, TORCH_BASELINE):
            first[name] = fn()
            continue
        try:
            first[name] = fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the layer is measured without it
            row.absent[name] = f"{type(exc).__name__}: {one_line(str(exc))}"
            del fns[name]
    if TF_BASELINE in first:
        row.max_rel_err_vs_tf = errors(first[AUTO], first[TF_BASELINE])[1]
        row.planned_max_rel_err_vs_tf = errors(first[PLANNED], first[TF_BASELINE])[1]
    names = list(fns)
    pauses = [measure.SPIN_PAUSE_SECONDS if m in (TF_BASELINE, TORCH_BASELINE) else 0.0
              for m in names]
    per_fn = rounds_of_blocks([fns[m] for m in names], REPEAT, rounds, pauses)
    row.seconds = {m: statistics.median(per_fn[i]) for i, m in enumerate(names)}


def layer_rows(network: str, batch: int, dtype: str) -> List[LayerRow]:
    rows = []
    for entry in NETWORKS[network]:
        name, h, c_in, k, s, p, c_out, count, g = layer(entry)
        if c_in % g or c_out % g:
            raise ValueError(f"{network} {name}: groups={g} must divide C_in={c_in} and "
                             f"C_out={c_out}")
        oh = (h + 2 * p - k) // s + 1
        x_shape, w_shape = [batch, h, h, c_in], [k, k, c_in // g, c_out]
        out_shape = (batch, oh, oh, c_out)
        rows.append(LayerRow(network, name, count, batch, dtype, x_shape, w_shape, s, p,
                             _introspect.flops(out_shape, w_shape), groups=g,
                             bytes=call_bytes(x_shape, w_shape, out_shape, dtype)))
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
    dst.absent = dict(src.absent)
    for name in ("chosen", "max_rel_err_vs_tf", "plan_method", "planning_seconds",
                 "planned_max_rel_err_vs_tf"):
        setattr(dst, name, getattr(src, name))


def _pct(gflops: float, ceiling: Optional[float]) -> str:
    return f"{100 * gflops / ceiling:.0f}%" if ceiling else "-"


def _baselines(rows: Sequence[LayerRow]) -> List[str]:
    """The baselines with a column: timed on some layer, or absent from one with a reason."""
    return [b for b in (TF_BASELINE, TORCH_BASELINE)
            if any(b in r.seconds or b in r.absent for r in rows)]


SHORT = {TF_BASELINE: "TF", TORCH_BASELINE: "torch"}


def format_table(rows: Sequence[LayerRow], ceiling: Optional[float]) -> str:
    """One (network, batch, dtype): a line per layer, then the total per kind of layer
    (when there are several kinds) and the network's total."""
    bases = _baselines(rows)
    headers = ["layer", "x", "GFLOP", "auto ms", "GFLOP/s", "% peak", "GB/s", "planned ms",
               "plan"]
    headers += [f"{SHORT[b]} ms" for b in bases] + [f"vs {SHORT[b]}" for b in bases]
    body = []

    def ms(secs, m):
        return "n/a" if secs.get(m) is None else fmt_ms(secs[m] * 1e3)

    def line(label, count, flops, nbytes, secs, plan):
        g = flops / secs[AUTO] / 1e9
        cells = [label, count, f"{flops / 1e9:.3g}", fmt_ms(secs[AUTO] * 1e3), f"{g:.0f}",
                 _pct(g, ceiling), fmt_gb_per_s(gb_per_s(nbytes, secs[AUTO])), ms(secs, PLANNED),
                 plan]
        cells += [ms(secs, b) for b in bases]
        cells += ["-" if secs.get(b) is None else f"{secs[b] / secs[AUTO]:.2f}x"
                  for b in bases]
        return cells

    def sum_line(label, part):
        return line(f"{label} ({sum(r.count for r in part)} layers)", "",
                    sum(r.count * r.flops for r in part), sum(r.count * r.bytes for r in part),
                    totals(part), "")

    for r in rows:
        body.append(line(r.layer, str(r.count), r.flops, r.bytes, r.seconds,
                         r.plan_method or "-"))
    body.append([])
    kinds = by_kind(rows)
    if len(kinds) > 1:
        body += [sum_line(f"{kind} total", part) for kind, part in kinds.items()]
    body.append(sum_line("total", rows))
    table = render_table(headers, body, left=(0, 8))
    reasons: Dict[tuple, List[str]] = {}
    for r in rows:
        for b, why in r.absent.items():
            reasons.setdefault((b, why), []).append(r.layer)
    for (b, why), layers in reasons.items():
        table += (f"\nn/a: {b} failed on {', '.join(layers)} ({why[:200]}), so the totals "
                  f"with it have no {SHORT[b]} time")
    return table


def by_kind(rows: Sequence[LayerRow]) -> Dict[str, List[LayerRow]]:
    """The rows per kind of layer (LayerRow.kind), kinds in the order they first come."""
    kinds: Dict[str, List[LayerRow]] = {}
    for r in rows:
        kinds.setdefault(r.kind, []).append(r)
    return kinds


def depthwise_line(rows: Sequence[LayerRow]) -> Optional[str]:
    """The depthwise layers' total as the ratios auto / baseline (< 1: conv is faster), or
    None when the network has no depthwise layer."""
    part = [r for r in rows if r.kind.startswith("depthwise")]
    if not part:
        return None
    total = totals(part)
    nbytes = sum(r.count * r.bytes for r in part)
    text = (f"depthwise layers total ({sum(r.count for r in part)} layers, "
            f"{len({r.key for r in part})} distinct): auto {fmt_ms(total[AUTO] * 1e3)} ms, "
            f"{fmt_gb_per_s(gb_per_s(nbytes, total[AUTO]))} GB/s")
    for b in _baselines(rows):
        t = total.get(b)
        text += (f"; auto / {SHORT[b]} " + ("n/a" if t is None else
                 f"{total[AUTO] / t:.2f} ({SHORT[b]} {fmt_ms(t * 1e3)} ms, "
                 f"{fmt_gb_per_s(gb_per_s(nbytes, t))} GB/s)"))
    return text


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


def totals(rows: Sequence[LayerRow]) -> Dict[str, Optional[float]]:
    """Seconds for the whole network (or the rows given), per contender; None for a
    contender without a time on one of the rows."""
    names = list(dict.fromkeys(m for r in rows for m in r.seconds))
    return {m: (sum(r.count * r.seconds[m] for r in rows)
                if all(m in r.seconds for r in rows) else None) for m in names}
