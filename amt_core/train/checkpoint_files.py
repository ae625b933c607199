"""Checkpoints: safetensors weights plus the training state, written atomically, with a `latest` pointer.

A checkpoint is a folder `checkpoints/step_NNNNNNNN/` holding `model.safetensors`, `state.pt` (optimizer,
schedule, RNGs, stage, step, loss weights, sampler; loadable with `weights_only=True`) and `config.json` (the run's
resolved config, so eval and predict rebuild the model without flags). It is written under a temporary name, fsynced,
then renamed into place; `checkpoints/latest` (the folder's name) is replaced last. A kill at any moment leaves the
previous complete checkpoint loadable; temporary folders are ignored and cleaned up by the next trainer.

Names sort in the order the run made them: `step_NNNNNNNN` on the first branch, `step_bBBBB_NNNNNNNN` after the
B-th rollback, so a new branch's checkpoints are the newest even when their steps are lower than the abandoned
branch's. Retention keeps the newest few and every checkpoint whose `retain.json` names a reason (a manual save, a
stage end, the best validation, a rollback target).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from amt_core.atomic import atomic_write_text, stale_temporaries
from amt_core.errors import UserError, safetensors_os_error, torch_load_problem

CHECKPOINT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
LATEST_FILE = "latest"
_REQUIRED = (WEIGHTS_FILE, STATE_FILE, CONFIG_FILE)


RETAIN_FILE = "retain.json"
RETAIN_REASONS = ("manual", "stage_end", "best", "rollback_target")


def checkpoint_name(step: int, branch: int = 0) -> str:
    """`step_NNNNNNNN` on branch 0, `step_bBBBB_NNNNNNNN` on later branches (they sort after every earlier one)."""
    if not 0 <= branch <= 9999:
        raise ValueError(f"branch {branch} is out of range 0-9999")
    return f"step_{step:08d}" if branch == 0 else f"step_b{branch:04d}_{step:08d}"


def checkpoint_branch(name: str) -> int:
    """The branch a checkpoint name belongs to (0 for `step_NNNNNNNN` and for names of another form)."""
    parts = name.split("_")
    if len(parts) == 3 and parts[1].startswith("b") and parts[1][1:].isdigit():
        return int(parts[1][1:])
    return 0


def retained_reasons(folder: Path) -> list[str]:
    """Why retention must keep this checkpoint (empty: it may be pruned). An unreadable file keeps it."""
    try:
        reasons = json.loads((folder / RETAIN_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return ["unreadable retain.json"]
    return [str(r) for r in reasons] if isinstance(reasons, list) else ["unreadable retain.json"]


def set_retained(folder: Path, reason: str, keep: bool = True) -> None:
    """Add (or with keep=False remove) one reason to keep a checkpoint; written atomically."""
    reasons = [r for r in retained_reasons(folder) if r != reason] + ([reason] if keep else [])
    atomic_write_text(folder / RETAIN_FILE, json.dumps(sorted(set(reasons))))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def is_complete(path: Path) -> bool:
    """A checkpoint folder with every file present (temporary folders start with a dot and never count)."""
    return path.is_dir() and not path.name.startswith(".") and all((path / name).is_file() for name in _REQUIRED)


def save_checkpoint(
    ckpt_dir: str | Path,
    name: str,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    config: dict[str, Any],
    retain: tuple[str, ...] = (),
) -> Path:
    """Write a checkpoint atomically and point `latest` at it; `retain` (reasons) protects it from pruning."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        # Clones break shared storage (tied weights), which safetensors refuses.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
        try:
            save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": str(CHECKPOINT_FORMAT), "name": name})
        except SafetensorError as err:  # its message carries the OS's code ("os error 28"): a full disk is an OSError
            raise safetensors_os_error(err, tmp / WEIGHTS_FILE) or err from None
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp / STATE_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        if retain:
            (tmp / RETAIN_FILE).write_text(json.dumps(sorted(set(retain))))
        for file in _REQUIRED:
            _fsync_file(tmp / file)
        _fsync_dir(tmp)
    except (OSError, RuntimeError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)  # the half-written folder, so the space it held comes back
        if is_disk_full(err, ckpt_dir):
            previous = latest_checkpoint(ckpt_dir)
            kept = f"the last good checkpoint {previous.name} is intact" if previous else "no checkpoint was lost"
            raise UserError(f"disk full at {ckpt_dir}; {kept}; free space, then continue with --resume") from None
        raise
    final = ckpt_dir / name
    if final.exists():  # same step saved again (e.g. a stop right after a periodic save): move the old one aside
        old = ckpt_dir / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    point_latest(ckpt_dir, name)
    return final


