"""Datasets as Samples (one schema, see `sample.py`), readers, transforms and MixUp."""

from amt_core.data.registry import DatasetSpec, open_dataset, parse_spec, register_scheme, schemes

__all__ = ["DatasetSpec", "open_dataset", "parse_spec", "register_scheme", "schemes"]
