"""The book's support-ticket data (three inputs, two outputs), generated: `synthetic` with `kind: tickets`.

The book trains its ticket model on random arrays, which nothing can learn. These rows carry signal, so a
run shows whether the graph learns: each ticket belongs to one of `classes` departments, named by a few
marker words in its title and body and (mostly) by one tag; its priority in [0, 1] grows with the number of
"urgent" words in its body. Arrays are named as the book's inputs and outputs.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ArgumentError
from nnctl.named import NamedArrays

INPUTS = ("title", "text_body", "tags")
OUTPUTS = ("priority", "department")
_MARKERS, _URGENT = 10, 20  # marker words per department; urgent words (the vocabulary's last ones)


def tickets(rng: np.random.Generator, samples: int, vocabulary: int, tags: int, departments: int,
            noise: float) -> tuple[NamedArrays, NamedArrays]:
    """(inputs, targets): title and text_body multi-hot over `vocabulary` words, tags multi-hot over `tags`;
    priority (n, 1) in [0, 1] and department one-hot (n, departments). `noise`: the fraction of marker words
    and tags replaced by random ones; the priority has N(0, 0.05) noise."""
    if vocabulary < departments * _MARKERS + _URGENT + 10:
        raise ArgumentError(f"`width` (the vocabulary) must be at least {departments * _MARKERS + _URGENT + 10} "
                            f"for {departments} departments of synthetic tickets, got {vocabulary}.")
    if tags < departments:
        raise ArgumentError(f"`features` (the number of tags) must be at least `classes` ({departments}), "
                            f"got {tags}.")
    department = rng.integers(0, departments, samples)
    rows = np.arange(samples)
    title = rng.random((samples, vocabulary), dtype=np.float32) < 3 / vocabulary
    body = rng.random((samples, vocabulary), dtype=np.float32) < 20 / vocabulary

    def markers(count):
        words = department[:, None] * _MARKERS + rng.integers(0, _MARKERS, (samples, count))
        random = rng.integers(0, vocabulary, (samples, count))
        return np.where(rng.random((samples, count)) < noise, random, words)

    title[rows[:, None], markers(1)] = True
    body[rows[:, None], markers(2)] = True
    urgency = rng.random(samples)
    count = rng.binomial(6, urgency)
    hit = np.repeat(rows, count)
    body[hit, vocabulary - 1 - rng.integers(0, _URGENT, len(hit))] = True
    labels = rng.random((samples, tags), dtype=np.float32) < 2 / tags
    own = np.where(rng.random(samples) < noise, rng.integers(0, tags, samples), department)
    labels[rows, own] = True
    priority = np.clip(count / 6 + 0.05 * rng.normal(size=samples), 0, 1).astype(np.float32)[:, None]
    x = NamedArrays({"title": title.astype(np.float32), "text_body": body.astype(np.float32),
                     "tags": labels.astype(np.float32)})
    y = NamedArrays({"priority": priority, "department": np.eye(departments, dtype=np.float32)[department]})
    return x, y
