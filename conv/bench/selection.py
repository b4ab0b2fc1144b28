"""Which methods run: every usable one by default, or those named by ``--methods``."""
from __future__ import annotations

from typing import List

import conv

from .. import _introspect
from . import frameworks
from .report import one_line


def needs_tensorflow(name: str) -> bool:
    try:
        return name == "tensorflow" or "tensorflow" in conv.get_method(name).requires
    except Exception:  # noqa: BLE001
        return False


def usable_methods(with_python: bool = True) -> List[str]:
    """conv.list_methods() (plugins included), minus TensorFlow's when it is absent, + auto."""
    tf_ok = frameworks.tensorflow_available()
    names = []
    for name in conv.list_methods():
        if name == "python" and not with_python:
            continue
        if not tf_ok and needs_tensorflow(name):
            continue
        names.append(name)
    return names + ["auto"]


def unusable_methods() -> List[str]:
    """Declared method names that cannot run here (missing dependency or broken plugin)."""
    usable = set(conv.list_methods())
    return [n for n in _introspect.declared_methods() if n not in usable]


def resolve_methods(text: str) -> List[str]:
    """--methods a,b,c -> names, checked: ValueError for unknown or unusable ones."""
    names = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            raise ValueError(f"bad --methods {text!r}: expected comma-separated method names")
        if name not in names:
            names.append(name)
    for name in names:
        if name == "auto":
            continue
        try:
            _introspect.usable_method(name)
        except Exception as exc:  # noqa: BLE001 - unknown, unavailable or broken
            raise ValueError(one_line(str(exc)) + "; 'auto' is accepted too") from None
        if needs_tensorflow(name) and not frameworks.tensorflow_available():
            raise ValueError(f"method {name!r} needs TensorFlow, which is not installed "
                             f'(pip install "conv2d-cpu[tf]")')
    return names
