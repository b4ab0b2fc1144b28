"""The method registry: names -> conv2d methods, discovered through entry points.

Every method, conv's own included, is declared as an entry point in the
``conv.methods`` group whose object is a :class:`conv.Method`. Discovery reads
entry-point metadata only; a method's module is imported the first time the
method is used or inspected.

Rules
-----
* A plugin that fails to import, or whose object is not a ``Method`` named like
  its entry point, never breaks ``import conv`` or another method: listing warns
  once (naming the plugin, its distribution and the error) and leaves it out;
  using it raises :class:`conv.MethodError` chained to the original exception.
* Two distributions declaring one name: conv's own declaration wins; otherwise
  the distribution whose name sorts first wins. A warning names both. "conv's own"
  is the distribution that installed the ``conv`` package being run (found by its
  files, or for an editable install by its PEP 610 ``direct_url.json``), never a
  distribution that merely has a similar name.
* ``register_method`` adds a method at run time; it refuses an existing name
  unless ``replace=True``. Run-time registrations take precedence over entry points.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import signal
import threading
import warnings
from dataclasses import dataclass
from importlib import metadata
from urllib.parse import unquote, urlparse
from typing import Dict, List, Optional

from ._contract import Method, MethodError, MethodUnavailableError

GROUP = "conv.methods"
#: The name conv is published under. Informational only: which distribution counts as
#: conv's own is decided by what it installed (_provides_this_conv), never by a name.
OWN_DISTRIBUTION = "conv2d-cpu"


class PluginWarning(UserWarning):
    """A conv.methods plugin could not be loaded, or two plugins claim one name."""


class _RealCtrlC(BaseException):
    """The user pressed Ctrl-C while a plugin was being imported."""


def _import_watching_ctrl_c(load):
    """load(), telling a real Ctrl-C (SIGINT delivered during the import: _RealCtrlC)
    from a KeyboardInterrupt the plugin raises itself (which is its failure). Signals are
    handled in the main thread only, so elsewhere every KeyboardInterrupt is the plugin's."""
    if threading.current_thread() is not threading.main_thread():
        return load()
    seen = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        seen.append(signum)
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_IGN:
            return None
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError, TypeError):  # not allowed here: no way to tell
        return load()
    try:
        return load()
    except KeyboardInterrupt:
        if seen:
            raise _RealCtrlC() from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


class _StillImporting(MethodError):
    """A plugin asked for itself while its own import was running (not a failure)."""


def _invalid(obj, name: str, where: str):
    """None when ``obj`` is a usable Method named ``name``, else (message, cause). Checks
    the real type (not a ``__class__`` that claims to be Method) and every field the way
    Method's constructor does (an object made with ``object.__new__`` has none)."""
    if not issubclass(type(obj), Method):
        return (f"conv method {name!r} ({where}) is a {type(obj).__name__}, not a "
                f"conv.Method", None)
    try:
        fields = {f.name: object.__getattribute__(obj, f.name)
                  for f in dataclasses.fields(Method) if f.name not in ("distribution",
                                                                        "version")}
        Method(**fields)  # the constructor's checks: name (not "auto"), kernel, dtypes
    except Exception as exc:  # noqa: BLE001
        return (f"conv method {name!r} ({where}) is not a valid conv.Method: "
                f"{type(exc).__name__}: {exc}", exc)
    if fields["name"] != name:
        return (f"conv method {name!r} ({where}) is a Method named {fields['name']!r}; "
                f"the entry point's name and Method.name must agree", None)
    return None


@dataclass
class _Entry:
    name: str
    entry_point: Optional[metadata.EntryPoint]
    distribution: Optional[str]
    version: Optional[str]
    method: Optional[Method] = None
    own: bool = False  # declared by the distribution that installed this conv
    importing: Optional[int] = None  # the thread importing it right now
    # Why loading failed: the message and the original exception. A fresh MethodError
    # is raised each time, so no traceback (holding callers' frames) accumulates here.
    error: Optional[tuple] = None
    warned: bool = False

    def record_failure(self, message: str, original=None) -> None:
        """Keep why loading failed (the first failure only)."""
        if self.error is None:
            self.error = (message, original)

    def failure(self) -> MethodError:
        """A fresh MethodError built from the recorded failure."""
        message, original = self.error
        err = MethodError(message, original)
        err.__cause__ = original
        return err


def _dist_of(ep: metadata.EntryPoint):
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _canonical(dist_name: Optional[str]) -> str:
    """A distribution name as the package index compares it (PEP 503): lowercase, every
    run of "-", "_" and "." read as one "-"."""
    return re.sub(r"[-_.]+", "-", dist_name or "").lower()


#: The ``conv`` package directory being run (this module lives in it).
_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))


