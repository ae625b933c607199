"""What a person at the terminal sees: a rich progress bar (step, stage, loss, images/s, ETA) or plain log lines."""

from __future__ import annotations

import sys
import time


class ProgressView:
    """Shows training progress; `mode` is rich, log or none (auto picks rich on a terminal, log otherwise)."""

    def __init__(self, mode: str, total_steps: int, start_step: int) -> None:
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.total = max(total_steps, 1)
        self._progress = None
        self._task = None
        self._last_log = 0.0
        if mode == "rich":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]stage {task.fields[stage]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[ips]} img/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task(
                "train", total=self.total, completed=start_step, stage="-", loss="-", ips="-"
            )
            self._progress.start()

    def update(self, step: int, stage: str, loss: float | None, images_per_s: float | None) -> None:
        loss_text = "-" if loss is None else f"{loss:.4g}"
        ips_text = "-" if images_per_s is None else f"{images_per_s:.1f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=step, stage=stage, loss=loss_text, ips=ips_text)
        elif self.mode == "log" and loss is not None and time.monotonic() - self._last_log >= 5.0:
            self._last_log = time.monotonic()
            print(f"step {step}/{self.total}  stage {stage}  loss {loss_text}  {ips_text} img/s", file=sys.stderr)

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        elif self.mode != "none":
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
