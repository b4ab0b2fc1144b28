"""``--network``: a real network's conv layers, layer by layer, conv's "auto" against
TensorFlow and PyTorch side by side, and the whole network's total.

Each distinct layer is timed in ``rounds`` rounds; in a round each contender (auto,
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
from . import frameworks
from .frameworks import TF_BASELINE, TORCH_BASELINE
from .reference import errors
from .report import fmt_ms, render_table
from .shapes import NETWORKS
from .timing import rounds_of_blocks

AUTO = "auto"
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


def _layer_inputs(batch, h, c_in, k, c_out, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, h, h, c_in)).astype(dtype)
    w = (rng.standard_normal((k, k, c_in, c_out)) / np.sqrt(k * k * c_in)).astype(dtype)
    return x, w


def measure_layer(row: LayerRow, threads: int, rounds: int, torch) -> None:
    """Fill row.seconds (auto, and the baselines that are installed) and auto's error."""
    gc.collect()
    n, h, _, c_in = row.x_shape
    k, _, _, c_out = row.w_shape
    x, w = _layer_inputs(n, h, c_in, k, c_out, row.dtype, seed=h * 1000 + c_in + c_out)
    s, p = row.stride, row.padding
    pads = ((p, p), (p, p))
    fns = {AUTO: lambda: conv.conv2d(x, w, stride=s, padding=pads, threads=threads)}
    row.chosen = _introspect.auto_choice(x, w, threads, stride=s, padding=pads)
    if frameworks.tensorflow_available():
        fns[TF_BASELINE] = frameworks.tensorflow_callable(x, w, s, p)
    if torch is not None:
        fns[TORCH_BASELINE], _ = frameworks.torch_callable(torch, x, w, threads, s, p)
    first = {name: fn() for name, fn in fns.items()}  # first calls: errors, start-up
    if TF_BASELINE in first:
        row.max_rel_err_vs_tf = errors(first[AUTO], first[TF_BASELINE])[1]
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
                key = (tuple(row.x_shape), tuple(row.w_shape), row.stride, row.padding)
                progress.update(f"{network} {dtype} batch {batch}: [{i}/{len(todo)}] "
                                f"{row.layer}", important=True)
                if key in seen:
                    row.seconds = dict(seen[key].seconds)
                    row.chosen = seen[key].chosen
                    row.max_rel_err_vs_tf = seen[key].max_rel_err_vs_tf
                else:
                    measure_layer(row, threads, rounds, torch)
                    seen[key] = row
                rows.append(row)
    return rows


def _pct(gflops: float, ceiling: Optional[float]) -> str:
    return f"{100 * gflops / ceiling:.0f}%" if ceiling else "-"


def format_table(rows: Sequence[LayerRow], ceiling: Optional[float]) -> str:
    """One (network, batch, dtype): a line per layer, then the total."""
    bases = [b for b in (TF_BASELINE, TORCH_BASELINE) if b in rows[0].seconds]
    short = {TF_BASELINE: "TF", TORCH_BASELINE: "torch"}
    headers = ["layer", "x", "GFLOP", "auto ms", "GFLOP/s", "% peak"]
    headers += [f"{short[b]} ms" for b in bases] + [f"vs {short[b]}" for b in bases]
    body = []

    def line(label, count, flops, secs):
        g = flops / secs[AUTO] / 1e9
        cells = [label, count, f"{flops / 1e9:.3g}", fmt_ms(secs[AUTO] * 1e3), f"{g:.0f}",
                 _pct(g, ceiling)]
        cells += [fmt_ms(secs[b] * 1e3) for b in bases]
        cells += [f"{secs[b] / secs[AUTO]:.2f}x" for b in bases]
        return cells

    for r in rows:
        body.append(line(r.layer, str(r.count), r.flops, r.seconds))
    total = totals(rows)
    body.append([])
    body.append(line(f"total ({sum(r.count for r in rows)} layers)", "",
                     sum(r.count * r.flops for r in rows), total))
    return render_table(headers, body)


def totals(rows: Sequence[LayerRow]) -> Dict[str, float]:
    """Seconds for the whole network, per contender."""
    return {m: sum(r.count * r.seconds[m] for r in rows) for m in rows[0].seconds}
