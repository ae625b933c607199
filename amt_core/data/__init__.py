"""Datasets as Samples (the one schema is `amt_core.schema.sample`): readers, the spec registry, mixtures."""

from amt_core.data.registry import DatasetSpec, open_dataset, parse_spec, register_scheme, schemes

__all__ = ["DatasetSpec", "open_dataset", "parse_spec", "register_scheme", "schemes"]
