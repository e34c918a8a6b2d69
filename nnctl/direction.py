"""Which way is better for a logged figure: one rule for callbacks' `mode: auto`, K-fold summaries, `nnctl runs`
and `compare`. Dependency-free, so the commands that only read runs stay quick to start."""


def higher_is_better(key: str) -> bool:
    """True for accuracy-like names (anything with "acc") and auc/precision/recall (e.g. `auc_1`,
    `precision_at_recall`), with or without the `val_` prefix; losses and errors are minimized."""
    name = key[len("val_"):] if key.startswith("val_") else key
    return "acc" in name or name.startswith(("auc", "precision", "recall"))
