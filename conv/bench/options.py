"""The command line's options: the parser, its help, and UsageError."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from . import measure, report
from .shapes import NAMED_SHAPES, NETWORKS, tup

QUICK_REPEAT = 3
QUICK_BATCH = 10  # --quick runs the article's shape on this many images


class UsageError(ValueError):
    """A bad command line: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{report.one_line(message)} (see {self.prog} --help)")


EPILOG = """\
shapes (--shape, repeatable; every problem is VALID, stride 1, x and w standard normal):
  N,H,W,CIN:KH,KW,COUT   e.g. 100,32,32,3:3,3,16 (KH,KW,CIN,COUT is accepted too)
""" + "".join(f"  {k:<21}  x {tup(v[0])}, w {tup(v[1])}\n" for k, v in NAMED_SHAPES.items()) + """
errors: max |out - ref| and max |out - ref| / max |ref| against tf.nn.conv2d in the same
dtype when TensorFlow is installed, else conv.testing.reference_conv2d (exact).
vs TF, vs python, vs torch: that baseline's time / this time (> 1 is faster).
% peak: against this CPU's FMA peak, measured in the same run by an FMA loop in conv's
  loaded kernel build on the same threads. GFLOP/s count the direct algorithm's flops
  (2*N*OH*OW*KH*KW*C_in*C_out), so a direct algorithm cannot exceed 100%; Winograd's
  (winograd, and oneDNN's in TensorFlow and PyTorch) does fewer multiplications and can.
exit status: 0 ok; 1 a method failed or exceeded the error tolerance; 2 bad options.
"""


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    if prog is None:
        argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        prog = "conv" if argv0 == "conv" else "python -m conv"
    p = _Parser(
        prog=prog,
        description="Rerun the article's conv2d experiment on this machine: every conv method "
                    "(plugins included) and 'auto' against TensorFlow and pure Python, by error "
                    "and time.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shape", action="append", metavar="SHAPE",
                   help="problem to run (default: the article's, seed; see below)")
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default=None,
                   help="default float32 (the article's); both with --suite")
    p.add_argument("--methods", metavar="A,B,C",
                   help="only these methods (names from conv.list_methods(), or auto)")
    p.add_argument("--threads", type=_positive("--threads"), metavar="N",
                   help="threads for conv, TensorFlow and PyTorch (default: every core)")
    p.add_argument("--repeat", type=_positive("--repeat"), metavar="N",
                   help=f"best of N timed runs (default {measure.DEFAULT_REPEAT}, "
                        f"{QUICK_REPEAT} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"best of {QUICK_REPEAT}; python on 1 image; the article's shape on "
                        f"{QUICK_BATCH} images (--shape and --suite shapes are kept)")
    p.add_argument("--full", action="store_true",
                   help=f"run the pure-Python method on the whole batch (default: "
                        f"{measure.PYTHON_SLICE} images, extrapolated)")
    p.add_argument("--suite", action="store_true",
                   help="the public benchmark suite (seed, mid, deep, pointwise, k5; both dtypes; "
                        "ratios to TensorFlow and PyTorch; python only if named in --methods; "
                        "with auto, a 'planned' row: conv.plan(effort=\"measure\") made "
                        "before timing, its planning time in a note)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (machine, reference, rows) instead of tables")
    p.add_argument("--network", choices=sorted(NETWORKS),
                   help="a network's conv layers, one by one, and its total: auto and a "
                        "plan made with effort=\"measure\" against TensorFlow and PyTorch, "
                        "GFLOP/s and GB/s (ResNet-50 v1.5 or MobileNet-v2 as torchvision "
                        "lays it out)")
    p.add_argument("--batch", type=_batches, metavar="B,B",
                   help="batch sizes for --network (default 1,8)")
    p.add_argument("--accuracy", action="store_true",
                   help="each method's largest normwise error against the exact reference on "
                        "a grid (C_in 1-1024, 1x1/3x3/5x5, normal and mixed-magnitude inputs)")
    p.add_argument("--wisdom", metavar="FILE",
                   help="plan each of the suite's problems (--shape: those; --network: its "
                        "layers, --batch sizes) with conv.plan(effort=\"measure\") and write "
                        "the wisdom to FILE, for conv.import_wisdom or CONV_WISDOM=FILE; "
                        "dtypes as --dtype (default both; float32 with --network)")
    p.add_argument("--plot", metavar="FILE.png",
                   help='bar chart of time per method, log scale (needs pip install "conv2d-cpu[plot]")')
    return p


def _batches(text: str):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def _positive(option: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value

    parse.__name__ = option.lstrip("-")
    return parse
