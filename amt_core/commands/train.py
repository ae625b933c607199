"""`amt-core train`: train a preset (default: the GPU preset if CUDA is visible, else `cpu`) into a run directory.

With no arguments it trains the default preset on the on-the-fly synthetic world. Options override the preset
(`--set trainer.log_every=5`); `--resume` continues a run directory from its latest checkpoint with its stored
config (`--resume CKPT` from an older checkpoint, on a new branch). Multi-GPU: `torchrun --nproc-per-node N -m
amt_core train ...`. Exit codes: 0 done, 2 bad input or a full disk (one line), 3 training gave up after too many
rollbacks (one line; the checkpoints are intact), 75 stopped by SIGTERM or SIGUSR1 (saved; continue with --resume),
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="run preset (micro, cpu, dinov2_s|b|l|g, baseline_*); default by device")
    parser.add_argument("--model", help="'baseline' for the preset's baseline twin, or a model name from list_models")
    parser.add_argument("--data", help="training data spec, e.g. synth:live?seed=0&size=128&num=100000 or synth:DIR")
    parser.add_argument("--val-data", help="held-out data spec for validation and snapshots")
    parser.add_argument("--run-dir", type=Path, help="run directory (default runs/PRESET-YYYYmmdd-HHMMSS)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key (repeatable), e.g. stages.0.steps=100",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many steps in all (default 0: where the preset's stage plan ends, which a larger "
        "value does not lengthen: micro plans 6 steps, cpu 2500; lengthen it with --set stages.N.steps=; the plan "
        "is the first line a run prints)",
    )
    parser.add_argument(
        "--max-time",
        type=float,
        metavar="MINUTES",
        help="stop (with a checkpoint) after this many minutes of training (default 0: no time limit)",
    )
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue the run directory from its latest checkpoint, or from CKPT (a name in its "
        "checkpoints/, e.g. step_00000400) when the latest is corrupt",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="start a run in a folder that holds other files (they are left alone; a file where the run writes, "
        "such as config.json, is still refused)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def resolve_config(args: argparse.Namespace):
    """The RunConfig the arguments describe (the stored one for --resume), with every override applied."""
    from amt_core.errors import UserError
    from amt_core.presets import apply_overrides, baseline_twin, default_preset, get_preset
    from amt_core.train.config import config_from_dict

    stored = args.run_dir / "config.json" if args.resume and args.run_dir else None
    if stored is not None and stored.exists():
        try:
            config = config_from_dict(json.loads(stored.read_text())["config"])
        except (ValueError, KeyError, TypeError, UserError) as err:
            raise UserError(f"{stored} is not a readable run config ({err}); start a new run directory") from None
        if args.preset and args.preset != config.preset:
            raise UserError(f"--preset {args.preset} differs from the run's preset {config.preset}; drop --preset")
    else:
        if args.preset is not None and not args.preset.strip():
            raise UserError("--preset is empty; name a preset (micro, cpu, dinov2_s|b|l|g, baseline_*) or leave it out")
        config = get_preset(args.preset or default_preset())
    assignments = []  # flags first, then --set (which wins)
    if args.model == "baseline":
        config = baseline_twin(config)
    elif args.model:
        assignments.append(f"model={args.model}")
    for flag, key in (
        ("data", "data"),
        ("val_data", "val_data"),
        ("batch_size", "batch_size"),
        ("max_steps", "trainer.max_steps"),
        ("device", "trainer.device"),
    ):
        value = getattr(args, flag)
        if value is not None:
            assignments.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    if args.max_time is not None:
        assignments.append(f"trainer.max_time_s={args.max_time * 60}")
    return apply_overrides(config, assignments + list(args.overrides))


def check_flags(args: argparse.Namespace) -> None:
    """The numeric flags, refused in the user's own words (not as the config fields they become)."""
    from amt_core.errors import UserError

    if args.max_steps is not None and args.max_steps < 0:
        raise UserError(f"--max-steps must be >= 0 (0: where the preset's stage plan ends), got {args.max_steps}")
    if args.max_time is not None and not args.max_time >= 0:
        raise UserError(f"--max-time must be >= 0 minutes (0: no time limit), got {args.max_time:g}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")