def _provides_this_conv(dist) -> bool:
    """Whether ``dist`` installed the conv package that is running: its RECORD lists a
    ``conv/__init__.py`` that is this one, or it is an editable install (PEP 610
    ``direct_url.json``) of a project whose ``conv/`` is this directory."""
    if dist is None:
        return False
    try:
        record = dist.read_text("RECORD") or ""
        if record.startswith("conv/__init__.py,") or "\nconv/__init__.py," in record:
            located = os.path.realpath(str(dist.locate_file("conv/__init__.py")))
            if os.path.dirname(located) == _PACKAGE_DIR:
                return True
        text = dist.read_text("direct_url.json")
        if text:
            info = json.loads(text)
            url = urlparse(info.get("url", ""))
            if info.get("dir_info", {}).get("editable") and url.scheme == "file":
                root = unquote(url.path)
                return os.path.realpath(os.path.join(root, "conv")) == _PACKAGE_DIR
    except Exception:  # noqa: BLE001 - unreadable metadata: simply not ours
        return False
    return False


def _declared_entry_points(group: str):
    """(the entry points in ``group``, one distribution per name as ``entry_points()``
    keeps them, and [(distribution, error)] for distributions whose metadata could not be
    read): a malformed ``entry_points.txt`` anywhere loses only that distribution."""
    eps, names, unreadable = [], set(), []
    for dist in metadata.distributions():
        try:
            # the dist-info folder's name when importlib has it (no METADATA parsing)
            name = _canonical(getattr(dist, "_normalized_name", None)
                              or dist.metadata["Name"])
            if name in names:
                continue
            names.add(name)
            eps.extend(ep for ep in dist.entry_points if ep.group == group)
        except Exception as exc:  # noqa: BLE001 - foreign metadata: isolate it
            where = getattr(dist, "_path", None) or "?"
            unreadable.append((f"{where}", exc))
    return eps, unreadable


def _own_entry_points(group: str, declared: list) -> list:
    """The entry points in ``group`` of the distribution that installed this conv. Looked
    for among the distributions ``declared`` (the group's entry points) first, then among
    all: another distribution with the same name earlier on sys.path hides ours from
    ``metadata.entry_points()``, which keeps one distribution per name."""
    checked = set()  # dist-info paths (ids of short-lived objects would be reused)
    likely = (getattr(ep, "dist", None) for ep in declared)
    for dist in itertools.chain(likely, metadata.distributions()):
        key = str(getattr(dist, "_path", id(dist)))
        if dist is None or key in checked:
            continue
        checked.add(key)
        if _provides_this_conv(dist):
            try:
                return [ep for ep in dist.entry_points if ep.group == group]
            except Exception:  # noqa: BLE001 - unreadable: no own entry points to add
                return []
    return []


