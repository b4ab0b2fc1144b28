"""The kernel contract: what a conv2d method is, and what it receives.

Everything here is public through ``conv`` (``conv.Method``, ``conv.Problem``,
``conv.MethodError``) because third-party methods code against it. Keep it small
and stable.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import numpy as np

from . import _geometry

Pair = Tuple[int, int]
Pads = Tuple[Pair, Pair]

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: What a method's results promise (``Method.accuracy``):
#:   "componentwise"  every output element y within rtol * (|x| conv |w|) of the exact
#:                    result (conv.testing.RTOL: 1e-5 float32, 1e-12 float64), as any
#:                    sum of the products in some order is; NaN/Inf where the exact
#:                    result has them.
#:   "normwise"       max|y - exact| <= NORMWISE_TOLERANCE[dtype] * max|exact| over the
#:                    whole output (fast algorithms that transform their inputs, such
#:                    as Winograd's, spread rounding errors across a tile), NaN/Inf
#:                    where the exact result has them.
ACCURACY_KINDS = ("componentwise", "normwise")
#: The normwise bound (oneDNN's benchdnn accepts 2e-5 for its float32 Winograd).
NORMWISE_TOLERANCE = {"float32": 2e-5, "float64": 1e-12}


class MethodError(RuntimeError):
    """A registered method cannot be loaded, or its kernel broke the contract
    (returned something other than an ndarray of the promised shape and dtype).

    When importing the method raised, the original exception is chained as
    ``__cause__`` (and kept on ``.original``). An exception raised by a kernel while
    computing propagates unchanged.
    """

    def __init__(self, message: str, original: Optional[BaseException] = None):
        super().__init__(message)
        self.original = original


class MethodUnavailableError(ImportError):
    """A known method whose optional dependency is not installed."""


@dataclass(frozen=True)
class Problem:
    """One normalized conv2d problem, as a kernel receives it.

    The front end has already validated everything; a kernel never re-checks.

    x : ndarray, (N, H, W, C_in), C-contiguous, read-only, dtype float32 or float64.
        Already zero-padded unless the method declares ``pads_itself``.
    w : ndarray, (KH, KW, C_in, C_out), C-contiguous, read-only, same dtype as x
        (C_in / groups for a grouped problem: ``groups``, only for ``supports_groups``).
    stride, dilation : (h, w) pairs of ints >= 1.
    padding : ((top, bottom), (left, right)) the kernel must still apply: all zero
        unless the method declares ``pads_itself``. Padded positions contribute
        nothing to the sum (they are skipped, not multiplied by zero).
    threads : int >= 1, how many threads the kernel may use.
    out_shape : (N, OH, OW, C_out), the shape the kernel must return.
    """

    x: np.ndarray
    w: np.ndarray
    stride: Pair
    dilation: Pair
    padding: Pads
    threads: int
    out_shape: Tuple[int, int, int, int]

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two flops: 2*N*OH*OW*KH*KW*(C_in / groups)*C_out."""
        return _geometry.flops(self.out_shape, self.w.shape)

    @property
    def groups(self) -> int:
        """x's C_in / w's C_in: 1, except for a method declaring ``supports_groups``, which
        may receive a grouped problem (group g reads x's channels [g * w's C_in, (g + 1) *
        w's C_in) and writes output channels [g * C_out / groups, (g + 1) * ...))."""
        ci = self.w.shape[2]
        return self.x.shape[3] // ci if ci else 1


def make_problem(x, w, stride, dilation, padding, threads, out_shape) -> Problem:
    """Problem(...) without the frozen dataclass's per-field ``object.__setattr__``
    (a microsecond on every planned call); the same object."""
    p = object.__new__(Problem)
    p.__dict__.update(x=x, w=w, stride=stride, dilation=dilation, padding=padding,
                      threads=threads, out_shape=out_shape)
    return p


