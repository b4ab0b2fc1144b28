"""conv's public functions: conv2d, plan, and wisdom. The work is in conv._plan."""
from __future__ import annotations

from . import _plan, _wisdom


def conv2d(x, w, *, method="auto", stride=1, padding="VALID", dilation=1, threads=None,
           out=None, groups=None, data_format="NHWC"):
    """2-D convolution (cross-correlation) with ``tf.nn.conv2d``'s semantics.

    Parameters
    ----------
    x : array_like, (N, H, W, C_in)
        Input, NHWC; (N, C_in, H, W) with ``data_format="NCHW"``. Any array-like and
        memory layout; never modified. A ``dask.array.Array`` gives a lazy
        ``dask.array.Array``, computed chunk by chunk (docs/dask.md).
    w : array_like, (KH, KW, C_in / groups, C_out)
        Filters, HWIO. When x's C_in is a multiple of w's, the convolution is grouped,
        as TensorFlow infers it: groups = x's C_in / w's C_in, C_out a multiple of it;
        group g convolves x's channels [g * w's C_in, (g + 1) * w's C_in) into output
        channels [g * C_out / groups, (g + 1) * C_out / groups).
    method : str
        A name from ``conv.list_methods()``, or ``"auto"`` (the default) for the
        fastest installed method for this problem.
    stride, dilation : int or (h, w)
        Integers >= 1 (TensorFlow's ``[1, h, w, 1]`` is accepted too).
    padding : "VALID", "SAME", int, (h, w) or ((top, bottom), (left, right))
        "SAME" follows TensorFlow: output size ceil(size / stride), the odd extra
        row/column of padding at the bottom/right. Padded positions contribute
        nothing (they are skipped, not multiplied).
    threads : int or None
        Threads for methods that run in parallel; None uses every CPU this process may
        run on (``OMP_NUM_THREADS`` when set). Capped at the CPUs this process may run
        on (its affinity set).

    groups : int or None
        Optional: the group count (PyTorch's ``groups``), checked against the shapes
        (ValueError when x's C_in / w's C_in differs); None infers it.
    out : numpy.ndarray or None
        Where to write the result: a writeable C-contiguous array of the output's shape
        and dtype that does not overlap x or w (ValueError otherwise). Returned.
    data_format : "NHWC" or "NCHW"
        x's layout and the result's (TensorFlow's parameter; PyTorch's arrays are NCHW).
        The filters are HWIO either way. NCHW moves x to NHWC and the result back with a
        compiled, cache-blocked copy on each side; the arithmetic is the NHWC call's, so
        the result is the NHWC result transposed, bit for bit.

    Returns
    -------
    numpy.ndarray, (N, OH, OW, C_out)
        float32 or float64 as NumPy promotes the inputs (integer and bool inputs
        give float64; float16 is computed in float32 and returned as float16).

    ``method="auto"`` uses a wisdom entry for this problem when there is one
    (:func:`conv.import_wisdom`, ``effort="measure"`` plans), else auto's rule. To
    convolve many inputs with the same weights, :func:`conv.plan` pays for the checks,
    the choice and the weights' packing once.
    """
    return _plan.plan_conv2d(x, w, stride=stride, padding=padding, dilation=dilation,
                             threads=threads, method=method, out=out, groups=groups,
                             data_format=data_format)


def depthwise_conv2d(x, w, *, method="auto", stride=1, padding="VALID", dilation=1,
                     threads=None, out=None, data_format="NHWC"):
    """Depthwise 2-D convolution with ``tf.nn.depthwise_conv2d``'s semantics.

    x : array_like, (N, H, W, C_in), NHWC; (N, C_in, H, W) with data_format="NCHW";
        never modified. A ``dask.array.Array`` gives a lazy ``dask.array.Array``.
    w : array_like, (KH, KW, C_in, multiplier): each input channel c convolved with its
        own ``multiplier`` filters; output channel ``c * multiplier + m``.

    Every other argument, the dtypes and the errors are those of :func:`conv.conv2d`:
    it is ``conv2d(x, w.reshape(KH, KW, 1, C_in * multiplier), groups=C_in)``, a grouped
    convolution with one input channel a group. Returns (N, OH, OW, C_in * multiplier)
    (NCHW: (N, C_in * multiplier, OH, OW)).
    """
    grouped, groups = _plan.depthwise_as_grouped(_plan.shape_of(x), w, data_format)
    return _plan.plan_conv2d(x, grouped, stride=stride, padding=padding, dilation=dilation,
                             threads=threads, method=method, out=out, groups=groups,
                             data_format=data_format)


