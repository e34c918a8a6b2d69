"""Paths that callbacks write (a CSV log, TensorBoard folders, model checkpoints): kept inside the run folder,
away from the run's own files, and formatted from the epoch number and log values only.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path, PurePosixPath

from nnctl.errors import ArgumentError, NnctlError, clip, show

# The files a run folder keeps for itself (nnctl/runs/rundir.py, nnctl/runs/lock.py); a callback never writes them.
RUN_FILES = frozenset({"manifest.json", "config.yaml", "history.json", "events.jsonl", "weights.safetensors",
                       "metrics.json", "preprocessing.json", "kfold.json", ".lock"})

# [[fill]align][sign][z][#][0][width][grouping][.precision][type], with a harmless fill and at most 2-digit widths
# (a fill of "/" or "." could build a path; a width of 10**6 a name no file system takes).
_SPEC = re.compile(r"^(?:[0 _-]?[<>=^])?[-+ ]?z?#?0?\d{0,2}[,_]?(?:\.\d{1,2})?[bdeEfFgGnoxX%]?$")
_SAMPLES = (1, 0.5)  # what fields hold: the epoch number (an int) and log values (floats)


def check_run_path(value, kind: str = "file") -> str | None:
    """Why `value` cannot name a `kind` ("file" or "folder") inside a run folder, or None when it can.

    Purely lexical: absolute paths, `~`, `..` and the run's own files are refused; `confine` checks symlinks
    when writing.
    """
    if not isinstance(value, str) or not value.strip():
        return f"must be a {kind} name, got {show(value)}"
    if "\x00" in value or "\\" in value:
        return f"must be a relative path with '/' separators, got {show(value)}"
    path = PurePosixPath(value)
    if path.is_absolute() or value.startswith("~"):
        return f"must be a path inside the run folder, got {show(value)} (allowed: relative paths)"
    if ".." in path.parts:
        return f"must stay inside the run folder, got {show(value)} which leaves it through '..'"
    if kind == "file" and (not path.parts or path.parts == ("checkpoints",)):
        return f"must name a file inside the run folder, got {show(value)}"
    protected = _protected(path)
    if protected:
        return (f"must not name the run's own {protected}, got {show(value)} (allowed: any other path inside the "
                f"run folder)")
    return None


def _protected(path: PurePosixPath) -> str | None:
    parts = path.parts
    if len(parts) == 1 and parts[0] in RUN_FILES:
        return f"file {parts[0]}"
    if len(parts) >= 2 and parts[0] == "checkpoints" and parts[1].startswith("last"):
        return "resume checkpoint (checkpoints/last*)"
    return None


def template_fields(template: str) -> list[tuple[str, str]]:
    """The (name, format spec) of each `{field}` in a path template; ArgumentError for anything that is not a
    plain name with a numeric format spec (`{epoch.__class__}`, `{0}`, `{}`, `{x!r}`, `{epoch:d`)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ArgumentError(f"`filepath` {show(template)} is not a valid template: {err}") from None
    fields = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ArgumentError(f"`filepath` field {{{clip(name, 60)}}} is not allowed: use a name such as "
                                f"{{epoch}} or {{val_loss}} (no positions, attributes or indexes)")
        if conversion is not None or not _SPEC.match(spec or ""):
            raise ArgumentError(f"`filepath` field {{{clip(name, 40)}{'!' + conversion if conversion else ''}"
                                f"{':' + clip(spec, 40) if spec else ''}}} is not allowed: give a numeric format "
                                f"such as {{epoch:03d}} or {{val_loss:.3f}}")
        fields.append((name, spec))
    return fields


def check_template(template: str, names) -> str | None:
    """Why `template` cannot be formatted with `epoch` and the log `names` at every epoch, or None."""
    for name, spec in template_fields(template):
        if name != "epoch" and name not in names:
            return (f"field {{{name}}} is not logged by this run (allowed: epoch, "
                    f"{', '.join(sorted(names)) or 'no log values'})")
        try:
            format(_SAMPLES[0] if name == "epoch" else _SAMPLES[1], spec)
        except ValueError:
            kind = "the epoch number (an integer)" if name == "epoch" else "a log value (a float)"
            return f"field {{{name}:{spec}}} cannot format {kind}"
    return None


def fill_template(template: str, epoch: int, logs: dict) -> str:
    """`template` with its fields filled: `epoch` and the values of `logs`, nothing else is reachable."""
    values = {"epoch": epoch, **{k: v for k, v in logs.items() if isinstance(k, str)}}
    out = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            if name not in values:
                raise ArgumentError(f"`filepath` field {{{name}}} is not in this epoch's logs (available: epoch, "
                                    f"{', '.join(sorted(logs))})")
            out.append(format(values[name], spec))
    return "".join(out)


def confine(root, path) -> Path:
    """`path` after checking that, with symbolic links resolved, it lies inside the run folder `root` and names
    none of the run's own files; an NnctlError naming the path otherwise. No check when `root` is None."""
    path = Path(path)
    if root is None:
        return path
    root_real, target = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([root_real, target]) != root_real:
        raise NnctlError(f"{clip(str(path))}: resolves to {clip(target)}, outside the run folder {root} "
                         f"(a symbolic link?); nothing was written there")
    protected = _protected(PurePosixPath(os.path.relpath(target, root_real)))
    if protected:
        raise NnctlError(f"{clip(str(path))}: resolves to the run's own {protected}; nothing was written there")
    return path