@dataclass(frozen=True)
class Method:
    """A conv2d method: a name, its capabilities, and one kernel callable.

    kernel(problem) -> ndarray of shape ``problem.out_shape`` and dtype
    ``problem.dtype``. It must not write to ``problem.x`` or ``problem.w``.

    Capabilities (what the front end does when one is missing):
      dtypes            float dtypes computed natively; another dtype is a TypeError.
      parallel          honours ``problem.threads``; if False the argument is ignored.
      supports_stride   if False, the front end computes at stride 1 and subsamples.
      supports_dilation if False, the front end splits the input into dilation phases
                        and calls the kernel with dilation 1 on each (exact).
      pads_itself       if True the kernel gets the unpadded x and ``problem.padding``;
                        otherwise x arrives zero-padded and padding is all zero.
      requires          importable module names the method needs; if one is missing
                        the method is listed as unavailable and ``install_hint`` says
                        how to get it.
      accuracy          "componentwise" (default) or "normwise": the error bound its
                        results keep (ACCURACY_KINDS); conv.testing.check_method holds
                        the method to it.
      supports_groups   if False (the default), the front end splits a grouped convolution
                        (x's C_in a multiple of w's) into one problem per group, each with
                        its slice of x's channels and of w's output channels; if True the
                        kernel gets the whole grouped problem (``Problem.groups`` > 1).
      prepare           optional ``prepare(template) -> run``: the work that depends only
                        on the weights and the geometry (packing, transforms), done once
                        per plan (conv.plan) instead of once per call. ``template`` is the
                        Problem the kernel would get, except that its x is an empty array
                        of batch size 0 (its H, W and C_in those of the first call) and its
                        out_shape's batch is 0. ``run(problem, out)`` then computes
                        problems that share template's w, stride, dilation and threads: x's
                        batch size may differ and, where conv splits a dilated kernel into
                        phases, its H and W (and out_shape) too. ``out`` is None or a
                        writeable C-contiguous array of ``problem.out_shape`` and dtype
                        that run may fill and return; run may instead return a new array
                        (conv copies it into out). run is called from several threads at
                        once when a plan is, so it must not mutate shared state unguarded.
                        Without a prepare hook, a plan calls ``kernel`` each time.
      kernel_writes_out if True, kernel is called as ``kernel(problem, out)``, ``out`` being
                        what run gets (None or a writeable C-contiguous array of
                        ``problem.out_shape`` and dtype, the caller's ``out=`` buffer when
                        no emulation is in between), to fill and return or to ignore (conv
                        copies a returned new array into it); otherwise conv2d(..., out=)
                        copies the kernel's result into the buffer.
    """

    name: str
    kernel: Callable[[Problem], np.ndarray] = field(repr=False)
    description: str = ""
    dtypes: Tuple[str, ...] = ("float32", "float64")
    parallel: bool = False
    supports_stride: bool = True
    supports_dilation: bool = True
    pads_itself: bool = False
    requires: Tuple[str, ...] = ()
    install_hint: str = ""
    accuracy: str = "componentwise"
    prepare: Optional[Callable[[Problem], Callable]] = field(default=None, repr=False)
    supports_groups: bool = False
    kernel_writes_out: bool = False
    # Filled in by the registry, not by the method's author.
    distribution: Optional[str] = None
    version: Optional[str] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Method.name must be an identifier-like string; got {self.name!r}")
        if self.name == "auto":
            raise ValueError('Method.name "auto" is reserved for conv2d\'s automatic choice')
        if not callable(self.kernel):
            raise TypeError(f"Method.kernel must be callable; got {type(self.kernel).__name__}")
        dtypes = tuple(np.dtype(d).name for d in self.dtypes)
        bad = [d for d in dtypes if np.dtype(d) not in SUPPORTED_DTYPES]
        if bad or not dtypes:
            raise ValueError(
                f"Method.dtypes must be a non-empty subset of ('float32', 'float64'); got {self.dtypes!r}"
            )
        if self.prepare is not None and not callable(self.prepare):
            raise TypeError(
                f"Method.prepare must be None or callable; got {type(self.prepare).__name__}")
        if self.accuracy not in ACCURACY_KINDS:
            raise ValueError(
                f"Method.accuracy must be one of {ACCURACY_KINDS}; got {self.accuracy!r}"
            )
        object.__setattr__(self, "dtypes", dtypes)
        object.__setattr__(self, "requires", tuple(self.requires))

    def missing_requirements(self) -> Tuple[str, ...]:
        """Names in ``requires`` that cannot be found, checked without importing them."""
        import importlib.util

        missing = []
        for mod in self.requires:
            try:  # find_spec("a.b") imports "a", which may raise anything
                if importlib.util.find_spec(mod) is None:
                    missing.append(mod)
            except Exception:  # noqa: BLE001
                missing.append(mod)
        return tuple(missing)

    def is_available(self) -> bool:
        return not self.missing_requirements()

    def with_origin(self, distribution: Optional[str], version: Optional[str]) -> "Method":
        """A copy stamped with the distribution and version that provide it. The copy is
        made without calling the constructor, so a subclass with a constructor of its own
        keeps working."""
        new = copy.copy(self)
        object.__setattr__(new, "distribution", distribution)
        object.__setattr__(new, "version", version)
        return new
