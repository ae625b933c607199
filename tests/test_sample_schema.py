"""The Sample schema's typed batch (`amt_core.schema.sample.Batch`) names exactly the fields the schema defines:
every tensor field of `field_shapes` and `valid` are required keys, the `valid` flags are `VALID_FIELDS`' names, and a
real collated batch of synthetic samples carries every required key."""

from __future__ import annotations

from amt_core.schema.sample import VALID_FIELDS, Batch, Valid, field_shapes


def test_batch_keys_are_the_schema_fields():
    assert Batch.__required_keys__ == set(field_shapes(8, 8, 4)) | {"valid"}
    assert Valid.__required_keys__ == set(VALID_FIELDS)
    assert not (Batch.__optional_keys__ & Batch.__required_keys__)
    assert "index" in Batch.__optional_keys__  # the trainer's plan adds it; the step drops it


def test_a_collated_synthetic_batch_has_every_required_key():
    from torch.utils.data import default_collate

    from amt_core.data.registry import open_dataset

    dataset = open_dataset("synth:live?seed=3&size=32&num=2")
    batch = default_collate([dataset[0], dataset[1]])
    assert Batch.__required_keys__ <= set(batch)
    assert set(batch["valid"]) == Valid.__required_keys__
