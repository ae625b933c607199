"""The trainer's view of the other parts: build the model, the loss and the datasets from a RunConfig, and move
batches; every failure a user can cause becomes a one-line UserError here, before anything is written.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import torch
from torch import nn

from amt_core.data import open_dataset
from amt_core.errors import UserError, short, summarise_keys
from amt_core.losses import AMTLoss
from amt_core.models import ModelConfig, model_from_config, record_attention
from amt_core.schema.sample import VALID_FIELDS, Batch
from amt_core.train.checkpoint_files import CONFIG_FILE, load_checkpoint, resolve_checkpoint
from amt_core.train.compile import run_eagerly
from amt_core.train.config import config_from_dict

_Tree = TypeVar("_Tree")
"""A batch or any part of one: `to_device` and `slice_batch` return the same structure."""


def resolve_device(name: str) -> torch.device:
    """The device a run or a command asks for: `auto` is CUDA when visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "this preset needs a CUDA GPU and none is visible; use --preset cpu or --set trainer.device=cpu"
        )
    return torch.device(name)


def build_model(config: ModelConfig) -> nn.Module:
    """The model a resolved configuration describes (`RunConfig.model`), with a bad configuration as UserError."""

    try:
        return model_from_config(config)
    except UserError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise UserError(f"model {type(config).__name__}: {err}; check --set model.KEY=VALUE") from None


def build_loss(config: AMTLoss.Config | dict[str, Any]) -> nn.Module:
    """The AMT loss of a configuration (`RunConfig.loss`), or of overrides over its defaults (a dict, as
    `AMTLoss.Config.from_dict` takes); bad keys are a UserError."""

    return AMTLoss(config)


def open_data(spec: str):
    """`open_dataset(spec)`; an empty dataset is a UserError too."""

    dataset = open_dataset(spec)
    if len(dataset) == 0:
        raise UserError(f"dataset {spec!r} is empty; check the spec")
    return dataset


def to_device(batch: _Tree, device: torch.device) -> _Tree:
    """A copy of a batch (nested dicts of tensors, a `Batch`) on `device`; `batch` is left as it was."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def slice_batch(batch: _Tree, start: int, stop: int) -> _Tree:
    """Samples [start, stop) of a collated batch (nested dicts of tensors, a `Batch`), as a new batch; tensors
    without a batch dimension and anything else are kept whole."""
    if isinstance(batch, torch.Tensor):
        return batch[start:stop] if batch.ndim else batch
    if isinstance(batch, dict):
        return {k: slice_batch(v, start, stop) for k, v in batch.items()}
    return batch


def call_model(model: nn.Module, batch: dict, attention: bool = False):
    """The model's output for a batch; with `attention`, its attention maps are recorded into `output.attention`."""
    if not attention:
        return model(batch)

    # compiled blocks would replay graphs traced without the capture hooks
    with record_attention(getattr(model, "module", model)), run_eagerly():
        return model(batch)


def hand_faces(model: nn.Module) -> torch.Tensor | None:
    """(F, 3) triangle indices of the model's hand mesh, when it has one."""
    model = getattr(model, "module", model)
    for name in ("hand_faces", "faces"):
        faces = getattr(model, name, None)
        if isinstance(faces, torch.Tensor):
            return faces
    layer = getattr(model, "hand_layer", None)
    faces = getattr(layer, "faces", None) if layer is not None else None
    if faces is not None:
        return torch.as_tensor(faces)
    return None


def per_sample_error(output, batch: Batch) -> torch.Tensor:
    """(B,) mean joint error in metres (0 where the sample has no 3D joints): the hard-case mining score."""
    error = (output.joints3d.detach().float() - batch["joints3d"].float()).norm(dim=-1).mean(dim=-1)
    valid = batch["valid"]["joints3d"].to(error.dtype) if "valid" in batch else torch.ones_like(error)
    return error * valid


