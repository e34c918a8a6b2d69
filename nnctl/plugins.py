"""Plugins: the user's layers, losses and metrics, found from a config.

    plugins: [./my_layers.py]                  # files, relative to the config
    model:
      layers:
        - {type: my_layers.SimpleDense, units: 32}     # <file stem>.<class>
        - {type: "my_package.layers:Gated", units: 8}  # module:Class, an installed module
    loss: my_layers.FocalLoss
    metrics: [my_layers.MeanPrediction]

A file's classes that subclass `nnctl.nn.layers.Layer`, `nnctl.nn.losses.Loss` or `nnctl.nn.metrics.Metric`
are registered as `<stem>.<Class>`; an installed package registers its layers under the `nnctl.layers`
entry-point group (`name = "module:Class"`). A file is read once, hashed, and executed from those bytes (no
`__pycache__` is written next to it); a run records each file's sha256 (and each module's package version),
and `evaluate`, `predict` and `--resume` refuse a plugin file that changed since, before running its code.

A plugin is code the user runs, as a config's Python would be: nnctl only loads files the config names.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from nnctl.errors import NnctlError
from nnctl.registry import normalize

MAX_PLUGIN_BYTES = 10 * 2**20
ENTRY_POINT_GROUP = "nnctl.layers"

# The layer types plugins registered (canonical name → class), for the config schema (config/schema.py).
LAYER_TYPES: dict[str, type] = {}
_FILES: dict[str, types.ModuleType] = {}  # sha256 → the module executed from those bytes (once per process)
_EXPECTED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("expected_plugins", default=None)


@dataclass
class Plugin:
    """A loaded plugin file or module: what it registered, and how to recognise it again."""

    source: str  # the file's absolute path, or the module's name
    sha256: str | None = None
    version: str | None = None
    names: list[str] = field(default_factory=list)  # the canonical names it registered
    failed: str | None = None  # a file that failed to load: its stem, whose types are then not reported again

    def record(self) -> dict:
        if self.sha256 is not None:
            return {"path": self.source, "sha256": self.sha256}
        return {"module": self.source, "version": self.version}


def _families():
    from nnctl.nn.layers import LAYERS, Layer
    from nnctl.nn.losses import LOSSES, Loss
    from nnctl.nn.metrics import METRICS
    from nnctl.nn.metrics.base import Metric

    return ((Layer, LAYERS), (Loss, LOSSES), (Metric, METRICS))


def _register(name: str, cls) -> str | None:
    """Registers `cls` under `name` in its family's table; None when it is none of the three kinds."""
    for base, registry in _families():
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
            key = normalize(name)
            registry.entries[key] = cls
            if base.__name__ == "Layer":
                LAYER_TYPES[key] = cls
            return key
    return None


@contextlib.contextmanager
def expecting(records: list[dict] | None):
    """Within it, a plugin file whose sha256 differs from the run's record is refused before it runs."""
    token = _EXPECTED.set({r.get("path") or f"module:{r.get('module')}": r.get("sha256") or r.get("version")
                           for r in records or [] if r.get("path") or r.get("module")})
    try:
        yield
    finally:
        _EXPECTED.reset(token)


