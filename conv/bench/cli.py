"""The command line of ``python -m conv``: check everything before the long work, measure,
then report (tables, or one JSON document) and pick the exit status.

Progress goes to stderr; stdout carries the tables, or one JSON document with ``--json``.
Bad options give one line on stderr and exit status 2; nothing prints a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import conv

from .. import _introspect
from . import accuracy, frameworks, machine, measure, network, planning, plot, report, selection
from .options import QUICK_BATCH, QUICK_REPEAT, UsageError, build_parser
from .reference import TOLERANCE, select_reference
from .shapes import ARTICLE_SECONDS, ARTICLE_SHAPE, NAMED_SHAPES, SUITE_SHAPES, parse_shape
ARTICLE_LABELS = {"tf.nn.conv2d": "tf.nn.conv2d", "python": "py_conv (= python)",
                  "numpy": "matrix_mult (= numpy)"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m conv`` and the ``conv`` script. Returns the exit status."""
    try:
        return _main(argv)
    except UsageError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - never a traceback
        _error(f"{type(exc).__name__}: {report.one_line(str(exc))}")
        return 1


def _error(msg: str) -> None:
    try:
        sys.stderr.write(f"conv: error: {report.one_line(msg)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- settings
@dataclass
class Settings:
    """A checked command line: what to measure, and how."""

    args: argparse.Namespace
    cases: List[measure.Workload]
    methods: List[str]
    threads: int
    repeat: int
    dtypes: List[str]
    opts: measure.Options
    batches: Tuple[int, ...] = ()  # --network


def settings(argv: Sequence[str]) -> Settings:
    """Parse and check everything before the long work starts (UsageError otherwise)."""
    args = build_parser().parse_args(list(argv))
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise UsageError("stdout is closed: the tables would go nowhere")
    if args.network and (args.suite or args.shape or args.methods or args.plot or args.full):
        raise UsageError("--network measures auto against TensorFlow and PyTorch on the "
                         "network's own layers: it takes no --suite, --shape, --methods, "
                         "--plot or --full")
    if args.wisdom and (args.methods or args.repeat or args.full or args.plot or args.json
                        or args.accuracy):
        raise UsageError("--wisdom times every installed method as conv.plan(effort="
                         "\"measure\") does and writes a file: it takes no --methods, "
                         "--repeat, --full, --plot, --json or --accuracy")
    if args.accuracy and (args.network or args.suite or args.shape or args.plot or args.json):
        raise UsageError("--accuracy runs its own grid: it takes no --network, --suite, "
                         "--shape, --plot or --json")
    if args.batch and not args.network:
        raise UsageError("--batch goes with --network")
    try:
        shapes = [parse_shape(s) for s in args.shape] if args.shape else None
        if args.plot:
            plot.check_plot_path(args.plot)
        if args.wisdom:
            planning.check_path(args.wisdom)
        if args.methods is not None:
            methods = selection.resolve_methods(args.methods)
        else:
            methods = selection.usable_methods(with_python=not args.suite)
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cpus = _introspect.available_cpus()
    if args.threads is not None and args.threads > cpus:
        raise UsageError(f"--threads {args.threads}: this process may run on "
                         f"{cpus} CPU(s); give at most that")
    threads = args.threads or conv.build_info()["default_threads"]
    repeat = args.repeat or (QUICK_REPEAT if args.quick else measure.DEFAULT_REPEAT)
    suite_like = args.suite or (args.wisdom and not args.network)  # the suite's problems
    dtype = args.dtype or ("both" if suite_like else "float32")
    dtypes = ["float32", "float64"] if dtype == "both" else [dtype]
    if shapes is None:
        names = SUITE_SHAPES if suite_like else (ARTICLE_SHAPE,)
        shapes = [(nm, *NAMED_SHAPES[nm]) for nm in names]
    try:
        machine.check_memory(shapes, dtypes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cases = []
    for name, xs, ws in shapes:
        note = ""
        if args.quick and not suite_like and not args.shape and xs[0] > QUICK_BATCH:
            note = f"--quick: {QUICK_BATCH} of the article's {xs[0]} images"
            xs = (QUICK_BATCH,) + tuple(xs[1:])
        for dt in dtypes:
            cases.append(measure.Workload(name, tuple(xs), tuple(ws), dt, note))
    opts = measure.Options(
        repeat=repeat,
        threads=threads,
        python_images=None if args.full else (1 if args.quick else measure.PYTHON_SLICE),
        with_torch=True,  # a "vs torch" column whenever PyTorch is installed
        with_planned=args.suite,  # a "planned" row after auto's
    )
    return Settings(args, cases, methods, threads, repeat, dtypes, opts, args.batch or (1, 8))


# ---------------------------------------------------------------- output
def _print_header(out, s: Settings, info: dict, reference, tf_ok: bool) -> None:
    title = ("conv benchmark suite" if s.args.suite
             else "conv: the article's experiment (OpenGenus, \"2D convolution in Python\")")
    print(f"{title}, conv {conv.__version__}", file=out)
    print(f"machine: {info['platform']}, {info['cpu_count']} CPUs, "
          f"{s.threads} threads ({info['threading']}), numpy {info['numpy']}"
          + (f", TensorFlow {info['tensorflow']}" if info["tensorflow"] else "")
          + (f", PyTorch {info['torch']}" if info["torch"] else ""), file=out)
    if not tf_ok:
        print("TensorFlow: not installed - no TensorFlow column "
              '(pip install "conv2d-cpu[tf]" to add it)', file=out)
    if not info["torch"]:
        print("PyTorch: not installed - no PyTorch row or \"vs torch\" column "
              "(pip install torch to add them)", file=out)
    print(f"reference: {reference.description}", file=out)
    unusable = selection.unusable_methods()
    planned = s.opts.with_planned and "auto" in s.methods
    print("methods: " + ", ".join(s.methods)
          + (f" (declared but not usable here: {', '.join(unusable)})" if unusable else "")
          + (f"; {planning.PLANNED}: a plan made with conv.plan(effort=\"{planning.EFFORT}\")"
             if planned else ""), file=out)
    print(f"timing: best of {s.repeat} consecutive calls after a warm-up call, "
          f"all in this process; a {measure.SPIN_PAUSE_SECONDS:g} s pause after each "
          "framework-backed contender (its idle threads spin)", file=out, flush=True)


def _print_case(out, case: measure.Workload, rows, peak: machine.Peak) -> None:
    """The article's table for one case, printed as soon as it is measured."""
    print(f"\n{case.name}: {case.describe()}", file=out)
    print(report.format_article_table(rows, peak.gflops(case.dtype)), file=out)
    print(peak.describe([case.dtype]), file=out, flush=True)
    if (case.x_shape, case.w_shape) == NAMED_SHAPES[ARTICLE_SHAPE] and case.dtype == "float32":
        print("the article, on its machine (one call each): " + ", ".join(
            f"{ARTICLE_LABELS[k]} {report.fmt_ms(v * 1e3)} ms"
            for k, v in ARTICLE_SECONDS.items()), file=out, flush=True)


def _write_json(out, s: Settings, info: dict, reference, tf_ok: bool, ceilings, rows) -> None:
    args = s.args
    doc = {
        "conv_version": conv.__version__,
        "mode": "suite" if args.suite else "article",
        "machine": info,
        "reference": {"name": reference.name, "description": reference.description},
        "tensorflow_available": tf_ok,
        "settings": {"repeat": s.repeat, "threads": s.threads, "quick": args.quick,
                     "full": args.full, "dtypes": s.dtypes, "methods": s.methods,
                     "planned": s.opts.with_planned and "auto" in s.methods,
                     "python_images": s.opts.python_images, "tolerance": TOLERANCE},
        "ceiling_gflops": ceilings,
        "article_seconds": {"shape": ARTICLE_SHAPE, "dtype": "float32", **ARTICLE_SECONDS},
        "cases": [dict(asdict(c), x_shape=list(c.x_shape), w_shape=list(c.w_shape),
                       flops=c.flops) for c in s.cases],
        "rows": [dict(asdict(r), label=r.label) for r in rows],
    }
    report.write_json(out, doc)


def _write_notes(out, s: Settings, rows, peak: machine.Peak) -> None:
    if s.args.suite:
        print("", file=out)
        print(report.format_suite_table(rows, peak.all()), file=out)
    notes = report.footnotes(rows, TOLERANCE)
    if s.args.suite:
        notes.append(peak.describe(s.dtypes))
    notes.append("vs X = X's time / this time (> 1 is faster); "
                 "errors: max |out - ref| and max |out - ref| / max |ref|")
    print("", file=out)
    for note in notes:
        print(note, file=out)


# ---------------------------------------------------------------- the run
@contextlib.contextmanager
def _machine(s: Settings, progress, peak_repeat: int):
    """The baselines' threads and NumPy's BLAS limited to the run's threads (the limit held
    while the block runs), the FMA peak measured for each dtype: yields (peak, the
    machine's description, whether TensorFlow is here)."""
    tf_ok = frameworks.tensorflow_available()
    tf_threads = frameworks.init_tensorflow(s.threads) if tf_ok else None
    blas_ctx, blas_limited = frameworks.threadpool_limits(s.threads)
    with blas_ctx:
        peak = machine.Peak(s.threads)
        for dt in s.dtypes:
            progress.update(f"measuring the machine's peak (FMA loop, {dt})", important=True)
            peak.measure(dt, repeat=peak_repeat)
        yield peak, machine.describe(s.threads, tf_threads, blas_limited), tf_ok


def _main(argv: Optional[Sequence[str]]) -> int:
    s = settings(sys.argv[1:] if argv is None else argv)
    if s.args.wisdom:
        return _wisdom(s)
    if s.args.network:
        return _network(s)
    if s.args.accuracy:
        return _accuracy(s)
    args, progress, out = s.args, report.Progress(), sys.stdout

    with _machine(s, progress, peak_repeat=3 if args.quick else 5) as (peak, info, tf_ok):
        reference = select_reference()
        if not args.json:
            progress.clear()
            _print_header(out, s, info, reference, tf_ok)
        rows: List[measure.Row] = []
        for case in s.cases:
            case_rows = measure.run_case(case, s.methods, reference, s.opts, progress, peak)
            rows += case_rows
            if not args.json and not args.suite:
                progress.clear()
                _print_case(out, case, case_rows, peak)
    ceilings = peak.all()
    for r in rows:
        if r.gflops and ceilings.get(r.dtype):
            r.peak_fraction = r.gflops / ceilings[r.dtype]
    progress.clear()

    if args.json:
        _write_json(out, s, info, reference, tf_ok, ceilings, rows)
    else:
        _write_notes(out, s, rows, peak)
    out.flush()

    if args.plot:
        title = ("conv2d time per method" + (" (suite)" if args.suite else
                 f": {s.cases[0].describe()}" if len(s.cases) == 1 else ""))
        plot.plot(rows, args.plot, title)
        progress.line(f"wrote {args.plot}")

    failed = [r for r in rows if r.status == "failed" or r.within_tolerance is False]
    return 1 if failed else 0


def _network(s: Settings) -> int:
    """--network: the layer tables (one per dtype and batch size) or their JSON."""
    args, progress, out = s.args, report.Progress(), sys.stdout
    with _machine(s, progress, peak_repeat=5) as (peak, info, _):
        progress.update("measuring the machine's copy bandwidth (NumPy)", important=True)
        bandwidth = machine.copy_bandwidth()
        rounds = 2 if args.quick else network.ROUNDS
        rows = network.run(args.network, s.batches, s.dtypes, s.threads, progress, rounds)
    progress.clear()
    if args.json:
        doc = {"conv_version": conv.__version__, "mode": "network", "network": args.network,
               "machine": info, "ceiling_gflops": peak.all(),
               "copy_bandwidth_gb_per_s": bandwidth, "rounds": rounds,
               "planning_seconds": network.planning_total(rows),
               "rows": [dict(asdict(r), gb_per_s=r.gb_per_s) for r in rows]}
        report.write_json(out, doc)
        return 0
    print(f"conv: {args.network}'s conv layers, conv {conv.__version__}, {s.threads} threads; "
          f"per layer the median of {rounds} rounds; in each round auto, the planned layer "
          f"(a conv.plan made once with effort=\"{planning.EFFORT}\"), TensorFlow and "
          f"PyTorch in turn, each a warm-up call and its best of 3-15 calls", file=out)
    print(f"memory: this machine copies {bandwidth:.1f} GB/s (a NumPy copy of "
          f"{machine.COPY_BYTES // 2**20} MB, bytes read + written, best of "
          f"{machine.COPY_REPEAT}, one thread); GB/s = the bytes of x, w and the output over "
          f"auto's time", file=out)
    for dt in s.dtypes:
        for batch in s.batches:
            part = [r for r in rows if r.dtype == dt and r.batch == batch]
            print(f"\n{args.network}, {dt}, batch {batch}", file=out)
            print(network.format_table(part, peak.gflops(dt)), file=out)
            depthwise = network.depthwise_line(part)
            if depthwise:
                print(depthwise, file=out)
            print(network.planning_line(part), file=out)
    print("\nvs X = X's time / auto's time (> 1: conv is faster); x = how many times the "
          "network has the layer; GFLOP for one call", file=out)
    if any(r.groups > 1 for r in rows):
        print("grouped layers: conv.conv2d(..., groups=g) and PyTorch's conv2d(..., groups=g); "
              "TF: tf.nn.depthwise_conv2d on the depthwise layers (w as its (KH, KW, C_in, "
              "multiplier) filter), tf.nn.conv2d on other grouped layers", file=out)
    if len(s.dtypes) * len(s.batches) > 1:
        print(f"planning, all tables: {network.planning_total(rows):.2f} s", file=out)
    print(peak.describe(s.dtypes), file=out)
    return 0


def _wisdom_problems(s: Settings) -> List[planning.Problem]:
    """--wisdom's problems: the network's layers at each batch size, or the cases."""
    if s.args.network:
        return [planning.Problem(r.layer, tuple(r.x_shape), tuple(r.w_shape), r.dtype,
                                 r.stride, r.padding, r.groups)
                for dt in s.dtypes for batch in s.batches
                for r in network.layer_rows(s.args.network, batch, dt)]
    return [planning.Problem(c.name, c.x_shape, c.w_shape, c.dtype) for c in s.cases]


def _wisdom(s: Settings) -> int:
    """--wisdom FILE: plan each distinct problem with effort="measure", write the wisdom
    made to FILE, print a line per problem; exit 1 if a problem could not be planned."""
    args, progress, out = s.args, report.Progress(), sys.stdout
    problems = planning.distinct(_wisdom_problems(s))
    count = planning.measure_and_write(problems, args.wisdom, s.threads, progress)
    progress.clear()
    what = (f"{args.network}'s conv layers" if args.network
            else "the --shape problems" if args.shape else "the suite's problems")
    print(f"conv: wisdom for {what}, conv {conv.__version__}, {s.threads} threads: "
          f"conv.plan(..., effort=\"{planning.EFFORT}\") on each (every installed method "
          f"but python timed on it)", file=out)
    print(planning.format_table(problems), file=out)
    failed = [p for p in problems if p.error]
    for p in failed:
        print(f"FAILED: {p.name} {p.dtype}: {p.error}", file=out)
    print(f"\nwrote {count} wisdom entr{'y' if count == 1 else 'ies'} to {args.wisdom} "
          f"(conv.import_wisdom(FILE), or CONV_WISDOM=FILE when conv is imported, uses it)",
          file=out)
    return 1 if failed else 0


def _accuracy(s: Settings) -> int:
    """--accuracy: the table of each method's worst normwise error; exit 1 if a method
    auto may choose breaks the accuracy contract."""
    methods = [m for m in s.methods if m not in ("auto", "python")]
    dtypes = s.dtypes if s.args.dtype else ["float32", "float64"]
    progress = report.Progress()
    worst = accuracy.measure(methods, dtypes, progress)
    progress.clear()
    print(f"normwise error max|y - exact| / max|exact| over {len(list(accuracy.grid()))} "
          f"problems (x ({accuracy.BATCH},{accuracy.SIZE},{accuracy.SIZE},C_in), "
          f"{accuracy.C_OUT} outputs, SAME): C_in {', '.join(map(str, accuracy.C_INS))}; "
          f"kernels {', '.join(f'{k}x{k}' for k in accuracy.KERNELS)}; normal and "
          f"mixed-magnitude inputs", file=sys.stdout)
    print(accuracy.format_table(worst, methods, dtypes), file=sys.stdout)
    print("contract: " + ", ".join(f"{dt} <= {v:g}" for dt, v in accuracy.CONTRACT.items())
          + " (! above it); 'auto' uses only methods within it", file=sys.stdout)
    chosen = set(_introspect.auto_candidates())
    broken = [k for k, (err, _) in worst.items() if k[0] in chosen and err > accuracy.CONTRACT[k[1]]]
    return 1 if broken else 0