def point_latest(ckpt_dir: str | Path, name: str) -> None:
    """Atomically make `latest` name this checkpoint (after a rollback: the target, so a resume follows the branch)."""
    ckpt_dir = Path(ckpt_dir)
    atomic_write_text(ckpt_dir / LATEST_FILE, name + "\n")
    _fsync_dir(ckpt_dir)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException, folder: Path) -> bool:
    """Whether a failed write was a full disk: the errno says so, or (torch's writer reports only
    "enforce fail at inline_container.cc") a 1 MiB probe in the same folder fails with ENOSPC."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    probe = folder / f".space-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as probe_err:
        return probe_err.errno in DISK_FULL_ERRNOS
    finally:
        probe.unlink(missing_ok=True)
    return False


def list_checkpoints(ckpt_dir: str | Path) -> list[str]:
    """Names of the complete checkpoints, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    return sorted(p.name for p in ckpt_dir.iterdir() if p.name.startswith("step_") and is_complete(p))


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points at, or the newest complete one when the pointer is missing or stale."""
    ckpt_dir = Path(ckpt_dir)
    try:
        name = (ckpt_dir / LATEST_FILE).read_text().strip()
        if name and is_complete(ckpt_dir / name):
            return ckpt_dir / name
    except OSError:
        pass
    names = list_checkpoints(ckpt_dir)
    return ckpt_dir / names[-1] if names else None


def clean_temporary(ckpt_dir: str | Path) -> None:
    """Remove folders and files left by a writer that was killed (only call while holding the run's lock)."""
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if p.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)
        for p in stale_temporaries(ckpt_dir):
            p.unlink(missing_ok=True)


def prune_checkpoints(ckpt_dir: str | Path, keep_last: int, keep: tuple[str, ...] = ()) -> list[str]:
    """Delete all but the newest `keep_last` checkpoints; never those named in `keep`, `latest`, or one whose
    `retain.json` gives a reason (manual save, stage end, best validation, rollback target)."""
    if keep_last <= 0:
        return []
    ckpt_dir = Path(ckpt_dir)
    latest = latest_checkpoint(ckpt_dir)
    protected = set(keep) | ({latest.name} if latest else set())
    names = list_checkpoints(ckpt_dir)
    removed = [n for n in names[:-keep_last] if n not in protected and not retained_reasons(ckpt_dir / n)]
    for name in removed:
        shutil.rmtree(ckpt_dir / name, ignore_errors=True)
    return removed


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a checkpoint folder, its weights file, a checkpoints/ folder or a run directory.

    Raises:
        UserError: nothing loadable there.
    """
    path = Path(path)
    if path.is_file() and path.name in _REQUIRED:
        path = path.parent
    if is_complete(path):
        return path
    for candidate in (path, path / "checkpoints"):
        found = latest_checkpoint(candidate) if candidate.is_dir() else None
        if found is not None:
            return found
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; pass a checkpoint folder or a run directory to --ckpt")
    raise UserError(f"{path} holds no complete checkpoint ({', '.join(_REQUIRED)}); pass a checkpoint folder")


@dataclass(kw_only=True)
class Checkpoint:
    path: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    config: dict[str, Any]


def load_checkpoint(path: str | Path, with_state: bool = True) -> Checkpoint:
    """Load a checkpoint on the CPU.

    Raises:
        UserError: the files are missing, truncated or not a checkpoint of this project.
    """
    folder = resolve_checkpoint(path)
    try:
        weights = load_file(folder / WEIGHTS_FILE, device="cpu")
        config = json.loads((folder / CONFIG_FILE).read_text())
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True) if with_state else {}
    except (SafetensorError, json.JSONDecodeError, RuntimeError, EOFError, OSError, ValueError, UnpicklingError) as err:
        raise UserError(
            f"checkpoint {folder} is corrupt or unreadable ({torch_load_problem(err)}); use another checkpoint"
        ) from None
    if with_state and state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint {folder} has format {state.get('format')}, expected {CHECKPOINT_FORMAT}")
    return Checkpoint(path=folder, weights=weights, state=state, config=config)