class Registry:
    """The one registry. Thread-safe; discovery happens once, on first use."""

    def __init__(self, group: str = GROUP):
        self.group = group
        self._lock = threading.RLock()
        self._entries: Optional[Dict[str, _Entry]] = None
        self._runtime: Dict[str, _Entry] = {}
        #: Bumped whenever the set of methods may change (register, unregister, reload):
        #: what is cached about that set (wisdom's environment) is then recomputed.
        self.generation = 0
        self._merged = None

    # ---------------------------------------------------------- discovery
    def _discover(self) -> Dict[str, _Entry]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            candidates: Dict[str, List[_Entry]] = {}
            seen = set()
            declared, unreadable = _declared_entry_points(self.group)
            own = _own_entry_points(self.group, declared)
            for ep in own + declared:
                dist, version = _dist_of(ep)
                key = (ep.name, _canonical(dist), ep.value)
                if key in seen:  # the same distribution visible twice on sys.path
                    continue
                seen.add(key)
                candidates.setdefault(ep.name, []).append(
                    _Entry(ep.name, ep, dist, version, own=any(ep is o for o in own)))
            entries, clashes = {}, []
            for name, cands in candidates.items():
                cands.sort(key=lambda e: (not e.own, _canonical(e.distribution),
                                          e.entry_point.value))
                winner = cands[0]
                if len(cands) > 1:
                    losers = ", ".join(
                        f"{e.distribution} ({e.entry_point.value})" for e in cands[1:]
                    )
                    clashes.append(
                        f"conv method {name!r} is declared by several distributions; using "
                        f"{winner.distribution} ({winner.entry_point.value}) and ignoring "
                        f"{losers}. conv's own methods win, then distribution names in "
                        f"alphabetical order.")
                entries[name] = winner
            # cached before any warning: under `-W error` a warning raises, once, and the
            # next call finds discovery done instead of failing again
            self._entries = entries
        for where, exc in unreadable:
            clashes.append(f"could not read the entry points of the distribution at {where} "
                           f"({type(exc).__name__}: {exc}); any conv method it declares is "
                           f"left out")
        for message in clashes:
            warnings.warn(message, PluginWarning, stacklevel=4)
        return entries

    def _all(self) -> Dict[str, _Entry]:
        """Declared and run-time entries by name (cached until the set changes: this is on
        every conv2d call's path). Callers must not modify it."""
        cached = self._merged
        if cached is not None and cached[0] == self.generation and self._entries is not None:
            return cached[1]
        merged = dict(self._discover())
        merged.update(self._runtime)
        self._merged = (self.generation, merged)
        return merged

    def _load(self, entry: _Entry) -> Method:
        """Import an entry point's module (once) and check its object.

        The import runs outside the registry's lock, so a slow plugin, or one whose import
        asks the registry for another method (from this thread or one it starts and joins),
        blocks nobody but its own first users. Two threads may import the same plugin at
        once; Python's import lock makes that one import, and the first result recorded
        is kept."""
        if entry.method is not None:  # loaded: no lock on conv2d's path (set once, never reset)
            return entry.method
        with self._lock:
            if entry.method is not None:
                return entry.method
            if entry.error is not None:
                raise entry.failure()
            if entry.importing == threading.get_ident():
                # the plugin's own import asked for it (e.g. through list_methods()):
                # not a failure, just not ready yet
                raise _StillImporting(f"conv method {entry.name!r} is still being imported")
            outer = entry.importing is None
            if outer:
                entry.importing = threading.get_ident()
        where = f"{entry.entry_point.value!r} from distribution {entry.distribution or '?'}"
        failure = None
        try:
            obj = _import_watching_ctrl_c(entry.entry_point.load)
        except _RealCtrlC:
            with self._lock:
                entry.importing = None
            raise KeyboardInterrupt from None  # the user's: it interrupts, nothing recorded
        except BaseException as exc:  # noqa: BLE001 - isolation is the point
            failure = (f"conv method {entry.name!r} ({where}) failed to import: "
                       f"{type(exc).__name__}: {exc}", exc)
        else:
            failure = _invalid(obj, entry.name, where)
        with self._lock:
            if outer:
                entry.importing = None
            if entry.method is not None:  # another thread finished first
                return entry.method
            if failure is not None:
                entry.record_failure(*failure)
                raise entry.failure()
            entry.method = obj.with_origin(entry.distribution, entry.version)
            return entry.method

    def _try_load(self, entry: _Entry) -> Optional[Method]:
        try:
            return self._load(entry)
        except _StillImporting:
            return None
        except MethodError as exc:
            if not entry.warned:
                entry.warned = True
                warnings.warn(str(exc), PluginWarning, stacklevel=4)
            return None

    # ------------------------------------------------------------- public
    def names(self) -> List[str]:
        """Every declared name, loaded or not (no imports)."""
        return sorted(self._all())

    def list_methods(self) -> List[str]:
        """Names of the methods that can run here: loadable, requirements installed."""
        usable = []
        for name, entry in sorted(self._all().items()):
            method = self._try_load(entry)
            if method is not None and self._available(entry, method):
                usable.append(name)
        return usable

    def method_versions(self) -> Dict[str, str]:
        """{name: "distribution version"} of the methods that can run here (those
        registered at run time: "registered at run time")."""
        entries = self._all()
        return {name: (f"{entries[name].distribution} {entries[name].version}"
                       if entries[name].entry_point is not None else "registered at run time")
                for name in self.list_methods()}

    def _available(self, entry: _Entry, method: Method) -> bool:
        """method.is_available(), where an exception means no (warned once)."""
        try:
            return bool(method.is_available())
        except Exception as exc:  # noqa: BLE001 - a plugin's own override
            if not entry.warned:
                entry.warned = True
                warnings.warn(f"conv method {entry.name!r}: is_available() raised "
                              f"{type(exc).__name__}: {exc}; left out", PluginWarning,
                              stacklevel=4)
            return False

    def get_method(self, name: str) -> Method:
        """The Method called ``name`` (loaded, possibly unavailable here)."""
        if not isinstance(name, str):
            raise TypeError(f"method must be a str; got {type(name).__name__}")
        entries = self._all()
        if name not in entries:
            raise ValueError(
                f"unknown conv2d method {name!r}; installed: {', '.join(self.list_methods()) or 'none'}"
                + ("" if entries else " (no methods are registered: is conv installed with pip?)")
            )
        return self._load(entries[name])

    def usable(self, name: str) -> Method:
        """get_method, plus a clear error when its optional dependency is missing."""
        method = self.get_method(name)
        missing = method.missing_requirements()
        if missing:
            hint = f" Install it with: {method.install_hint}" if method.install_hint else ""
            raise MethodUnavailableError(
                f"conv method {name!r} needs {', '.join(missing)}, which is not installed.{hint}"
            )
        return method

    def register(self, method: Method, *, replace: bool = False) -> Method:
        if not isinstance(method, Method):
            raise TypeError(f"register_method expects a conv.Method; got {type(method).__name__}")
        with self._lock:
            if not replace and method.name in self._all():
                raise ValueError(
                    f"a conv method named {method.name!r} is already registered; "
                    f"pass replace=True to override it"
                )
            method = method.with_origin(None, None)
            self._runtime[method.name] = _Entry(method.name, None, None, None, method=method)
            self.generation += 1
            return method

    def unregister(self, name: str) -> None:
        """Remove a run-time registration (entry points cannot be removed)."""
        with self._lock:
            if name not in self._runtime:
                raise ValueError(f"{name!r} was not registered at run time")
            del self._runtime[name]
            self.generation += 1

    def reload(self) -> None:
        """Forget discovered entry points (after installing a plugin in this process)."""
        with self._lock:
            self._entries = None
            self.generation += 1


REGISTRY = Registry()
