"""A sweep file: a base config, the metric to optimize, and the search space by key path.

    base: boston.yaml            # relative to this file
    sweep:
      metric: val_mae            # minimized or maximized as callbacks' mode: auto
      trials: 40
      sampler: tpe               # tpe | random | grid
      pruner: median             # none | median | hyperband
      seed: 0                    # default: the base config's seed
      space:
        optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}
        model.layers[0].units: {choice: [32, 64, 128]}
        epochs: 20               # not a distribution: a fixed override for every trial

Every key path is checked against the base config's schema before anything runs, with each distribution's
bounds and every choice put in (a mistake is located in the sweep file, with did-you-mean).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import Field, ValidationError

from nnctl.config.resolve import ResolvedConfig, _translate, in_file_order, resolve_document
from nnctl.config.section import Section
from nnctl.config.values import RunName, Seed, Text, bounded_int
from nnctl.config.yamlfile import ConfigError, ConfigIssue, Document, parse_yaml, read_config_text
from nnctl.errors import did_you_mean, show

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "log_int", "choice")
ALIASES = {"validation": "data.validation"}  # the issue's spelling, as in the sweep example


class SweepSection(Section):
    metric: Text
    trials: bounded_int(1, 100_000) = 20
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["none", "median", "hyperband"] = "none"
    seed: Optional[Seed] = None
    space: dict[str, Any] = Field(min_length=1, max_length=200)


class SweepFile(Section):
    base: Text
    name: Optional[RunName] = None
    sweep: SweepSection


@dataclass
class Parameter:
    """One searched key: its distribution (`kind`, `args`) or, when `kind` is None, a fixed value."""

    key: str  # the key path as the sweep file spells it (aliases resolved)
    kind: str | None
    args: Any
    where: tuple  # its path in the sweep file, for located errors

    def samples(self) -> list:
        """Values that represent it for checking: both bounds, or every choice, or the fixed value."""
        if self.kind is None:
            return [self.args]
        if self.kind == "choice":
            return list(self.args)
        low, high = self.args
        return [int(low), int(high)] if self.kind in ("int", "log_int") else [float(low), float(high)]


@dataclass
class Sweep:
    path: Path
    name: str
    spec: SweepSection
    base_path: Path
    base_text: str
    seed: int
    parameters: list[Parameter]
    base: ResolvedConfig = None
    doc: Document = field(default=None, repr=False)

    @property
    def searched(self) -> list[Parameter]:
        return [p for p in self.parameters if p.kind is not None]

    def overrides(self, values: dict) -> list[str]:
        """`--set` assignments for one trial: the fixed keys and the sampled `values` (by key)."""
        chosen = {p.key: p.args for p in self.parameters if p.kind is None} | values
        return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, value in chosen.items()]

    def resolve(self, values: dict, extra: tuple = ()) -> ResolvedConfig:
        """The trial's config: the base with `values` and `extra` assignments applied, validated."""
        doc = parse_yaml(self.base_text, str(self.base_path))
        return resolve_document(doc, self.overrides(values) + list(extra), default_name=self.base_path.stem,
                                base_dir=self.base_path.parent)


def _with_hint(issue: ConfigIssue) -> ConfigIssue:
    """An unknown key of the sweep file's own sections, with a did-you-mean and the allowed keys."""
    if not issue.message.startswith("unknown key") or "allowed" in issue.message or len(issue.path) > 2:
        return issue
    schema = SweepSection if issue.path[:1] == ("sweep",) and len(issue.path) == 2 else SweepFile
    allowed = sorted(schema.model_fields)
    close = did_you_mean(str(issue.path[-1]), allowed)
    return ConfigIssue(issue.source, issue.path, issue.message + (f" — did you mean '{close}'?" if close else "")
                       + f" (allowed: {', '.join(allowed)})")