def plan_line(config, dataset_len: int, run_dir: Path, resume: bool) -> str:
    """The first line a run prints: what it trains, where, and when it stops (the stage plan, max_steps, max_time)."""
    lengths = [stage.length(dataset_len, config.batch_size) for stage in config.stages]
    planned = sum(lengths)
    tc = config.trainer
    line = (
        f"{'resuming' if resume else 'training'} {config.preset} ({config.model_name}) in {run_dir}: the plan is "
        f"{planned} steps ({' + '.join(map(str, lengths))} over {len(lengths)} stages)"
    )
    if tc.max_steps and tc.max_steps < planned:
        line += f", stopping at step {tc.max_steps} (--max-steps)"
    elif tc.max_steps > planned:
        line += f"; --max-steps {tc.max_steps} does not lengthen it (--set stages.N.steps= does)"
    limit = f"{tc.max_time_s / 60:g} minutes of training" if tc.max_time_s else "no time limit"
    return f"{line}; {limit}"


def _open_data(spec: str, flag: str):
    """The dataset of a spec, or a UserError that names the flag it came from."""
    from amt_core.errors import UserError
    from amt_core.train import parts

    try:
        return parts.open_data(spec)
    except UserError as err:
        raise UserError(f"{flag} '{spec}': {err}") from None


def run(args: argparse.Namespace) -> int:
    with _signals_before_training() as early:
        try:
            return _run(args, early)
        except _SignalledEarly as err:
            name = signal.Signals(err.args[0]).name
            print(
                f"amt-core train: stopped by {name} before training began: nothing was trained, nothing to save; "
                "start it again (with --resume if its run directory holds a checkpoint)",
                file=sys.stderr,
            )
            return PREEMPTED_EXIT


class _SignalledEarly(Exception):
    """SIGTERM or SIGUSR1 before the trainer took over the signals (it saves on them from then on)."""


class _EarlyHandlers:
    def __init__(self) -> None:
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():  # (stopping.PREEMPT_SIGNALS, without torch)
            for signum in (signal.SIGTERM, signal.SIGUSR1):
                self.previous[signum] = signal.signal(signum, _raise_signalled)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()


def _raise_signalled(signum: int, _frame: object) -> None:
    raise _SignalledEarly(signum)


@contextlib.contextmanager
def _signals_before_training():  # noqa: ANN202
    """A preemption signal during start-up (imports, data, model) ends the command with the preempted exit code and
    one line, instead of killing it by the signal: a job script requeues on 75 either way."""
    handlers = _EarlyHandlers()
    handlers.install()
    try:
        yield handlers
    finally:
        handlers.restore()


def _run(args: argparse.Namespace, early: _EarlyHandlers) -> int:
    import os

    from amt_core.errors import UserError
    from amt_core.train.rundir import RunDir

    check_flags(args)
    if args.resume and args.run_dir is None:
        raise UserError("--resume needs --run-dir DIR (the run to continue)")
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun rank 0 alone writes the run directory
    if args.run_dir is not None and main_rank:
        RunDir(args.run_dir).check_start(bool(args.resume), args.force)  # before anything is read or written
    config = resolve_config(args)  # typed to the leaves: a typo or a bad value is a UserError here
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    run_dir = args.run_dir or Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    from amt_core.train.trainer import Trainer, TrainingFailed

    # both specs through the parser `datasets check` uses, now: the held-out one is otherwise opened only at the
    # first validation, after config.json has recorded it
    dataset, val_dataset = _open_data(config.data, "--data"), _open_data(config.val_data, "--val-data")
    if main_rank:
        print(plan_line(config, len(dataset), run_dir, bool(args.resume)), flush=True)
    resume_from = args.resume if isinstance(args.resume, str) else None
    trainer = Trainer(
        config, run_dir, resume=bool(args.resume), resume_from=resume_from, dataset=dataset, val_dataset=val_dataset
    )
    early.restore()  # the trainer catches the signals from here on, and saves on them
    try:
        state = trainer.train()
    except TrainingFailed as err:  # documented in docs/reliability.md: exit 3, the checkpoints are intact
        print(f"amt-core train: training failed: {err}; the checkpoints in {run_dir} are intact", file=sys.stderr)
        return TRAINING_FAILED_EXIT
    except OSError as err:  # cli.main's one handler writes the line; a write that names no file happened in run_dir
        if err.filename is None:
            err.filename = str(run_dir)
        raise
    if trainer.is_main:
        print(f"{state}: step {trainer.step}, run directory {run_dir}")
    from amt_core.train.stopping import PREEMPT_SIGNALS

    return PREEMPTED_EXIT if trainer.steering.signals.received in PREEMPT_SIGNALS else 0


TRAINING_FAILED_EXIT = 3
"""`amt-core train` exit code when training gives up (more explosions than stability.max_rollbacks); 2 is bad input."""

PREEMPTED_EXIT = 75
"""`amt-core train` exit code after SIGTERM or SIGUSR1 (a scheduler's preemption): the checkpoint is saved, continue
with --resume. 75 is sysexits' EX_TEMPFAIL (try again later), so a job script can requeue on it."""
