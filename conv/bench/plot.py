"""The bar chart of ``--plot`` (matplotlib, imported only here)."""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from . import frameworks
from .report import fmt_ms


def plot(rows: Sequence, path: str, title: str) -> None:
    """Bar chart of time per method (log scale), one group of bars per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok" and r.seconds]
    cases: List[Tuple[str, str]] = []
    methods: List[str] = []
    for r in ok:
        if (r.shape, r.dtype) not in cases:
            cases.append((r.shape, r.dtype))
        if r.method not in methods:
            methods.append(r.method)
    single = len(cases) == 1
    fig_w = max(7.0, (len(methods) if single else len(cases) * len(methods) * 0.4) + 4)
    fig, ax = plt.subplots(figsize=(min(fig_w, 18), 5))
    cmap = plt.get_cmap("tab10")
    width = 0.8 / len(methods) if not single else 0.7
    for mi, m in enumerate(methods):
        xs, ys, hatches = [], [], []
        for ci, key in enumerate(cases):
            r = next((r for r in ok if (r.shape, r.dtype) == key and r.method == m), None)
            if r is None:
                continue
            xs.append(mi if single else ci - 0.4 + width * (mi + 0.5))
            ys.append(r.ms)
            hatches.append("//" if r.extrapolated else "")
        label = next((r.label for r in ok if r.method == m), m)
        bars = ax.bar(xs, ys, width=width, color=cmap(mi % 10), label=label,
                      edgecolor="black", linewidth=0.5)
        for bar, hatch, y in zip(bars, hatches, ys):
            bar.set_hatch(hatch)
            if single or len(cases) <= 4:
                ax.annotate(fmt_ms(y) + ("*" if hatch else ""), (bar.get_x() + bar.get_width() / 2, y),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                            textcoords="offset points")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    all_ms = [r.ms for r in ok]
    if all_ms:
        ax.set_ylim(min(all_ms) / 2, max(all_ms) * 3)
    ax.set_ylabel("time (ms, log scale; lower is better)")
    if single:
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([next((r.label for r in ok if r.method == m), m) for m in methods],
                           rotation=20, ha="right")
    else:
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"{s}\n{d}" for s, d in cases])
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method",
                  title_fontsize=8)
    ax.set_title(title, fontsize=10)
    if any(r.extrapolated for r in ok):
        fig.text(0.01, 0.01, "* hatched: extrapolated from a slice of the batch", fontsize=8)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_plot_path(path: str) -> None:
    """--plot: matplotlib installed, a known image format, a regular file that can be
    written; all checked before any work (ValueError otherwise)."""
    if not frameworks.matplotlib_available():
        raise ValueError('--plot needs matplotlib: pip install "conv2d-cpu[plot]"')
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())
    if os.path.isdir(path):
        raise ValueError(f"--plot {path!r} is a directory; name a file, e.g. "
                         f"{os.path.join(path, 'times.png')!r}")
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in formats:
        raise ValueError(f"--plot {path!r}: unknown image format {ext or '(none)'!r}; "
                         f"end the name with one of: {', '.join('.' + f for f in formats)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"--plot {path!r}: directory {parent!r} does not exist")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise ValueError(f"--plot {path!r} is not a regular file")
        if not os.access(path, os.W_OK):
            raise ValueError(f"--plot {path!r}: the file is not writable")
        return
    try:  # create it for a moment: the only sure test that the directory takes a file
        with open(path, "xb"):
            pass
        os.remove(path)
    except OSError as exc:
        raise ValueError(f"--plot {path!r}: cannot write there ({exc.strerror})") from None