def _parameter(doc: Document, key: str, value, issues: list) -> Parameter | None:
    where = ("sweep", "space", key)
    path = ALIASES.get(key, key)
    if isinstance(value, dict) and len(value) == 1:
        kind, args = next(iter(value.items()))
        if kind in DISTRIBUTIONS:
            problem = _check_args(kind, args)
            if problem:
                issues.append(ConfigIssue(doc.source(where + (kind,)), where + (kind,), problem))
                return None
            return Parameter(path, kind, args, where)
        close = did_you_mean(str(kind), DISTRIBUTIONS)
        if close:
            issues.append(ConfigIssue(doc.key_source(where + (kind,)), where + (kind,),
                                      f"unknown distribution {show(kind, 40)} — did you mean '{close}'? (allowed: "
                                      f"{', '.join(DISTRIBUTIONS)}; any other value is a fixed override)"))
            return None
    return Parameter(path, None, value, where)


def _check_args(kind: str, args) -> str | None:
    if kind == "choice":
        if not isinstance(args, list) or not args or len(args) > 1000:
            return "`choice` takes a list of 1 to 1,000 values"
        return None
    numeric = isinstance(args, list) and len(args) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in args)
    if not numeric or not args[0] < args[1]:
        return f"`{kind}` takes [low, high] with low < high, got {show(args, 60)}"
    if kind.startswith("log") and args[0] <= 0:
        return f"`{kind}` needs a positive low bound, got {args[0]}"
    if kind in ("int", "log_int") and not all(isinstance(v, int) for v in args):
        return f"`{kind}` takes integer bounds, got {show(args, 60)}"
    return None


def load_sweep(path) -> Sweep:
    """The sweep file at `path`, its base config and every key path checked; a ConfigError otherwise."""
    path = Path(path)
    doc = parse_yaml(read_config_text(path, str(path)), str(path))
    try:
        given = SweepFile.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as err:
        raise ConfigError(sorted([_with_hint(issue) for issue in _translate(err, doc)], key=in_file_order)) from None
    issues: list[ConfigIssue] = []
    parameters = [p for p in (_parameter(doc, key, value, issues) for key, value in given.sweep.space.items())
                  if p is not None]
    base_path = (path.parent / Path(given.base).expanduser()).resolve()
    base_text = read_config_text(base_path, str(base_path))
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))
    sweep = Sweep(path, given.name or path.stem, given.sweep, base_path, base_text, 0, parameters, doc=doc)
    if given.sweep.sampler == "grid" and any(p.kind not in (None, "choice") for p in parameters):
        raise ConfigError([ConfigIssue(doc.source(("sweep", "sampler")), ("sweep", "sampler"),
                                       "the grid sampler takes `choice` distributions only")])
    sweep.base = _check_space(sweep, doc)
    sweep.seed = given.sweep.seed if given.sweep.seed is not None else int(sweep.base.config.seed)
    return sweep


def _check_space(sweep: Sweep, doc: Document) -> ResolvedConfig:
    """Resolves the base with each parameter's representative values (others at their first), so a wrong
    key or value is found now; errors are located at the parameter's line in the sweep file."""
    firsts = {p.key: p.samples()[0] for p in sweep.searched}
    trials = [dict(firsts)]
    for p in sweep.searched:
        trials += [{**firsts, p.key: value} for value in p.samples()[1:]]
    first = None
    for values in trials[:60]:
        doc_copy = parse_yaml(sweep.base_text, str(sweep.base_path))
        labels = {p.key: f"{sweep.path}:{_line(doc, p.where)}: sweep.space.{p.where[-1]}" for p in sweep.parameters}
        assignments = [(text, labels[text.partition("=")[0]]) for text in sweep.overrides(values)]
        try:
            resolved = resolve_document(copy.deepcopy(doc_copy), assignments, default_name=sweep.base_path.stem,
                                        base_dir=sweep.base_path.parent)
        except ConfigError as err:
            raise ConfigError(err.issues) from None
        first = first or resolved
    return first


def _line(doc: Document, where: tuple) -> str:
    source = doc.key_source(where)
    return f"{source.line}:{source.column}" if source.line else "?"
