"""The benchmark problems, one source for ``python -m conv`` and asv (asv_bench/).

The article's shape and the public suite of the kernels issue, all VALID, stride 1, as
(x NHWC, w HWIO). Standard library only: asv loads this file by path at commits whose
conv has no ``conv.bench``.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

Shape4 = Tuple[int, int, int, int]

NAMED_SHAPES: Dict[str, Tuple[Shape4, Shape4]] = {
    "seed": ((100, 32, 32, 3), (3, 3, 3, 16)),
    "mid": ((8, 56, 56, 64), (3, 3, 64, 64)),
    "deep": ((8, 14, 14, 256), (3, 3, 256, 256)),
    "pointwise": ((8, 28, 28, 128), (1, 1, 128, 256)),
    "k5": ((16, 64, 64, 16), (5, 5, 16, 32)),
}
#: The public suite (``--suite``, asv): every named shape.
SUITE_SHAPES = tuple(NAMED_SHAPES)
ARTICLE_SHAPE = "seed"
#: The article's wall times for one call on its own machine (float32, the seed shape, 100
#: images): its tf.nn.conv2d reference, its pure-Python py_conv, its matmul-slices
#: matrix_mult (conv's "python" and "numpy" methods are those two algorithms).
ARTICLE_SECONDS = {"tf.nn.conv2d": 0.018, "python": 45.4, "numpy": 0.0598}


class Layer(NamedTuple):
    """One conv layer of a network (NHWC, square input and kernel)."""

    name: str
    size: int  # H = W of the input
    c_in: int
    k: int  # KH = KW
    stride: int
    pad: int  # zeros on each side
    c_out: int
    count: int  # how many times the network has this layer
    #: PyTorch's groups: w is (K, K, C_in / groups, C_out); C_in == groups with w's C_in 1
    #: is a depthwise layer
    groups: int = 1

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c_in


def layer(entry) -> Layer:
    """A network entry as a Layer: a plain (name, size, c_in, k, stride, pad, c_out, count)
    tuple, with or without a trailing groups, is taken too."""
    return entry if isinstance(entry, Layer) else Layer(*entry)


def _resnet50() -> Tuple[Layer, ...]:
    """ResNet-50 v1.5 as torchvision lays it out, at 224 x 224: the 7x7/2 stem (padding 3),
    then 3/4/6/3 bottleneck blocks (1x1, 3x3 with padding 1, 1x1 expanding by 4); the first
    block of a stage has a 1x1 downsample, and from stage 2 on it strides by 2 on its 3x3
    conv and its downsample. 53 conv layers."""
    layers = [("conv1 7x7/2", 224, 3, 7, 2, 3, 64, 1)]
    size, c_in = 56, 64  # after the 3x3/2 max pool
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        s = 1 if stage == 1 else 2
        out, half = 4 * width, size // s
        layers += [
            (f"layer{stage}.0 1x1 reduce", size, c_in, 1, 1, 0, width, 1),
            (f"layer{stage}.0 3x3/{s}", size, width, 3, s, 1, width, 1),
            (f"layer{stage}.0 1x1 expand", half, width, 1, 1, 0, out, 1),
            (f"layer{stage}.0 downsample 1x1/{s}", size, c_in, 1, s, 0, out, 1),
            (f"layer{stage}.1-{blocks - 1} 1x1 reduce", half, out, 1, 1, 0, width, blocks - 1),
            (f"layer{stage}.1-{blocks - 1} 3x3", half, width, 3, 1, 1, width, blocks - 1),
            (f"layer{stage}.1-{blocks - 1} 1x1 expand", half, width, 1, 1, 0, out, blocks - 1),
        ]
        size, c_in = half, out
    return tuple(Layer(*entry) for entry in layers)


def _mobilenet_v2() -> Tuple[Layer, ...]:
    """MobileNet-v2 (width 1.0) as torchvision lays it out (torchvision.models.mobilenet_v2,
    its ``features``), at 224 x 224: features.0 the 3x3/2 stem 3 -> 32 (padding 1); then
    features.1-17, inverted residual blocks from the paper's table (t, c, n, s) = (1, 16,
    1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1): each block a 1x1 expand to t x C_in channels (none when t == 1), a 3x3
    depthwise conv (padding 1; stride s in the first block of a row, else 1) and a 1x1
    project to c; features.18 the final 1x1 conv 320 -> 1280. 52 conv layers: the stem,
    17 depthwise, 16 expand, 17 project and the final 1x1. As for ResNet-50, the later
    blocks of a row (the same shapes) are one entry with their count."""
    layers = [Layer("features.0 stem 3x3/2", 224, 3, 3, 2, 1, 32, 1)]
    size, c_in, index = 112, 32, 1
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for count, stride in ((1, s), (n - 1, 1)):  # the row's first block, then the rest
            if count == 0:
                continue
            name = f"features.{index}" if count == 1 else f"features.{index}-{index + count - 1}"
            hidden = t * c_in
            if t != 1:
                layers.append(Layer(f"{name} 1x1 expand", size, c_in, 1, 1, 0, hidden, count))
            slash = f"/{stride}" if stride != 1 else ""
            layers.append(Layer(f"{name} dw 3x3{slash}", size, hidden, 3, stride, 1, hidden,
                                count, groups=hidden))
            size = (size + 2 - 3) // stride + 1
            layers.append(Layer(f"{name} 1x1 project", size, hidden, 1, 1, 0, c, count))
            c_in, index = c, index + count
    layers.append(Layer(f"features.{index} 1x1", size, c_in, 1, 1, 0, 1280, 1))
    return tuple(layers)


#: The networks ``--network`` measures, layer by layer.
NETWORKS: Dict[str, Tuple[Layer, ...]] = {"resnet50": _resnet50(),
                                          "mobilenet_v2": _mobilenet_v2()}


def tup(shape) -> str:
    """(1,2,3,4): a shape as the tables print it."""
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


def parse_shape(text: str) -> Tuple[str, Shape4, Shape4]:
    """``seed``/``mid``/``deep``/``pointwise``/``k5``, ``N,H,W,CIN:KH,KW,COUT`` or
    ``N,H,W,CIN:KH,KW,CIN,COUT``. Returns (name, x_shape, w_shape); ValueError if bad."""
    s = text.strip().lower()
    if s in NAMED_SHAPES:
        x, w = NAMED_SHAPES[s]
        return s, x, w
    hint = (f"bad --shape {text!r}: expected N,H,W,CIN:KH,KW,COUT (e.g. 100,32,32,3:3,3,16) "
            f"or one of {', '.join(NAMED_SHAPES)}")
    if s.count(":") != 1:
        raise ValueError(hint)
    left, right = s.split(":")
    try:
        xs = [int(v) for v in left.replace("x", ",").split(",")]
        ws = [int(v) for v in right.replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(hint) from None
    if len(xs) != 4 or len(ws) not in (3, 4):
        raise ValueError(hint)
    if len(ws) == 4:
        if ws[2] != xs[3]:
            raise ValueError(f"bad --shape {text!r}: the filter's C_in ({ws[2]}) must equal the "
                             f"input's ({xs[3]})")
        ws = [ws[0], ws[1], ws[3]]
    if min(xs + ws) < 1:
        raise ValueError(f"bad --shape {text!r}: every size must be >= 1")
    n, h, wd, ci = xs
    kh, kw, co = ws
    if kh > h or kw > wd:
        raise ValueError(f"bad --shape {text!r}: the {kh}x{kw} kernel is larger than the "
                         f"{h}x{wd} input (VALID padding leaves no output)")
    x_shape, w_shape = (n, h, wd, ci), (kh, kw, ci, co)
    for name, (nx, nw) in NAMED_SHAPES.items():
        if (nx, nw) == (x_shape, w_shape):
            return name, x_shape, w_shape
    return f"{n},{h},{wd},{ci}:{kh},{kw},{co}", x_shape, w_shape
