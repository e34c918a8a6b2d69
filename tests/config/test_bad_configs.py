"""A corpus of bad configs: each must fail `nnctl train` with exit code 2, one located red line per problem
(`bad.yaml:LINE:COL: key.path: message`), no traceback, and no run directory.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from nnctl.cli import main

# Every case edits this file; its line numbers are the ones the expectations below refer to.
BASE = """\
name: bad
seed: 1
data:
  path: tiny.npz
  validation: {split: 0.25}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: rmsprop, learning_rate: 0.01}
metrics: [accuracy]
epochs: 2
batch_size: 16
"""
#   1 name: bad
#   2 seed: 1
#   3 data:
#   4   path: tiny.npz
#   5   validation: {split: 0.25}
#   6 model:
#   7   layers:
#   8     - {type: dense, units: 8, activation: relu}        units value at col 28, activation value at col 43
#   9     - {type: dense, units: 1, activation: sigmoid}     the same columns
#  10 loss: binary_crossentropy
#  11 optimizer: {type: rmsprop, learning_rate: 0.01}        type value at col 19, learning_rate value at col 43
#  12 metrics: [accuracy]
#  13 epochs: 2
#  14 batch_size: 16

FIRST = "    - {type: dense, units: 8, activation: relu}"
LAST = "    - {type: dense, units: 1, activation: sigmoid}"
OPTIMIZER = "optimizer: {type: rmsprop, learning_rate: 0.01}"


def edit(*pairs: str) -> str:
    """BASE with each (old, new) replacement applied; `old` must occur exactly once."""
    text = BASE
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} is not unique in BASE"
        text = text.replace(old, new)
    return text


MULTICLASS = ("tiny.npz", "{data}", LAST, "    - {type: dense, units: 3, activation: softmax}",
              "loss: binary_crossentropy", "loss: sparse_categorical_crossentropy")

# (id, yaml text, [(line, col, substring or tuple of substrings), ...]): one entry per expected red line.
CASES = [
    # ---- unknown keys and names: a did-you-mean and the allowed values
    ("top-level-key-typo", edit("epochs: 2", "epoch: 2"),
     [(13, 1, ("epoch: unknown key 'epoch' — did you mean 'epochs'?", "(allowed: batch_size, callbacks, class_weight, data,"))]),
    ("layer-key-typo", edit("units: 8", "unitz: 8"),
     [(8, 21, ("model.layers[0].unitz: unknown key 'unitz' — did you mean 'units'?", "allowed: activation,"))]),
    ("optimizer-key-typo", edit(OPTIMIZER, "optimizer: {type: adam, learning_rate: 0.01, beta1: 0.9}"),
     [(11, 46, "optimizer.beta1: unknown key 'beta1' — did you mean 'beta_1'?")]),
    ("loss-argument-typo", edit("loss: binary_crossentropy", "loss: {type: binary_crossentropy, form_logits: true}"),
     [(10, 35, ("loss.form_logits: unknown key 'form_logits'", "did you mean 'from_logits'?",
                "(allowed: from_logits)"))]),
    ("initializer-argument-typo",
     edit("activation: relu}", "activation: relu, kernel_initializer: {type: random_normal, stdev: 0.1}}"),
     [(8, 91, ("model.layers[0].kernel_initializer.stdev: unknown key 'stdev'", "did you mean 'stddev'?"))]),
    ("layer-type-unknown", edit("type: dense, units: 8", "type: dense_layer, units: 8"),
     [(8, 14, ("model.layers[0].type: unknown layer 'dense_layer'", "(allowed: activation, add, average, average_pooling1d, average_pooling2d,"))]),
    ("layer-type-misspelt", edit("type: dense, units: 8", "type: Dens, units: 8"),
     [(8, 14, "model.layers[0].type: unknown layer 'Dens' — did you mean 'dense'?")]),
    ("layer-bare-name-unknown", edit(FIRST, "    - dens"),
     [(8, 7, "model.layers[0]: unknown layer 'dens' — did you mean 'dense'?")]),
    ("activation-unknown", edit("activation: relu", "activation: reluu"),
     [(8, 43, ("model.layers[0].activation: unknown activation 'reluu' — did you mean 'relu'?", "allowed: elu,"))]),
    ("optimizer-unknown", edit("type: rmsprop", "type: rmsporp"),
     [(11, 19, ("optimizer.type: unknown optimizer 'rmsporp' — did you mean 'rmsprop'?", "(allowed: adagrad, adam,"))]),
    ("optimizer-bare-name-unknown", edit(OPTIMIZER, "optimizer: rmsporp"),
     [(11, 12, "optimizer: unknown optimizer 'rmsporp' — did you mean 'rmsprop'?")]),
    ("loss-unknown", edit("loss: binary_crossentropy", "loss: binary_crossentropyy"),
     [(10, 7, ("loss: unknown loss 'binary_crossentropyy' — did you mean 'binary_crossentropy'?", "allowed: binary_crossentropy, categorical_crossentropy,"))]),
    ("metric-unknown", edit("[accuracy]", "[acuracy]"),
     [(12, 11, ("metrics[0]: unknown metric 'acuracy' — did you mean 'accuracy'?", "allowed: accuracy, auc, binary_accuracy,"))]),
    ("initializer-unknown", edit("activation: relu}", "activation: relu, kernel_initializer: glorot_unifrom}"),
     [(8, 69, "model.layers[0].kernel_initializer: unknown initializer 'glorot_unifrom' — did you mean "
              "'glorot_uniform'?")]),
    ("callback-unknown", BASE + "callbacks: [early_stoping]\n",
     [(15, 13, ("callbacks[0]: unknown callback 'early_stoping'", "did you mean 'early_stopping'"))]),
    ("callback-argument-typo", BASE + "callbacks:\n  - {type: early_stopping, patiance: 3}\n",
     [(16, 28, ("callbacks[0].patiance: unknown key", "did you mean 'patience'"))]),
    ("callback-bad-value", BASE + "callbacks:\n  - {type: reduce_lr_on_plateau, factor: 2}\n",
     [(16, 42, "callbacks[0].factor: `factor` must be a float in (0.0, 1.0), got 2.0")]),
    ("callback-monitor-not-logged", BASE + "callbacks:\n  - {type: early_stopping, monitor: val_acuracy}\n",
     [(16, 37, ("callbacks[0].monitor: 'val_acuracy' is not logged by this run", "did you mean 'val_accuracy'",
                "allowed: loss, accuracy, val_loss, val_accuracy"))]),
    ("schedule-argument-typo", BASE + "callbacks:\n  - type: learning_rate_scheduler\n"
                                      "    schedule: {type: step_decay, evry: 2}\n",
     [(17, 34, ("callbacks[0].schedule.evry:", "every"))]),
    ("device-gpu", BASE + "device: gpu\n",
     [(15, 9, "device: expected one of cpu, cuda, auto, got 'gpu'")]),
    # ---- wrong types and ranges: never coerced
    ("units-word", edit("units: 8", "units: sixteen"),
     [(8, 28, "model.layers[0].units: expected a positive integer, got 'sixteen'")]),
    ("epochs-quoted", edit("epochs: 2", "epochs: '2'"),
     [(13, 9, "epochs: expected a positive integer, got '2'")]),
    ("epochs-bool", edit("epochs: 2", "epochs: true"),
     [(13, 9, "epochs: expected a positive integer, got true")]),
    ("batch-size-float", edit("batch_size: 16", "batch_size: 32.5"),
     [(14, 13, "batch_size: expected a positive integer, got 32.5")]),
    ("batch-size-negative", edit("batch_size: 16", "batch_size: -1"),
     [(14, 13, "batch_size: expected a positive integer, got -1")]),
    ("units-zero", edit("units: 8", "units: 0"),
     [(8, 28, "model.layers[0].units: expected a positive integer, got 0")]),
    ("dropout-rate-above-one", edit(FIRST, FIRST + "\n    - {type: dropout, rate: 1.5}"),
     [(9, 29, "model.layers[1].rate: expected a number in [0, 1), got 1.5")]),
    ("learning-rate-negative", edit("learning_rate: 0.01", "learning_rate: -0.1"),
     [(11, 43, "optimizer.learning_rate: expected a positive number, got -0.1")]),
    ("learning-rate-quoted", edit("learning_rate: 0.01", "learning_rate: '1e-3'"),
     [(11, 43, "optimizer.learning_rate: expected a positive number, got '1e-3'")]),
    ("use-bias-yes", edit("activation: relu}", "activation: relu, use_bias: yes}"),
     [(8, 59, "model.layers[0].use_bias: expected true or false, got 'yes'")]),
    ("seed-negative", edit("seed: 1", "seed: -1"),
     [(2, 7, "seed: expected an integer ≥ 0, got -1")]),
    ("name-with-space", edit("name: bad", "name: my run"),
     [(1, 7, "name: expected a name of at most 100 letters, digits, '_', '-' and '.', got 'my run'")]),
    ("metrics-not-a-list", edit("[accuracy]", "accuracy"),
     [(12, 10, "metrics: expected a list, got 'accuracy'")]),
    # ---- broken or unsafe YAML
    ("bad-indentation", edit(LAST, LAST[1:]),
     [(9, 4, "invalid YAML: bad indentation")]),
    ("unclosed-bracket", edit("[accuracy]", "[accuracy"),
     [(13, 7, "invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence that starts at "
              "line 12, column 10)")]),
    ("unsafe-tag", edit("seed: 1", 'seed: !!python/object/apply:os.system ["touch {tmp}/pwned"]'),
     [(2, 7, "seed: YAML tag '!!python/object/apply:os.system' is not allowed")]),
    ("duplicate-key", edit("epochs: 2", "epochs: 2\nepochs: 3"),
     [(14, 1, "epochs: duplicate key 'epochs' (first given on line 13)")]),
    ("not-a-mapping", "- name: bad\n- seed: 1\n",
     [(1, 1, "a config file must be a mapping of keys")]),
    # ---- missing or empty sections
    ("loss-missing", edit("loss: binary_crossentropy\n", ""),
     [(1, 1, "loss: required key is missing")]),
    ("layers-missing", edit("  layers:\n" + FIRST + "\n" + LAST + "\n", "  input_shape: [10]\n"),
     [(7, 3, "model.layers: required key is missing")]),
    ("layers-empty", edit("  layers:\n" + FIRST + "\n" + LAST + "\n", "  layers: []\n"),
     [(7, 11, "model.layers: expected at least one entry")]),
    ("layers-not-a-list", edit("  layers:\n" + FIRST + "\n" + LAST + "\n", "  layers: {type: dense, units: 1}\n"),
     [(7, 11, "model.layers: expected a list, got a mapping")]),
    ("optimizer-without-type", edit(OPTIMIZER, "optimizer: {learning_rate: 0.1}"),
     [(11, 12, "optimizer: required key 'type' is missing (allowed: adagrad, adam, adamw, rmsprop, sgd)")]),
    # ---- data
    ("validation-holdout-and-split", edit("{split: 0.25}", "{holdout: 5, split: 0.25}"),
     [(5, 15, "data.validation: give exactly one of `holdout`, `split`, `kfold` or `path`, got holdout and split")]),
    ("holdout-larger-than-data", edit("{split: 0.25}", "{holdout: 500}"),
     [(5, 25, ("data.validation.holdout: ", "500", "240"))]),
    ("data-file-missing", edit("path: tiny.npz", "path: missing.npz"),
     [(4, 9, ("data.path: no such file: ", "missing.npz"))]),
    ("input-shape-mismatch", edit("  layers:", "  input_shape: [12]\n  layers:"),
     [(7, 16, "model.input_shape: the model takes inputs of shape [12], x_train has rows of shape [10]")]),
    # ---- cross-field checks, before any training
    ("softmax-binary-crossentropy-one-unit", edit("activation: sigmoid", "activation: softmax"),
     [(9, 43, "model.layers[1].activation: a 1-unit softmax output is always 1.0: use `sigmoid` with "
              "binary_crossentropy")]),
    ("categorical-crossentropy-one-unit", edit("loss: binary_crossentropy", "loss: categorical_crossentropy"),
     [(9, 28, "model.layers[1].units: categorical_crossentropy needs one output unit per class, the last layer "
              "has 1")]),
    ("sparse-crossentropy-one-hot-labels", edit(*MULTICLASS).replace("{data}", "onehot.npz"),
     [(10, 7, "loss: sparse_categorical_crossentropy expects integer class ids, but y_train is one-hot (shape [3] "
              "per sample): use categorical_crossentropy")]),
    ("output-units-fewer-than-classes", edit(*MULTICLASS).replace("{data}", "five.npz"),
     [(9, 28, "model.layers[1].units: y_train: class ids must lie in [0, 2] for a 3-unit output, got values "
              "in [0, 4]")]),
    ("reshape-cannot-hold-input", edit(FIRST, "    - {type: reshape, target_shape: [3, 4]}\n" + FIRST),
     [(8, 7, ("model.layers[0]: ", "cannot reshape an input of shape (10,)", "to (3, 4)"))]),
    ("input-layer-not-first", edit(LAST, LAST + "\n    - {type: input, shape: [1]}"),
     [(10, 14, "model.layers[2].type: an input layer can only be the first layer")]),
    # ---- several independent problems: all reported at once, in file order
    ("three-schema-errors", edit("epochs: 2", "epoch: 2", "units: 8", "units: sixteen", "type: rmsprop",
                                 "type: rmsporp"),
     [(8, 28, "model.layers[0].units: expected a positive integer, got 'sixteen'"),
      (11, 19, "optimizer.type: unknown optimizer 'rmsporp'"),
      (13, 1, "epoch: unknown key 'epoch'")]),
    ("three-name-errors", edit("activation: relu", "activation: reluu", "loss: binary_crossentropy",
                               "loss: binary_crossentropyy", "[accuracy]", "[acuracy]"),
     [(8, 43, "unknown activation 'reluu'"), (10, 7, "unknown loss 'binary_crossentropyy'"),
      (12, 11, "unknown metric 'acuracy'")]),
    ("missing-type-does-not-hide-others", edit("type: dense, units: 8, ", "units: 8, ", "units: 1,", "units: one,"),
     [(8, 7, "model.layers[0]: required key 'type' is missing"),
      (9, 28, "model.layers[1].units: expected a positive integer, got 'one'")]),
]


@pytest.fixture
def workdir(tmp_path, make_npz):
    """A folder holding the data files the cases name: binary, one-hot (3 classes) and sparse (5 classes)."""
    make_npz(tmp_path / "tiny.npz", rows=240, test_rows=40)
    make_npz(tmp_path / "onehot.npz", labels="onehot", classes=3)
    make_npz(tmp_path / "five.npz", labels="sparse", classes=5)
    return tmp_path


def _write(workdir, text: str):
    config = workdir / "bad.yaml"
    config.write_text(text.replace("{tmp}", str(workdir)), encoding="utf-8")
    return config


def invoke(workdir, text: str, command: str = "train", extra=()):
    config = _write(workdir, text)
    args = [command, str(config), *extra] + (["--runs-dir", str(workdir / "runs")] if command == "train" else [])
    return CliRunner().invoke(main, args)


def assert_reported(result, expected, label: str = "bad.yaml"):
    """Exit code 2, no traceback, and exactly one `error: LABEL:LINE:COL: ...` line per expected issue, in order."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a clean exit, not an escaped error
    lines = result.stderr.splitlines()
    assert len(lines) == len(expected), result.stderr
    for line, (row, col, wanted) in zip(lines, expected):
        where = f"{re.escape(label)}:{row}:{col}: " if row is not None else f"{re.escape(label)}: "
        assert re.match(rf"^error: \S*{where}", line), f"expected {label}:{row}:{col}, got: {line}"
        for part in (wanted,) if isinstance(wanted, str) else wanted:
            assert part in line, f"{part!r} not in: {line}"


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in CASES])
def test_train_rejects_bad_config(workdir, text, expected):
    result = invoke(workdir, text)
    assert_reported(result, expected)
    assert not (workdir / "runs").exists()


