"""Parameter groups (pretrained backbone 0.01x, new encoders 0.5x, decoders 1x) and the AdamW that steps them.

Groups are told apart by module path: a model may say it itself with `param_group_of(name) -> str`; otherwise the
prefixes of `OptimConfig.group_prefixes` decide, and what matches none is a decoder. Norm weights, biases and
embeddings/tokens get no weight decay. Learning rates are tensors, so a step can be cancelled on the device (lr 0)
without a host sync (see stability.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

GROUPS: tuple[str, ...] = ("backbone", "encoders", "decoders", "loss")

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
if hasattr(nn, "RMSNorm"):
    _NORMS = (*_NORMS, nn.RMSNorm)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    weight_decay: float = 0.05
    """AdamW decoupled weight decay (not applied to norms, biases, embeddings and tokens)."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    group_lr_scale: dict[str, float] = field(
        default_factory=lambda: {"backbone": 0.01, "encoders": 0.5, "decoders": 1.0, "loss": 1.0}
    )
    """Learning-rate multiplier per group (the seed's 0.01 / 0.5 / 1; `loss` holds learnable loss weights)."""
    group_prefixes: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "backbone": ("backbone.",),
            "encoders": ("hand_encoder.", "object_encoder.", "contact_encoder.", "encoders.", "neck.", "fpn."),
        }
    )
    """Module-path prefixes of the backbone and encoder groups, used when the model has no `param_group_of`."""

    def __post_init__(self) -> None:
        if self.weight_decay < 0:
            raise ValueError(f"OptimConfig.weight_decay must be >= 0 (got {self.weight_decay})")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"OptimConfig.betas must be in [0, 1) (got {self.betas})")
        unknown = set(self.group_lr_scale) - set(GROUPS)
        if unknown:
            raise ValueError(f"OptimConfig.group_lr_scale has unknown groups {sorted(unknown)}; groups are {GROUPS}")
        for name, scale in self.group_lr_scale.items():
            if scale < 0:
                raise ValueError(f"OptimConfig.group_lr_scale[{name!r}] must be >= 0 (got {scale})")
        # Frozen: lists from JSON become tuples here, once.
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "group_prefixes", {k: tuple(v) for k, v in self.group_prefixes.items()})


def classify_parameters(model: nn.Module, config: OptimConfig) -> dict[str, str]:
    """Group name for each trainable parameter, by module path (or the model's own `param_group_of`)."""
    own = getattr(model, "param_group_of", None)
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = own(name) if callable(own) else None
        if group is None:
            group = "decoders"
            for candidate in ("backbone", "encoders"):
                if name.startswith(config.group_prefixes.get(candidate, ())):
                    group = candidate
                    break
        if group not in GROUPS:
            raise ValueError(f"parameter {name} was put in unknown group {group!r}; groups are {GROUPS}")
        groups[name] = group
    return groups


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters without weight decay: norm layers, biases, 1-D tensors and what the model lists (timm's API)."""
    names = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, _NORMS) or param.ndim <= 1 or param_name.endswith("bias"):
                names.add(full)
    for module_name, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            try:
                keys = listed()
            except Exception:  # a timm model's no_weight_decay may rely on attributes a wrapper lacks
                keys = ()
            names.update(f"{module_name}.{key}" if module_name else key for key in keys)
    return names


def build_optimizer(
    modules: dict[str, nn.Module], config: OptimConfig, device: torch.device
) -> tuple[torch.optim.AdamW, list[str]]:
    """AdamW over the trainable parameters of `modules` ({"": model, "loss.": loss}) split into groups.

    Each param group has `group` (name), `lr_scale` and a tensor `lr` on `device`. Returns the optimizer and the
    group names present, in order.
    """
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for prefix, module in modules.items():
        groups = classify_parameters(module, config) if prefix == "" else None
        no_decay = no_decay_names(module)
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            group = groups[name] if groups is not None else "loss"
            decay = name not in no_decay and group != "loss"
            buckets.setdefault((group, decay), []).append(param)
    param_groups = []
    for group in GROUPS:
        for decay in (True, False):
            params = buckets.get((group, decay))
            if params:
                param_groups.append(
                    {
                        "params": params,
                        "group": group,
                        "lr_scale": config.group_lr_scale.get(group, 1.0),
                        "weight_decay": config.weight_decay if decay else 0.0,
                        "lr": torch.tensor(0.0, device=device),
                    }
                )
    # Tensor learning rates need capturable (CUDA) or the per-parameter loop (CPU).
    extra = {"capturable": True, "foreach": True} if device.type == "cuda" else {"foreach": False}
    optimizer = torch.optim.AdamW(
        param_groups, lr=torch.tensor(0.0, device=device), betas=config.betas, eps=config.eps, **extra
    )
    present = list(dict.fromkeys(g["group"] for g in param_groups))
    return optimizer, present
