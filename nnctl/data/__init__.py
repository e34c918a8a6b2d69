"""Data: reading the config's data source and cutting train / validation / test splits."""

from nnctl.data.files import Splits, load_data, read_array_file

__all__ = ["Splits", "load_data", "read_array_file"]
