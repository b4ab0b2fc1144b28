"""conv.testing: the conformance kit for conv2d methods.

A plugin author proves a method with one line in their own pytest suite::

    import conv.testing

    def test_mine():
        conv.testing.check_method("mine")

:func:`check_method` runs the method through the same correctness grid conv's
built-in methods pass: every case in :data:`CASES` (strides 1-3, VALID/SAME/
explicit padding in all its forms, dilations 1-2 with and without stride, odd,
even and non-square kernels, N=1, C_in=1, 1x1 kernels, kernel as large as the
input, the article's shape scaled down) in each dtype the method declares,
against :func:`reference_conv2d`; plus unmodified inputs (read-only,
non-contiguous, negative-stride, Fortran-order, big-endian), output dtype and
shape, bad inputs, NaN/Inf propagation and empty problems.

The pieces are public so a test suite can parametrize over them::

    @pytest.mark.parametrize("case", conv.testing.CASES, ids=conv.testing.case_ids())
    def test_case(case):
        x, w = conv.testing.make_inputs(case, "float32")
        got = conv.conv2d(x, w, method="mine", **case.kwargs)
        conv.testing.assert_conv_close(got, case.reference(x, w), case.scale(x, w), "float32")

:func:`reference_conv2d` is deliberately independent of conv's own front end:
it implements TensorFlow's padding rules itself and accumulates in extended
precision (``np.longdouble``), skipping padded taps: an Inf weight whose tap
lands in the padding gives Inf, not NaN (0 * Inf), in every dtype, as conv's
documented semantics say. TensorFlow's own result there differs between its
builds (float32 skipped padded taps on one machine and gave NaN on another;
float64 gave NaN on both), so it is no reference there;
:func:`nonfinite_meets_padding` tells where that is. The reference is slow; it is
meant for small shapes.
"""
# The kit's rooms, each in a private module: the exact reference (_reference), the
# tolerance check (_tolerance), the case grid (_cases) and check_method (_check).
from typing import Any, Tuple  # noqa: F401 - resolve Case's string annotations (see below)

from ._cases import ARTICLE_CASES, CASES, Case, case_ids, get_case, make_inputs
from ._check import check_method, method_accuracy
from ._reference import explicit_padding, nonfinite_meets_padding, output_shape, reference_conv2d
from ._tolerance import (
    NORMWISE,
    RTOL,
    assert_conv_accurate,
    assert_conv_close,
    assert_conv_normwise,
    tolerance_scale,
)

__all__ = [
    "reference_conv2d",
    "tolerance_scale",
    "assert_conv_close",
    "assert_conv_normwise",
    "assert_conv_accurate",
    "method_accuracy",
    "NORMWISE",
    "Case",
    "CASES",
    "ARTICLE_CASES",
    "case_ids",
    "get_case",
    "make_inputs",
    "explicit_padding",
    "output_shape",
    "nonfinite_meets_padding",
    "check_method",
    "RTOL",
]

# The public names live here, whichever private module defines them: pickles
# (conv.testing.Case), help(conv.testing) and reprs read as before the split, and
# the private module names stay free to change. typing.get_type_hints(Case)
# resolves Case's string annotations in this module's namespace, hence Any and Tuple
# above.
for _name in __all__:
    if callable(globals()[_name]):  # the classes and functions, not CASES or RTOL
        globals()[_name].__module__ = __name__
del _name