def state_dict_problem(err: RuntimeError) -> str:
    """The first concrete problem of a `load_state_dict` error, short: the first missing or unexpected key and how
    many more, or the first size mismatch and how many more (torch lists every key, which for a model of another
    depth is a line of thousands of characters)."""

    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    problems = []
    for label, pattern in (("missing", "Missing key(s)"), ("unexpected", "Unexpected key(s)")):
        for line in lines:
            if line.startswith(pattern):
                keys = re.findall(r'"([^"]+)"', line)
                problems.append(f"{len(keys)} {label} keys: {summarise_keys(keys)}")
    mismatches = [line for line in lines if line.startswith("size mismatch for")]
    if mismatches:
        shapes = re.match(r"size mismatch for ([^:]+):.*?Size\(\[([^\]]*)\]\).*Size\(\[([^\]]*)\]\)", mismatches[0])
        first = (
            f"{shapes.group(1)} is [{shapes.group(2)}] in the file, [{shapes.group(3)}] in the model"
            if shapes
            else short(mismatches[0], 100)
        )
        problems.append(f"{len(mismatches)} size mismatches: {first}")
    if problems:
        return "; ".join(problems)
    return short(lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__), 160)


def reference_pose_of(folder) -> torch.Tensor | None:
    """(21, 3) metres: the training data's mean root-relative pose a checkpoint's trainer saw, or None (an older
    checkpoint, or one written before the first step)."""

    try:
        meta = json.loads((resolve_checkpoint(folder) / CONFIG_FILE).read_text())
        pose = meta.get("reference_pose")
        return None if pose is None else torch.tensor(pose, dtype=torch.float64).reshape(21, 3)
    except (OSError, ValueError, RuntimeError, AttributeError):
        return None


def model_from_checkpoint(path: str, device: torch.device):
    """The model a checkpoint holds, rebuilt from the model configuration stored with it (no registry defaults
    involved; a format-1 checkpoint names a registered model instead, see `amt_core.train.config`), in eval mode.

    Returns:
        (model, RunConfig, checkpoint folder).

    Raises:
        UserError: no checkpoint there, a corrupt one, or weights that do not fit the stored model.
    """

    checkpoint = load_checkpoint(path, with_state=False)
    meta = checkpoint.config
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise UserError(
            f"checkpoint {checkpoint.path} has no readable config (its config.json holds no 'config' object); "
            "use another checkpoint"
        )
    try:
        config = config_from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, UserError) as err:
        raise UserError(
            f"checkpoint {checkpoint.path} has no readable config ({err}); use another checkpoint"
        ) from None
    model = build_model(config.model)
    try:
        model.load_state_dict(checkpoint.weights)
    except RuntimeError as err:
        first = state_dict_problem(err)
        raise UserError(f"checkpoint {checkpoint.path} does not match model {config.model_name} ({first})") from None
    return model.to(device).eval(), config, checkpoint.path


def mask_invalid_labels(batch: Batch) -> int:
    """Mark labels with NaN or inf as absent (their `valid` flag False, the values zeroed so a masked loss stays
    finite); returns how many samples had such a label. The image is left alone: a non-finite image is a bad step
    the stability checks skip and record.

    In place, the one function here that changes the batch it is given: only for a batch its caller has just taken
    from its own loader, before anything else reads it (`BatchFeed.mask_invalid`, `evaluate`).
    """
    valid = batch.get("valid", {})
    size = batch["image"].shape[0]
    bad_samples = torch.zeros(size, dtype=torch.bool)
    for flag, fields in VALID_FIELDS.items():
        flags = valid.get(flag)
        if not torch.is_tensor(flags) or flags.shape != (size,):
            continue
        finite = torch.ones(size, dtype=torch.bool)
        for field in fields:
            value = batch.get(field)
            if torch.is_tensor(value) and value.is_floating_point() and value.shape[:1] == (size,):
                finite &= torch.isfinite(value.reshape(size, -1)).all(1).cpu()
        if finite.all():
            continue
        bad_samples |= ~finite & flags.bool().cpu()
        valid[flag] = (flags.bool() & finite.to(flags.device)).to(flags.dtype)
        for field in fields:
            value = batch.get(field)
            if torch.is_tensor(value) and value.is_floating_point():
                batch[field] = torch.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0)
    return int(bad_samples.sum())
