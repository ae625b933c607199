"""Named run presets: each returns a typed `RunConfig` (model, data, stages, optimizer, stability, trainer).

`micro` is for tests (a few steps in seconds), `cpu` the default on a machine without a GPU (amt_cpu, 128 px, the
on-the-fly synthetic world), `dinov2_s|b|l|g` the GPU presets. Every preset has a `baseline_*` twin that trains the
baseline model with the same data and plan. `apply_overrides` takes `--set key=value` dotted keys; a typo is an error
naming the key and what exists there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from amt_core import config_tree
from amt_core.errors import UserError
from amt_core.losses.amt_loss import AMTLoss
from amt_core.models.registry import model_config
from amt_core.train.config import RunConfig, with_model
from amt_core.train.mixup import MixUpConfig
from amt_core.train.optim import OptimConfig
from amt_core.train.stability import StabilityConfig
from amt_core.train.stages import seed_stages
from amt_core.train.trainer_config import TrainerConfig

# Loss terms that are not direct supervision of one component (off in stage 1), and the physics terms (2x in stage 3).
# Names follow amt_core.losses; a term the loss does not have is reported when the run starts.
INDIRECT_TERMS: tuple[str, ...] = ("refinement", "physics")
PHYSICS_TERMS: tuple[str, ...] = ("physics",)


def _synth(seed: int, size: int, num: int, split: str = "train") -> str:
    return f"synth:live?seed={seed}&size={size}&num={num}&split={split}"


# Small models trained from scratch on synthetic data (micro, cpu): measured on the memorisation test and the
# 20-minute side-by-side (docs/learning.md). MixUp is off (mixing two images and weighting both targets rewards the
# average pose), the joint terms weigh 3x the seed's (the tiny trunk is shared by 25 terms and the object and mesh
# terms starved the joints), and the later stages keep a higher learning rate with the encoders at the decoders' rate
# (the seed's 1e-3 / 5e-4 / 1e-4 with encoders at 0.5x left the model far from memorising in 600 steps). Hard-case
# mining is off: on the memorisation probe it turns 1e-5 label noise into a 4-15 mm spread, and at the cpu preset's
# scale it measured no better than no mining (docs/learning.md, section 3).
SMALL_LOSS: dict = {"weights": {"joints3d": 30.0, "coarse": 15.0, "refine_steps": 15.0}}


def _small_from_scratch(
    preset: str,
    *,
    image_size: int,
    train_images: int,
    val_images: int,
    batch_size: int,
    steps: tuple[int, int, int],
    warmup_steps: int,
    trainer: TrainerConfig,
    stability: StabilityConfig | None = None,
) -> RunConfig:
    """A small model (`amt_<preset>`) trained from scratch on the on-the-fly synthetic world, with the settings above.

    Args:
        preset: the preset's name, and its model's (`amt_<preset>`).
        image_size: pixels of the synthetic images (square).
        train_images: images in the training world.
        val_images: images in the held-out world.
        batch_size: the global batch.
        steps: the three stages' lengths in steps.
        warmup_steps: the warm-up at the start of each stage.
        trainer: the device, workers and cadences.
        stability: the non-finite and spike checks (None: the defaults).
    """
    stages = seed_stages(
        steps=steps, warmup_steps=warmup_steps, direct_terms_off=INDIRECT_TERMS, physics_terms=PHYSICS_TERMS
    )
    lrs = (1e-3, 1e-3, 5e-4)
    return RunConfig(
        preset=preset,
        model_name=f"amt_{preset}",
        model=model_config(f"amt_{preset}"),
        data=_synth(0, image_size, train_images),
        val_data=_synth(0, image_size, val_images, "val"),
        batch_size=batch_size,
        loss=AMTLoss.Config.from_dict(SMALL_LOSS),
        stages=tuple(dataclasses.replace(stage, lr=lr, hard_mining=0.0) for stage, lr in zip(stages, lrs)),
        mixup=MixUpConfig(enabled=False),
        optim=OptimConfig(group_lr_scale={"backbone": 0.01, "encoders": 1.0, "decoders": 1.0, "loss": 1.0}),
        stability=stability or StabilityConfig(),
        trainer=trainer,
    )


def micro() -> RunConfig:
    """Tests: the micro model on tiny synthetic images, a few steps per stage, every event often."""
    return _small_from_scratch(
        "micro",
        image_size=64,
        train_images=64,
        val_images=8,
        batch_size=4,
        steps=(2, 2, 2),
        warmup_steps=1,
        stability=StabilityConfig(check_every=1, spike_min_history=4),
        trainer=TrainerConfig(
            device="cpu",
            log_every=1,
            diag_every=2,
            snapshot_every=3,
            snapshot_samples=2,
            eval_every=0,
            ckpt_every=3,
            progress="none",
        ),
    )


def cpu() -> RunConfig:
    """The default on a CPU: amt_cpu at 128 px on the on-the-fly synthetic world, fp32, about 20 minutes."""
    return _small_from_scratch(
        "cpu",
        image_size=128,
        train_images=200_000,
        val_images=256,
        batch_size=16,
        steps=(300, 1500, 700),
        warmup_steps=50,
        trainer=TrainerConfig(
            device="auto",
            num_workers=1,
            log_every=10,
            diag_every=50,
            snapshot_every=100,
            eval_every=100,
            eval_first=20,  # the held-out curve against the mean-pose line starts within the first minute
            eval_samples=128,
            ckpt_every=250,
        ),
    )


def _dinov2(size: str, batch: int, checkpointing: str, img_size: int = 224, offload: bool = False) -> RunConfig:
    suffix = "" if img_size == 224 else f"_{img_size}"
    name = f"amt_dinov2_{size}"
    return RunConfig(
        preset=f"dinov2_{size}{suffix}",
        model_name=name,
        model=model_config(name, **{"backbone.img_size": img_size}),
        data=_synth(0, img_size, 1_000_000),
        val_data=_synth(0, img_size, 1024, "val"),
        batch_size=batch,
        # The seed's 20/50/30 epochs, counted over 100k images so a synthetic "epoch" means the same at every size.
        stages=seed_stages(
            steps=(20 * 100_000 // batch, 50 * 100_000 // batch, 30 * 100_000 // batch),
            warmup_steps=500,
            direct_terms_off=INDIRECT_TERMS,
            physics_terms=PHYSICS_TERMS,
        ),
        trainer=TrainerConfig(
            device="cuda",
            precision="bf16",
            checkpointing=checkpointing,
            attention="auto",
            compile=False,
            offload_activations=offload,
            num_workers=8,
            log_every=20,
            diag_every=200,
            snapshot_every=500,
            eval_every=2000,
            eval_samples=1024,
            ckpt_every=2000,
        ),
    )


def dinov2_s() -> RunConfig:
    return _dinov2("s", 256, "none")


def dinov2_b() -> RunConfig:
    return _dinov2("b", 192, "none")


# No checkpointing by default: with 2/3 of the backbone frozen, a step keeps (fp32, measured by `bench train`'s
# act_mb_per_image) 170 MiB per image for dinov2_l, 473 for dinov2_g, 874 for dinov2_l_518 and 2475 for dinov2_g_518,
# so the preset batches fit an 80 GB GPU as they are; the trainer's micro-batch search catches an estimate gone wrong.
def dinov2_l() -> RunConfig:
    return _dinov2("l", 128, "none")


def dinov2_g() -> RunConfig:
    return _dinov2("g", 64, "none")


def dinov2_l_518() -> RunConfig:
    """DINOv2-L at its native 518 px (1370 tokens)."""
    return _dinov2("l", 32, "none", img_size=518)


def dinov2_g_518() -> RunConfig:
    """DINOv2-g at 518 px, the largest preset: selective checkpointing keeps its ~40 GiB of activations (fp32) down."""
    return _dinov2("g", 16, "selective", img_size=518)


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "micro": micro,
    "cpu": cpu,
    "dinov2_s": dinov2_s,
    "dinov2_b": dinov2_b,
    "dinov2_l": dinov2_l,
    "dinov2_g": dinov2_g,
    "dinov2_l_518": dinov2_l_518,
    "dinov2_g_518": dinov2_g_518,
}


def baseline_model_name(name: str) -> str:
    """The baseline twin of an AMT model name (`amt_cpu` -> `baseline_cpu`)."""
    if name.startswith("baseline_"):
        return name
    return "baseline_" + name.removeprefix("amt_")


def list_presets() -> list[str]:
    return [*PRESETS, *(f"baseline_{name}" for name in PRESETS)]


def default_preset() -> str:
    """`dinov2_s` where CUDA is available, else `cpu`."""
    return "dinov2_s" if torch.cuda.is_available() else "cpu"


def get_preset(name: str) -> RunConfig:
    """The RunConfig of a preset (a `baseline_` prefix swaps in the baseline model).

    Raises:
        UserError: unknown preset.
    """
    base = name.removeprefix("baseline_")
    if base not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(list_presets())}")
    config = PRESETS[base]()
    if name != base:
        config = dataclasses.replace(baseline_twin(config), preset=name)
    return config


def baseline_twin(config: RunConfig) -> RunConfig:
    """`config` training the baseline of its model's size on the very same backbone configuration (an image size
    or weights file the preset or an override gave the AMT model carries over)."""
    name = baseline_model_name(config.model_name)
    if name == config.model_name:
        return config
    model = model_config(name)
    if hasattr(config.model, "backbone") and hasattr(model, "backbone"):
        model = dataclasses.replace(model, backbone=config.model.backbone)
    return dataclasses.replace(config, model_name=name, model=model)


def apply_overrides(config: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply `KEY=VALUE` assignments (`trainer.log_every=5`, `stages.0.steps=100`, `model.refine.steps=4`) by
    `config_tree`'s one rule; `model=NAME` swaps in a registered model at its defaults.

    Raises:
        UserError: a malformed assignment, an unknown key (naming the known ones), or a value the field's type or
            checks refuse.
    """
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise UserError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set trainer.log_every=5")
        if key in ("model", "model_name", "model.name"):
            config = with_model(config, text)
        else:
            config = config_tree.override(config, {key: text}, source="--set ")
    return config