def load_file(path) -> Plugin:
    """Executes the plugin file at `path` (once per content) and registers its classes as `<stem>.<Class>`."""
    path = Path(path).expanduser().resolve()
    if path.suffix != ".py":
        raise NnctlError(f"{path}: a plugin is a .py file")
    try:
        if not path.is_file():
            raise NnctlError(f"{path}: no such plugin file")
        if path.stat().st_size > MAX_PLUGIN_BYTES:
            raise NnctlError(f"{path}: {path.stat().st_size:,} bytes is too large for a plugin (at most 10 MiB)")
        data = path.read_bytes()
    except OSError as err:
        raise NnctlError(f"{path}: cannot read the plugin ({err.strerror or err})") from None
    digest = hashlib.sha256(data).hexdigest()
    expected = (_EXPECTED.get() or {}).get(str(path))
    if expected is not None and expected != digest:
        raise NnctlError(f"{path} changed since the run was trained (sha256 {expected[:12]}… then, {digest[:12]}… "
                         f"now): its code may not compute what the weights were trained for; put the file back "
                         f"or train again")
    stem = path.stem
    if not stem.isidentifier():
        raise NnctlError(f"{path}: a plugin file's name must be a Python identifier (it prefixes its types: "
                         f"`{stem}.Class`)")
    module = _FILES.get(digest)
    if module is None:
        module = types.ModuleType(f"nnctl_plugins.{stem}_{digest[:12]}")
        module.__file__ = str(path)
        sys.modules[module.__name__] = module  # classes defined there can be found by their module
        try:
            exec(compile(data, str(path), "exec"), module.__dict__)  # noqa: S102 — the user's own plugin
        except Exception as err:  # noqa: BLE001 — any failure in the user's code is reported, located
            sys.modules.pop(module.__name__, None)
            line = _line_of(err, str(path))
            raise NnctlError(f"{path}{f':{line}' if line else ''}: the plugin fails to load: "
                             f"{type(err).__name__}: {err}") from None
        _FILES[digest] = module
    found = Plugin(str(path), digest)
    for name, value in vars(module).items():  # (again for the same bytes under another file name)
        if isinstance(value, type) and value.__module__ == module.__name__:
            key = _register(f"{stem}.{name}", value)
            if key:
                found.names.append(key)
    if not found.names:
        raise NnctlError(f"{path}: the plugin defines no layer, loss or metric (classes subclassing "
                         f"nnctl.nn.layers.Layer, nnctl.nn.losses.Loss or nnctl.nn.metrics.Metric)")
    return found


def register_alias(text: str, plugin: Plugin) -> str:
    """Registers the class `module:Class` names (found in the loaded plugin file) under that text too."""
    class_name = text.partition(":")[2]
    for name in plugin.names:
        for _base, registry in _families():
            cls = registry.entries.get(name)
            if cls is not None and normalize(cls.__name__) == normalize(class_name):
                return _register(text, cls)
    raise NnctlError(f"{plugin.source} has no layer, loss or metric class '{class_name}'")


def _line_of(err: Exception, filename: str) -> int | None:
    if isinstance(err, SyntaxError) and err.filename == filename:
        return err.lineno
    tb, line = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_module_type(text: str) -> Plugin:
    """`package.module:Class`: imports the module (an installed one, or one on sys.path) and registers the
    class under that very text."""
    module_name, _, class_name = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 — ImportError, or the module's own failure
        raise NnctlError(f"cannot import module '{module_name}' for '{text}': {type(err).__name__}: {err}") from None
    # The saved config holds the canonical (normalized) spelling: match the class by it too.
    wanted = normalize(f"{module_name}:{class_name}")
    cls = getattr(module, class_name, None) or next(
        (value for attr, value in vars(module).items() if normalize(f"{module_name}:{attr}") == wanted), None)
    if cls is None:
        raise NnctlError(f"module '{module_name}' has no class '{class_name}'")
    key = _register(text, cls)
    if key is None:
        raise NnctlError(f"'{text}' is not a layer, loss or metric class")
    return _checked_module(Plugin(module_name, version=_version_of(module_name), names=[key]))


def _checked_module(plugin: Plugin) -> Plugin:
    """`plugin` unless the run being reopened recorded another version of its package."""
    expected = (_EXPECTED.get() or {}).get(f"module:{plugin.source}")
    if expected is not None and expected != plugin.version:
        raise NnctlError(f"module '{plugin.source}' is version {plugin.version} now, the run was trained with "
                         f"{expected}: install that version or train again")
    return plugin


def load_entry_point(name: str) -> Plugin | None:
    """The layer an installed package registers as `name` in the `nnctl.layers` entry-point group, or None."""
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if normalize(point.name) == normalize(name):
            try:
                cls = point.load()
            except Exception as err:  # noqa: BLE001
                raise NnctlError(f"entry point '{point.name}' ({point.value}) fails to load: "
                                 f"{type(err).__name__}: {err}") from None
            key = _register(point.name, cls)
            if key is None:
                raise NnctlError(f"entry point '{point.name}' ({point.value}) is not a layer class")
            module = point.value.partition(":")[0]
            return _checked_module(Plugin(module, version=_version_of(module), names=[key]))
    return None


def _version_of(module_name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = module_name.split(".")[0]
    for dist in packages_distributions().get(top, []):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None
