""""matmul": the article's matmul-slicing approach, compiled.

For each kernel tap (i, j), the strided input slice it reads times w[i, j] is one
(pixels x C_in) @ (C_in x C_out) product, accumulated into the output. The
products run on the same register-blocked micro-kernel as "direct", blocked by
output row so the accumulating row stays in cache; the results equal "direct" bit
for bit (same summation order), the loop order is the article's.
"""
from __future__ import annotations

from .._contract import Method, Problem
from . import _compiled


def _kernel(p: Problem, out=None):
    return _compiled.call_driver(_compiled.kernels.conv2d_matmul, p, out)


def _prepare(template: Problem):
    return _compiled.Packed(_compiled.kernels.conv2d_matmul, template)


METHOD = Method(
    name="matmul",
    kernel=_kernel,
    description="The article's per-kernel-position matmul over input slices, in Cython on "
    "a register-blocked micro-kernel; nogil, conv's thread pool, AVX-512/AVX2+FMA/portable build chosen at run time.",
    parallel=True,
    pads_itself=True,
    prepare=_prepare,
    kernel_writes_out=True,
)
