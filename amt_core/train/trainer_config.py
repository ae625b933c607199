"""The trainer's own settings (`RunConfig.trainer`, `--set trainer.KEY=VALUE`): cadences, limits, device, precision.

Device, precision, attention and progress are enums (`amt_core.train.kinds`); the strings of a command line or a
config.json become members here, and config.json gets the same strings back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amt_core.accel.fp8 import Fp8Config
from amt_core.accel.recompute import make_policy
from amt_core.errors import UserError
from amt_core.train.compile import MODES as compile_modes
from amt_core.train.kinds import AttentionKernel, Device, Precision, ProgressStyle, checked

DEVICES: tuple[str, ...] = tuple(Device)
PROGRESS: tuple[str, ...] = tuple(ProgressStyle)
COMPILE_MODES: tuple[str, ...] = compile_modes


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    device: Device = Device.AUTO
    """auto (cuda when available), cpu or cuda."""
    seed: int = 0
    """Seeds python, numpy and torch, and the batch plan."""
    max_steps: int = 0
    """Stop after this many steps in all (0: when the last stage ends)."""
    max_time_s: float = 0.0
    """Stop (with a checkpoint) after this many seconds of training (0: no limit)."""
    stage_by_time: bool = False
    """Give each stage its share (by planned length) of max_time_s instead of its step count; the schedule follows
    wall time. For fixed-time comparisons; a resumed run then no longer repeats an uninterrupted one exactly."""
    precision: Precision = Precision.FP32
    """fp32, bf16 (autocast; parameters and optimizer state stay fp32) or fp8 (bf16 plus FP8 matmuls in the layers
    large enough to gain from them; CUDA compute capability 8.9+ with Transformer Engine or torchao)."""
    fp8: Fp8Config = field(default_factory=Fp8Config)
    """With precision fp8: the library (`trainer.fp8.backend`), the scaling recipe (`trainer.fp8.recipe`) and which
    Linear layers are worth converting (`trainer.fp8.min_dim`, 0: measured on this GPU by `amt-core bench fp8`)."""
    attention: AttentionKernel = AttentionKernel.AUTO
    """Attention backend for the whole model: auto (measured fastest on this GPU for the backbone's token count,
    cached; sdpa on the CPU), fa3, fa2, sdpa, sdpa_cudnn, sdpa_flash, sdpa_efficient or math ($AMT_ATTN wins)."""
    checkpointing: str = "none"
    """Activation checkpointing policy: none, full (every transformer block), every:N, or selective (keep matmul
    outputs, recompute the element-wise ops). The one switch: models are built without checkpointing."""
    offload_activations: bool = False
    """Keep saved activations in (pinned) host memory until the backward pass: for the largest presets."""
    compile: bool = False
    """torch.compile the backbone blocks and the heads (in place, lazily, after checkpointing, before FP8)."""
    compile_mode: str = "default"
    """torch.compile mode: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs."""
    dynamic_batch: bool = True
    """On CUDA, shrink the micro-batch to what fits (accumulating to the same global batch); no-op on the CPU."""
    num_workers: int = 0
    """DataLoader worker processes (the synthetic world renders in them)."""
    log_every: int = 10
    """Steps between metrics events (and the progress line in log mode)."""
    diag_every: int = 100
    """Steps between diagnostics events (prediction std, attention entropy, gradient norms by group)."""
    snapshot_every: int = 200
    """Steps between snapshots of the fixed visualization samples (0: only on command)."""
    snapshot_samples: int = 4
    """How many held-out samples the snapshots show."""
    eval_every: int = 0
    """Steps between validation events on the held-out data (0: off)."""
    eval_samples: int = 64
    """How many held-out samples each validation uses."""
    eval_first: int = 0
    """One early validation at this step, before the first `eval_every` (0: none): the held-out curve against the
    mean-pose line starts within the first minute instead of at the first `eval_every`."""
    ckpt_every: int = 500
    """Steps between checkpoints (also one at each stage end, on stop and at the end)."""
    keep_checkpoints: int = 5
    """How many periodic checkpoints to keep (the first and the latest are always kept)."""
    mining_refresh: int = 100
    """Steps between refreshes of the hard-case pool (stages with hard_mining > 0)."""
    mining_pool: int = 512
    """How many of the hardest samples seen form the pool."""
    progress: ProgressStyle = ProgressStyle.AUTO
    """auto (a rich bar on a terminal, log lines otherwise), rich, log or none."""
    find_unused_parameters: bool = True
    """DDP: allow parameters that a stage's losses do not reach."""
    tensorboard: bool = True
    """Also write TensorBoard scalars under tb/ when tensorboard is importable."""

    def __post_init__(self) -> None:
        # Frozen: the strings of a direct construction become members here, once.
        for name, kind in (
            ("device", Device),
            ("precision", Precision),
            ("attention", AttentionKernel),
            ("progress", ProgressStyle),
        ):
            object.__setattr__(self, name, checked(kind, getattr(self, name), f"TrainerConfig.{name}"))
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"TrainerConfig.compile_mode must be one of {COMPILE_MODES} (got {self.compile_mode!r})")
        try:
            make_policy(self.checkpointing)
        except UserError as err:
            raise ValueError(f"TrainerConfig.checkpointing: {err}") from None
        for name in ("max_steps", "num_workers", "snapshot_every", "eval_every", "eval_first", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainerConfig.{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("log_every", "diag_every", "ckpt_every", "mining_refresh", "mining_pool", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainerConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_time_s < 0:
            raise ValueError(f"TrainerConfig.max_time_s must be >= 0 (got {self.max_time_s})")
        if self.stage_by_time and not self.max_time_s:
            raise ValueError("TrainerConfig.stage_by_time needs max_time_s > 0 (--max-time MINUTES)")
        if not 1 <= self.snapshot_samples <= 64:
            raise ValueError(f"TrainerConfig.snapshot_samples must be in [1, 64] (got {self.snapshot_samples})")
