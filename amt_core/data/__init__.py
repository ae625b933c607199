"""Datasets as Samples (one schema, see `sample.py`), readers, transforms and MixUp."""
