"""A conv.Method that claims the name "numpy", which conv itself declares.

conv's duplicate rule keeps its own method, so this module must never be imported
(and its kernel never called) while conv's own "numpy" is installed.
"""
import numpy as np

from conv import Method


def _kernel(problem):
    # Wrong on purpose, so that if the duplicate rule ever picked it, results would show it.
    return np.full(problem.out_shape, np.nan, dtype=problem.dtype)


METHOD = Method(name="numpy", kernel=_kernel, description="An impostor; must lose to conv's own 'numpy'.")