def plan(x_shape, w, *, stride=1, padding="VALID", dilation=1, threads=None, method="auto",
         effort="estimate", dtype=None, groups=None, data_format="NHWC", depthwise=False):
    """Plan a convolution with weights ``w`` for inputs of shape ``x_shape``: every
    check and choice made once, the weights copied and prepared (packed, transformed)
    once. Call the plan with x: ``p(x)``, or ``p(x, out=buf)``.

    Parameters
    ----------
    x_shape : (N, H, W, C_in)
        The inputs' shape ((N, C_in, H, W) with data_format="NCHW"); N may be None for
        any batch size (the method is then chosen as for a batch of 1; give N to choose
        for it).
    w, stride, padding, dilation, threads, method, groups, data_format
        As for :func:`conv.conv2d`. The plan keeps its own copy of ``w``: changing the
        caller's array afterwards does not change the plan's results.
    effort : "estimate", "measure" or "patient"
        How ``method="auto"`` chooses. "estimate": auto's documented rule, no timing.
        "measure": every installed method that computes this dtype (plugins included;
        not "python", the pure-Python reference loop) is timed on this very problem
        (random input, rounds interleaved across methods, median), and the fastest
        whose result keeps the normwise accuracy bound (conv.testing.NORMWISE) against
        a float64 reference is kept (within 5% of the fastest, auto's rule's choice
        keeps its place: that much is noise on a shared machine). "patient": the same, also over thread counts.
        A measured choice is added to the wisdom (``export_wisdom`` saves it), and a
        matching wisdom entry of at least the requested effort is used instead of
        measuring again. With a named method, "patient" measures its thread counts.
    dtype : dtype or None
        The dtype of the x the plan is called with (default: w's). The plan computes
        as conv2d would for such an x and w; another x dtype is a TypeError.
    depthwise : bool
        True: w is a depthwise filter (KH, KW, C_in, multiplier), and the plan computes
        :func:`conv.depthwise_conv2d` (groups is then C_in and may not be given).

    Returns
    -------
    conv.Plan
        ``p(x)`` equals ``conv.conv2d(x, w, method=p.method, threads=p.threads, ...)``
        bit for bit. ``p.method``, ``p.threads``, ``p.dtype`` (of the results),
        ``p.out_shape(n)``, ``p.reason`` (rule, wisdom or measurement), ``p.times``
        (measured seconds a call by candidate), ``p.planning_seconds``. Plans are
        thread-safe and picklable (unpickling prepares the weights again, with the same
        method; ``threads=None`` is resolved where the plan is unpickled).
    """
    if not isinstance(depthwise, bool):
        raise TypeError(f"depthwise must be True or False; got {type(depthwise).__name__}")
    if depthwise:
        if groups is not None:
            raise ValueError("groups may not be given with depthwise=True (it is x's C_in)")
        w, groups = _plan.depthwise_as_grouped(x_shape, w, data_format)
    return _plan.make_plan(x_shape, w, stride=stride, padding=padding, dilation=dilation,
                           threads=threads, method=method, effort=effort, dtype=dtype,
                           groups=groups, data_format=data_format)


def export_wisdom(path) -> int:
    """Write conv's wisdom (the measured choices, with the environment each holds for) to
    ``path`` as readable JSON; returns the number of entries."""
    return _wisdom.export(path)


def import_wisdom(path) -> dict:
    """Add the wisdom in ``path`` (from :func:`export_wisdom`). Entries made on another
    machine, build, conv version or set of installed methods are ignored, never used.
    A file that is not conv wisdom (corrupt, truncated, another format) is a ValueError,
    and the wisdom in memory is then unchanged. Returns {"imported": k, "ignored": m}.
    ``CONV_WISDOM=path`` imports a file when conv is imported (a failure there is a
    conv.WisdomWarning, not an error)."""
    return _wisdom.import_(path)


def forget_wisdom() -> None:
    """Drop all wisdom in memory (files are untouched)."""
    _wisdom.forget()
