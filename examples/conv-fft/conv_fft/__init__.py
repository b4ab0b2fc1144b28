"""conv-fft: a third-party conv2d method for ``conv``, computed with the FFT.

Installing this distribution makes ``conv.conv2d(x, w, method="fft")`` work: its
``pyproject.toml`` declares the entry point ``fft = "conv_fft:METHOD"`` in the
``conv.methods`` group, and ``METHOD`` below is the ``conv.Method`` it names.
"""
from conv import Method

from ._fft import kernel as _kernel
from ._fft import next_fast_len

__version__ = "0.1.0"

METHOD = Method(
    name="fft",  # must equal the entry point's name
    kernel=_kernel,
    description=(
        "FFT convolution (numpy.fft.rfft2 over H and W, the C_in sum as one product per "
        "frequency). Computes in float64 internally: float32 inputs are converted to "
        "float64 and the result rounded back to float32. Inputs holding inf or NaN are "
        "summed directly instead, so they stay local as in TensorFlow. Serial; conv's "
        "front end pads, and emulates stride (dense output, subsampled) and dilation "
        "(input split into phases)."
    ),
    dtypes=("float32", "float64"),
    parallel=False,
    supports_stride=False,
    supports_dilation=False,
    pads_itself=False,
)

__all__ = ["METHOD", "next_fast_len", "__version__"]
