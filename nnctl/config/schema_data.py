"""The config's `data` section: datasets, transforms and validation (part of nnctl/config/schema.py)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from nnctl.config.section import Section, _tagged
from nnctl.config.values import (Bool, Column, Delimiter, Folds, NonNegativeInt, NonNegativeNumber, Number,
                                 OpenFraction, PositiveInt, RunName, Seed, Shape, Text, Width, bounded_int)


class ValidationConfig(Section):
    """Exactly one of: `holdout` (the first N training rows, the book's IMDB setup), `split` (a shuffled
    fraction) or `kfold` (K models, each validated on one of K contiguous parts: the book's Boston setup)."""

    holdout: Optional[PositiveInt] = None
    split: Optional[OpenFraction] = None
    kfold: Optional[Folds] = None
    path: Optional[Text] = Field(None, description="a separate validation file: .npz (x_val/y_val or x/y) or, "
                                                   "for a csv dataset, a .csv with the same columns")
    shuffle: Bool = Field(True, description="with `split`: false takes the LAST rows, as Keras's validation_split "
                                            "does; true (the default) a seeded random sample")

    @model_validator(mode="after")
    def _exactly_one(self):
        chosen = [key for key in ("holdout", "split", "kfold", "path") if getattr(self, key) is not None]
        if len(chosen) != 1:
            raise PydanticCustomError("choice", "give exactly one of `holdout`, `split`, `kfold` or `path`, "
                                                "got {got}",
                                      {"got": " and ".join(chosen) or "neither"})
        if self.shuffle is False and self.split is None:
            raise PydanticCustomError("choice", "`shuffle` goes with `split` (false: the last rows, as Keras's "
                                                "validation_split)")
        return self


class DatasetSpec(Section):
    type: str


class ImdbSpec(DatasetSpec):
    """Keras's imdb.load_data: reviews as word indexes, shifted by `index_from`, shuffled with `seed`."""

    type: Literal["imdb"] = "imdb"
    num_words: Optional[Width] = None
    skip_top: NonNegativeInt = 0
    maxlen: Optional[Width] = None
    start_char: NonNegativeInt = 1
    oov_char: NonNegativeInt = 2
    index_from: NonNegativeInt = 3
    seed: Seed = 113


class ReutersSpec(ImdbSpec):
    type: Literal["reuters"] = "reuters"
    test_split: OpenFraction = 0.2


class MnistSpec(DatasetSpec):
    type: Literal["mnist"] = "mnist"


class FashionMnistSpec(DatasetSpec):
    type: Literal["fashion_mnist"] = "fashion_mnist"


class BostonHousingSpec(DatasetSpec):
    type: Literal["boston_housing"] = "boston_housing"
    test_split: OpenFraction = 0.2
    seed: Seed = 113


class SyntheticSpec(DatasetSpec):
    """Generated data for smoke runs: Gaussian blobs, a noisy regression, or sparse word-index "text"."""

    type: Literal["synthetic"] = "synthetic"
    kind: Literal["classification", "regression", "text", "tickets"] = "classification"
    samples: bounded_int(1, 10**7) = 1000
    features: bounded_int(1, 2**20) = 20
    classes: bounded_int(1, 10_000) = 2
    width: Width = 1000
    length: bounded_int(1, 100_000) = 50
    noise: NonNegativeNumber = 0.1
    seed: Seed = 0
    test_split: OpenFraction = 0.2

    @model_validator(mode="after")
    def _fits(self):
        # Generated before any model check, so its size is bounded here: 10**8 values is 0.8 GB of float64.
        values = self.samples * (self.length if self.kind == "text" else 2 * self.width + self.features
                                 if self.kind == "tickets" else self.features)
        if values > 10**8:
            raise PydanticCustomError("too_large", "samples × {what} = {values} values is too large (allowed: at "
                                                   "most 100,000,000)",
                                      {"what": "length" if self.kind == "text" else "(2 × width + features)"
                                       if self.kind == "tickets" else "features",
                                       "values": f"{values:,}"})
        return self


def _key_or_keys():
    """An array's key, or (a model with several inputs or outputs) a mapping from their names to keys."""
    return Annotated[Union[Annotated[Text, Tag("one")], Annotated[dict[RunName, Text], Tag("named")]],
                     Discriminator(lambda v: "named" if isinstance(v, dict) else "one")]


class NpzSpec(DatasetSpec):
    """Arrays in a .npz file, by key; for several inputs or outputs, `x`/`y` map their names to keys (by
    default each name is its own key, and `<name>_test` its test array)."""

    type: Literal["npz"] = "npz"
    path: Text
    x: _key_or_keys() = "x_train"
    y: _key_or_keys() = "y_train"
    x_test: Optional[_key_or_keys()] = "x_test"
    y_test: Optional[_key_or_keys()] = "y_test"


class NpySpec(DatasetSpec):
    """One .npy file per array."""

    type: Literal["npy"] = "npy"
    x: Text
    y: Text
    x_test: Optional[Text] = None
    y_test: Optional[Text] = None


class CsvSpec(DatasetSpec):
    """A table: `target` is the label column and `features` the inputs (default: the rest), each by header name
    or 0-based index; without a header (`header: false`) the columns are named column0, column1, …. For a
    model with several inputs or outputs, `features` maps input names to column lists and `target` output
    names to columns (column groups)."""

    type: Literal["csv"] = "csv"
    path: Text
    target: Annotated[Union[Annotated[Column, Tag("one")], Annotated[dict[RunName, Column], Tag("named")]],
                      Discriminator(lambda v: "named" if isinstance(v, dict) else "one")]
    features: Optional[Annotated[Union[Annotated[list[Column], Tag("one")],
                                       Annotated[dict[RunName, Annotated[list[Column], Field(min_length=1)]],
                                                 Tag("named")]],
                                 Discriminator(lambda v: "named" if isinstance(v, dict) else "one")]] = None
    header: Bool = True
    delimiter: Delimiter = ","
    test_path: Optional[Text] = None


DATASET_SPECS = {spec.model_fields["type"].default: spec for spec in (
    ImdbSpec, ReutersSpec, MnistSpec, FashionMnistSpec, BostonHousingSpec, SyntheticSpec, NpzSpec, NpySpec,
    CsvSpec)}


class TransformSpec(Section):
    type: str


class MultiHotSpec(TransformSpec):
    type: Literal["multi_hot"] = "multi_hot"
    width: Optional[Width] = Field(None, description="columns; defaults to the dataset's num_words")


class PadSequencesSpec(TransformSpec):
    type: Literal["pad_sequences"] = "pad_sequences"
    maxlen: bounded_int(1, 2**20)
    padding: Literal["pre", "post"] = "pre"
    truncating: Literal["pre", "post"] = "pre"
    value: NonNegativeInt = 0


class OneHotSpec(TransformSpec):
    type: Literal["one_hot"] = "one_hot"
    classes: Optional[bounded_int(1, 100_000)] = None  # one-hot rows are dense: n × classes floats


class StandardizeSpec(TransformSpec):
    type: Literal["standardize"] = "standardize"


class ImputeSpec(TransformSpec):
    """Missing values in a CSV's features, filled with the training split's column mean or median, or a constant."""

    type: Literal["impute"] = "impute"
    strategy: Literal["mean", "median", "constant"] = "mean"
    fill_value: Optional[Number] = None

    @model_validator(mode="after")
    def _constant_has_a_value(self):
        if (self.strategy == "constant") != (self.fill_value is not None):
            raise PydanticCustomError("choice", "give `fill_value` with `strategy: constant`, and only then")
        return self


class RescaleSpec(TransformSpec):
    type: Literal["rescale"] = "rescale"
    scale: Number
    offset: Number = 0.0


class FlattenTransformSpec(TransformSpec):
    type: Literal["flatten"] = "flatten"


class ReshapeTransformSpec(TransformSpec):
    type: Literal["reshape"] = "reshape"
    shape: Shape


TRANSFORM_SPECS = {spec.model_fields["type"].default: spec for spec in (
    MultiHotSpec, PadSequencesSpec, OneHotSpec, StandardizeSpec, ImputeSpec, RescaleSpec, FlattenTransformSpec,
    ReshapeTransformSpec)}


class DataConfig(Section):
    """Where the data comes from (`dataset`, or `path` to a .npz), how it is preprocessed and validated."""

    dataset: Optional[_tagged(DATASET_SPECS)] = Field(None, description="a built-in name, or {type: ..., ...}")
    path: Optional[Text] = Field(None, description="shorthand for dataset: {type: npz, path: ...}")
    transforms: list[_tagged(TRANSFORM_SPECS)] = Field(default_factory=list)
    validation: Optional[ValidationConfig] = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.path is None):
            raise PydanticCustomError("choice", "give exactly one of `dataset` or `path`, got {got}",
                                      {"got": "both" if self.dataset is not None else "neither"})
        texts = self.dataset is not None and (self.dataset.type in ("imdb", "reuters") or getattr(
            self.dataset, "kind", None) == "text")
        if texts and not any(t.type in ("multi_hot", "pad_sequences") for t in self.transforms):
            # Word-index sequences of different lengths are no array a model can take.
            raise PydanticCustomError("sequences", "the {name} dataset gives word-index sequences: add `multi_hot` "
                                                   "or `pad_sequences` to `transforms`", {"name": self.dataset.type})
        return self
