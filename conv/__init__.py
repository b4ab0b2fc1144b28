"""conv: fast 2-D convolution on the CPU with tf.nn.conv2d's semantics.

>>> import numpy as np, conv
>>> x = np.random.rand(1, 5, 5, 2).astype(np.float32)   # NHWC
>>> w = np.random.rand(3, 3, 2, 4).astype(np.float32)   # HWIO
>>> conv.conv2d(x, w, padding="SAME").shape
(1, 5, 5, 4)
"""
import importlib.util as _util
import os as _os
import sys as _sys

try:  # the compiled extensions are built by `pip install`; a bare source tree has none
    from . import _buildinfo  # noqa: F401
except ImportError:
    if _util.find_spec(__name__ + "._buildinfo") is not None:
        raise  # built, but broken: let that error speak
    _msg = (
        f"conv is being imported from its source tree ({_os.path.dirname(__file__)}), "
        "which has no compiled extensions: build them there with "
        '`pip install -e .` (or `pip install -e ".[tf]"`), or run Python from another '
        "directory to use the installed conv"
    )
    _argv = list(getattr(_sys, "orig_argv", []))
    if _sys.argv[:1] == ["-m"] and "-m" in _argv and _argv[_argv.index("-m") + 1:][:1] == [
            __name__]:  # runpy is locating conv for `python -m conv`: one line, no traceback
        print(f"conv: error: {_msg}", file=_sys.stderr)
        raise SystemExit(2) from None
    raise ImportError(_msg) from None

from ._api import (conv2d, depthwise_conv2d, export_wisdom, forget_wisdom, import_wisdom,
                   plan)
from ._config import build_info, show_config
from ._contract import Method, MethodError, MethodUnavailableError, Problem
from ._registry import REGISTRY as _REGISTRY
from ._plan import Plan
from ._registry import PluginWarning
from ._dask import ChunkWarning
from ._wisdom import WisdomWarning

__version__ = "0.1.0"

__all__ = [
    "conv2d",
    "depthwise_conv2d",
    "plan",
    "Plan",
    "export_wisdom",
    "import_wisdom",
    "forget_wisdom",
    "list_methods",
    "get_method",
    "register_method",
    "unregister_method",
    "build_info",
    "show_config",
    "Method",
    "Problem",
    "MethodError",
    "MethodUnavailableError",
    "PluginWarning",
    "WisdomWarning",
    "ChunkWarning",
]


def list_methods():
    """Names of the conv2d methods usable here (installed and importable), sorted.

    ``"auto"`` is not a method but is always accepted by ``conv2d``.
    """
    return _REGISTRY.list_methods()


def get_method(name):
    """The :class:`conv.Method` registered as ``name`` (imports its module).

    Raises ValueError for an unknown name, MethodError for a broken plugin.
    """
    return _REGISTRY.get_method(name)


def register_method(method, *, replace=False):
    """Register a :class:`conv.Method` at run time (notebooks, tests).

    An existing name is refused unless ``replace=True``. Returns the method.
    """
    return _REGISTRY.register(method, replace=replace)


def unregister_method(name):
    """Remove a method added with :func:`register_method`."""
    _REGISTRY.unregister(name)


from ._wisdom import load_from_environment as _load_wisdom  # noqa: E402

_load_wisdom()  # CONV_WISDOM=path; a bad file is a WisdomWarning
