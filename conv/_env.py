"""conv's environment switches, read one way everywhere (setup.py loads this file by path:
at build time the package itself cannot be imported)."""
import os

FALSE = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` is set to anything but empty, 0, false,
    no or off (any case)."""
    return os.environ.get(name, "").strip().lower() not in FALSE