def test_corpus_is_large_and_ids_unique():
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)


def test_unsafe_tag_does_not_run_its_command(workdir):
    text = edit("seed: 1", 'seed: !!python/object/apply:os.system ["touch {tmp}/pwned"]')
    for command in ("train", "check", "summary"):
        assert invoke(workdir, text, command).exit_code == 2
    assert not (workdir / "pwned").exists()


@pytest.mark.parametrize("command, case_id", [
    ("check", "three-schema-errors"), ("check", "three-name-errors"), ("check", "input-shape-mismatch"),
    ("check", "sparse-crossentropy-one-hot-labels"), ("summary", "three-schema-errors"),
    ("summary", "three-name-errors"), ("summary", "reshape-cannot-hold-input"), ("config", "three-schema-errors"),
])
def test_other_commands_report_the_same_lines(workdir, command, case_id):
    _, text, expected = next(case for case in CASES if case[0] == case_id)
    result = invoke(workdir, text, command) if command != "config" else CliRunner().invoke(
        main, ["config", "show", str(_write(workdir, text))])
    assert_reported(result, expected)


@pytest.mark.parametrize("overrides, expected", [
    (["model.layers[5].units=3"], ["--set model.layers[5].units=3: model.layers[5].units: index 5 is out of range "
                                   "(the list has 2 entries)"]),
    (["epochs=abc"], ["--set epochs=abc: epochs: expected a positive integer, got 'abc'"]),
    (["epochs='2'"], ["--set epochs='2': epochs: expected a positive integer, got '2'"]),
    (["optimizer.type=rmsporp"], ["--set optimizer.type=rmsporp: optimizer.type: unknown optimizer 'rmsporp' — "
                                  "did you mean 'rmsprop'?"]),
    (["epochs"], ["--set epochs: expected key.path=value, e.g. --set epochs=5"]),
    (["model..layers=1"], ["--set model..layers=1: cannot read key path 'model..layers'"]),
    (["batch_size=[1"], ["--set batch_size=[1: invalid YAML: "]),
    (["epochs=2", "model.layers[5].units=3", "seed=!!python/name:os.system x"],
     ["--set model.layers[5].units=3: model.layers[5].units: index 5 is out of range",
      "--set seed=!!python/name:os.system x: YAML tag '!!python/name:os.system' is not allowed"]),
], ids=["index-out-of-range", "not-a-number", "quoted-number", "unknown-name", "no-equals", "malformed-path",
        "broken-yaml", "two-bad-of-three"])
def test_bad_set_names_the_argument(workdir, overrides, expected):
    result = invoke(workdir, BASE, extra=[part for o in overrides for part in ("--set", o)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == len(expected), result.stderr
    for line, wanted in zip(lines, expected):
        assert line.startswith("error: " + wanted), line
    assert not (workdir / "runs").exists()


def test_missing_config_file(workdir):
    result = CliRunner().invoke(main, ["train", str(workdir / "nope.yaml"), "--runs-dir", str(workdir / "runs")])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("nope.yaml: no such config file")
    assert not (workdir / "runs").exists()


def test_base_config_is_good(workdir):
    """The corpus's starting point trains, so each case fails only because of its own edit."""
    result = invoke(workdir, BASE, "check")
    assert result.exit_code == 0, result.output
    assert "ok (2 layers, 97 parameters, 180 training rows, 60 validation rows, 40 test rows)" in result.stdout
