"""FP8 training for the Linear layers where it pays: Transformer Engine when installed, else torchao's float8.

`prepare_fp8` runs after activation checkpointing and compile and before DDP. It converts only the `nn.Linear` layers
whose in and out features are both at least `min_dim` and multiples of 16; everything else stays in bf16 autocast.
`min_dim` is measured on each GPU by `fp8_threshold.measure_fp8_threshold` and cached; until then a published default
holds. The FP8 layers' state in checkpoints is `fp8_state`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from amt_core.accel import precision, probe
from amt_core.accel.measured import MeasuredCache, measurement_key
from amt_core.errors import UserError

BACKENDS: tuple[str, ...] = ("auto", "te", "torchao")
TE_RECIPES: tuple[str, ...] = ("delayed", "current", "mxfp8")
TORCHAO_RECIPES: tuple[str, ...] = ("tensorwise", "rowwise")
RECIPES: tuple[str, ...] = ("auto", *TE_RECIPES, *TORCHAO_RECIPES)

FP8_ALIGN = 16
"""FP8 GEMMs need both matrix dimensions of the weight to be multiples of 16 (cuBLASLt, torch._scaled_mm, TE)."""

MXFP8_ALIGN = 32
"""MXFP8 scales blocks of 32 values, so its GEMM dimensions (and TE's row count) must be multiples of 32."""

DEFAULT_MIN_DIM = 1025
"""The threshold used until `measure_fp8_threshold` has run on this GPU: FP8 only for layers wider than 1024.

Published microbenchmarks put the break-even above hidden size 1024 at short sequences. torchao's float8 README
(https://github.com/pytorch/ao/blob/main/torchao/float8/README.md, section "Performance", forward plus backward of one
Linear on an H100) reports M, K, N = 1024, 2048, 1024 at 0.80x of bf16 ("leave this linear in bfloat16, the shapes are
too small to benefit from float8 compute") and 4096, 8192, 16384 at 1.39x, and explains why: the cast and amax overhead
is bounded by memory bandwidth while the GEMM saving grows with M*K*N (its per-shape speed-up tables, for tensorwise
and rowwise scaling, are images in that section). Transformer Engine users report the same: te.Linear in a small
seq2seq Transformer ran slower than FP16 (https://github.com/NVIDIA/TransformerEngine/issues/230). A measurement on
the actual GPU replaces this default as soon as one is cached.
"""

THRESHOLD_FILE = "fp8_threshold.json"
THRESHOLD_CACHE = MeasuredCache(THRESHOLD_FILE)
"""Where `fp8_threshold.measure_fp8_threshold` stores its measurements and `resolve_min_dim` reads them."""

_TE_RECIPE_CLASSES = {"delayed": "DelayedScaling", "current": "Float8CurrentScaling", "mxfp8": "MXFP8BlockScaling"}
_PIP_NAMES = {"te": "'transformer-engine[pytorch]'", "torchao": "torchao"}


@dataclass(frozen=True, kw_only=True)
class Fp8Config:
    """Which FP8 library and recipe, and which Linear layers are worth converting."""

    backend: str = "auto"
    """auto (Transformer Engine when it imports, else torchao), te or torchao."""
    recipe: str = "auto"
    """How FP8 scales are chosen. Transformer Engine: delayed (DelayedScaling, from an amax history), current
    (Float8CurrentScaling, from each tensor as it is cast) or mxfp8 (MXFP8BlockScaling, Blackwell sm_100+ only).
    torchao: tensorwise or rowwise (better with outliers, slower). auto: current where the installed TE has it, as
    it keeps no amax history (nothing stateful in checkpoints, nothing that breaks torch.compile), else delayed;
    tensorwise, the fastest, with torchao."""
    min_dim: int = 0
    """Convert a Linear only when its in and out features are both at least this (0: the threshold measured on this GPU,
    else DEFAULT_MIN_DIM = 1025)."""
    skip: tuple[str, ...] = ()
    """Module names never converted, with everything under them (e.g. a head whose outputs need full precision)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"Fp8Config.backend must be one of {BACKENDS} (got {self.backend!r})")
        if self.recipe not in RECIPES:
            raise ValueError(f"Fp8Config.recipe must be one of {RECIPES} (got {self.recipe!r})")
        allowed = {"te": TE_RECIPES, "torchao": TORCHAO_RECIPES}.get(self.backend)
        if allowed is not None and self.recipe != "auto" and self.recipe not in allowed:
            raise ValueError(
                f"Fp8Config.recipe for backend {self.backend} must be auto or one of {allowed} (got {self.recipe!r})"
            )
        if self.min_dim < 0:
            raise ValueError(f"Fp8Config.min_dim must be >= 0 (got {self.min_dim})")
        object.__setattr__(self, "skip", tuple(self.skip))  # frozen: a list from JSON becomes a tuple, once


@dataclass(kw_only=True)
class Fp8Selection:
    """Which Linear layers FP8 takes, and the per-token FLOPs of every Linear (multiply-adds: in * out)."""

    converted: list[str]
    """Names (as in `named_modules`) of the layers to convert, in model order."""
    skipped: dict[str, str]
    """Every other Linear layer, with why it stays in bf16."""
    flops_per_token: dict[str, int]
    """in_features * out_features of every Linear layer, converted or not."""

    @property
    def flop_fraction(self) -> float:
        """The share of all Linear FLOPs that run in FP8 (0 when the model has no Linear layer)."""
        total = sum(self.flops_per_token.values())
        return sum(self.flops_per_token[name] for name in self.converted) / total if total else 0.0


@dataclass(kw_only=True)
class Fp8Report:
    """What `prepare_fp8` did; pass it to `precision.autocast(..., fp8=report)` for the forward pass."""

    backend: str
    """te or torchao."""
    recipe: str
    """The resolved recipe (never auto)."""
    min_dim: int
    """The size threshold applied."""
    min_dim_source: str
    """Where min_dim came from: config, measured (the cache of `measure_fp8_threshold`) or default."""
    converted: list[str]
    """Names of the Linear layers now computing in FP8."""
    skipped: dict[str, str]
    """The other Linear layers, with the reason each one stays in bf16."""
    flop_fraction: float
    """The share of the model's Linear FLOPs per token that now run in FP8."""
    te_recipe: Any = field(default=None, repr=False, compare=False)
    """The Transformer Engine recipe object the forward pass must run under (None with torchao)."""

    def quantization_context(self) -> contextlib.AbstractContextManager:
        """TE's FP8 autocast for this recipe; nothing for torchao, whose layers always compute in FP8."""
        if self.backend != "te":
            return contextlib.nullcontext()
        te = importlib.import_module("transformer_engine.pytorch")
        if hasattr(te, "autocast"):  # TE 2.8 renamed fp8_autocast to autocast; the old name now warns
            return te.autocast(enabled=True, recipe=self.te_recipe)
        return te.fp8_autocast(enabled=True, fp8_recipe=self.te_recipe)

    def checkpoint_contexts(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """`context_fn` for `torch.utils.checkpoint.checkpoint(..., use_reentrant=False, context_fn=...)`.

        Activation checkpointing recomputes blocks during the backward pass, outside the training step's autocast:
        torch.autocast is restored by checkpoint itself, TE's FP8 autocast is not, so TE layers would recompute in
        bf16 instead of what the forward pass saved. This re-enters it for the recomputation. With the delayed recipe
        the recomputation also adds to the amax history (one extra entry a step); `te.distributed.checkpoint` avoids
        that. torchao needs nothing here.
        """
        return contextlib.nullcontext(), self.quantization_context()

    def summary(self) -> str:
        """One line for the log."""
        total = len(self.converted) + len(self.skipped)
        return (
            f"FP8 ({self.backend}, {self.recipe}): {len(self.converted)} of {total} Linear layers, "
            f"{100 * self.flop_fraction:.1f}% of Linear FLOPs; min_dim {self.min_dim} ({self.min_dim_source})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record for the run's events."""
        return {
            "backend": self.backend,
            "recipe": self.recipe,
            "min_dim": self.min_dim,
            "min_dim_source": self.min_dim_source,
            "converted": list(self.converted),
            "skipped": dict(self.skipped),
            "flop_fraction": self.flop_fraction,
        }


def select_fp8_linears(
    model: nn.Module, min_dim: int, skip: Iterable[str] = (), align: int = FP8_ALIGN
) -> Fp8Selection:
    """The Linear layers where FP8 pays: both dimensions >= `min_dim` and multiples of `align` (16; MXFP8's blocks
    need 32). Pure: changes nothing.

    Only exact `nn.Linear` layers are taken: a subclass may be used by its owner through `.weight` without calling
    forward (`nn.MultiheadAttention.out_proj` is one), and converting it would claim FP8 where none runs.
    """
    skip = tuple(skip)
    converted: list[str] = []
    skipped: dict[str, str] = {}
    flops: dict[str, int] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        n_in, n_out = module.in_features, module.out_features
        flops[name] = n_in * n_out
        shape = f"{n_in}x{n_out}"
        if not name:
            skipped[name] = "the model itself is a Linear: it cannot be replaced in place"
        elif type(module) is not nn.Linear:
            skipped[name] = f"{type(module).__name__} is a Linear subclass (its owner may bypass forward)"
        elif any(name == prefix or name.startswith(prefix + ".") for prefix in skip):
            skipped[name] = "listed in skip"
        elif min(n_in, n_out) < min_dim:
            skipped[name] = f"{shape} is below min_dim {min_dim}"
        elif n_in % align or n_out % align:
            skipped[name] = f"{shape} is not a multiple of {align} (FP8 GEMM requirement)"
        else:
            converted.append(name)
    return Fp8Selection(converted=converted, skipped=skipped, flops_per_token=flops)


def resolve_backend(config: Fp8Config) -> tuple[str, str]:
    """The backend and recipe to use: `auto` resolved against what imports here (`probe.fp8_backends`).

    Raises:
        UserError: the backend asked for (or any, for auto) does not import.
    """
    available = probe.fp8_backends()
    backend = config.backend
    if backend == "auto":
        if config.recipe in TE_RECIPES:
            backend = "te"
        elif config.recipe in TORCHAO_RECIPES:
            backend = "torchao"
        elif available:
            backend = available[0]
        else:
            raise UserError(
                "FP8 needs Transformer Engine or torchao and neither imports; "
                "pip install 'transformer-engine[pytorch]' or torchao, or use --set trainer.precision=bf16"
            )
    if backend not in available:
        raise UserError(
            f"fp8 backend {backend} does not import here; pip install {_PIP_NAMES[backend]}, "
            "or use --set trainer.fp8.backend=auto"
        )
    recipe = config.recipe
    if recipe == "auto":
        recipe = _te_default_recipe() if backend == "te" else "tensorwise"
    return backend, recipe


def check_recipe(recipe: str, capability: tuple[int, int] | None) -> None:
    """Refuse a recipe the GPU cannot run.

    Raises:
        UserError: mxfp8 below compute capability 10.0 (it needs Blackwell's block-scaled tensor cores).
    """
    if recipe == "mxfp8" and (capability is None or capability < (10, 0)):
        found = "none" if capability is None else f"{capability[0]}.{capability[1]}"
        raise UserError(
            f"fp8 recipe mxfp8 needs a Blackwell GPU, compute capability 10.0+ (found {found}); "
            "use --set trainer.fp8.recipe=current"
        )


def resolve_min_dim(config: Fp8Config, device: torch.device) -> int:
    """config.min_dim when > 0, else the threshold cached by `measure_fp8_threshold` for this GPU, torch, backend
    and recipe, else DEFAULT_MIN_DIM (1025; its docstring gives the published figures behind it)."""
    backend, recipe = resolve_backend(config)
    return _resolve_min_dim(config, device, backend, recipe)[0]


def prepare_fp8(model: nn.Module, config: Fp8Config, device: torch.device) -> Fp8Report:
    """Convert the model's large Linear layers to FP8 in place (TE's `Linear` or torchao's `Float8Linear`).

    Call it on the bare model already on `device`, after activation checkpointing and compile (compiled lazily, so the
    swapped layers are what gets traced) and before DDP and before the optimizer is built (TE's layers have new
    parameters). State-dict keys stay the same: `weight`, `bias`, plus `_extra_state` for TE (see
    `fp8_state.split_extra_state`).

    Raises:
        UserError: no GPU, a GPU below sm_89, no FP8 library, or a recipe this GPU or library version cannot run.
    """
    precision.check_precision("fp8", device)
    backend, recipe = resolve_backend(config)
    check_recipe(recipe, probe.cuda_capability(device))
    min_dim, source = _resolve_min_dim(config, device, backend, recipe)
    align = MXFP8_ALIGN if recipe == "mxfp8" else FP8_ALIGN
    selection = select_fp8_linears(model, min_dim, config.skip, align)
    te_recipe = None
    if backend == "te":
        te_recipe = _te_recipe(recipe)
        _convert_te(model, selection.converted, row_align=align)
    else:
        _convert_torchao(model, selection.converted, recipe)
    return Fp8Report(
        backend=backend,
        recipe=recipe,
        min_dim=min_dim,
        min_dim_source=source,
        converted=selection.converted,
        skipped=selection.skipped,
        flop_fraction=selection.flop_fraction,
        te_recipe=te_recipe,
    )


def threshold_cache_key(device: torch.device, backend: str, recipe: str) -> str:
    """The GPU, torch, backend version and recipe a measurement holds for."""
    dist = "transformer_engine" if backend == "te" else backend
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    return measurement_key(device, f"{backend} {version}", recipe)


def pad_rows(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(N, C) -> (ceil(N / multiple) * multiple, C), zero rows appended (zeros leave FP8 amax and scales unchanged)."""
    extra = -x.shape[0] % multiple
    return nn.functional.pad(x, (0, 0, 0, extra)) if extra else x


def _resolve_min_dim(config: Fp8Config, device: torch.device, backend: str, recipe: str) -> tuple[int, str]:
    if config.min_dim > 0:
        return config.min_dim, "config"
    entry = THRESHOLD_CACHE.get(threshold_cache_key(device, backend, recipe))
    if isinstance(entry, dict) and type(entry.get("min_dim")) is int and entry["min_dim"] > 0:
        return entry["min_dim"], "measured"
    return DEFAULT_MIN_DIM, "default"


def _te_default_recipe() -> str:
    recipes = importlib.import_module("transformer_engine.common.recipe")
    return "current" if hasattr(recipes, "Float8CurrentScaling") else "delayed"


def _te_recipe(name: str) -> Any:
    recipes = importlib.import_module("transformer_engine.common.recipe")
    cls = getattr(recipes, _TE_RECIPE_CLASSES[name], None)
    if cls is None:
        version = importlib.metadata.version("transformer_engine")
        raise UserError(
            f"fp8 recipe {name} needs a newer Transformer Engine ({version} has no "
            f"{_TE_RECIPE_CLASSES[name]}); pip install -U 'transformer-engine[pytorch]' "
            "or use --set trainer.fp8.recipe=delayed"
        )
    return cls()


@functools.cache
def _padded_te_linear() -> type[nn.Module]:
    """te.Linear that pads the token count to the FP8 GEMM's multiple.

    TE asserts that the rows of the input (batch x tokens) are a multiple of 8 or 16: a ViT's 257 tokens times an odd
    micro-batch (the OOM search halves it) would stop training. Built on first use because TE is optional.
    """
    te = importlib.import_module("transformer_engine.pytorch")

    class PaddedTeLinear(te.Linear):
        row_align: int = FP8_ALIGN

        def forward(self, inp: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            rows = math.prod(inp.shape[:-1])
            if rows % self.row_align == 0:
                return super().forward(inp, *args, **kwargs)
            out = super().forward(pad_rows(inp.reshape(rows, inp.shape[-1]), self.row_align), *args, **kwargs)
            return out[:rows].reshape(*inp.shape[:-1], out.shape[-1])

    return PaddedTeLinear


def _convert_te(model: nn.Module, names: list[str], row_align: int) -> None:
    cls = _padded_te_linear()
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, attr)
        new = cls(
            old.in_features,
            old.out_features,
            bias=old.bias is not None,
            params_dtype=old.weight.dtype,
            device=old.weight.device,
        )
        new.row_align = row_align
        with torch.no_grad():
            new.weight.copy_(old.weight)
            if old.bias is not None:
                new.bias.copy_(old.bias)
        new.weight.requires_grad_(old.weight.requires_grad)
        if old.bias is not None:
            new.bias.requires_grad_(old.bias.requires_grad)
        new.train(old.training)
        setattr(parent, attr, new)


def _convert_torchao(model: nn.Module, names: list[str], recipe: str) -> None:
    float8 = importlib.import_module("torchao.float8")
    chosen = set(names)
    float8.convert_to_float8_training(
        model,
        config=float8.Float8LinearConfig.from_recipe_name(recipe),
        module_filter_fn=lambda module, fqn: fqn in chosen,
    )
