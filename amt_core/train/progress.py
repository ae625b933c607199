"""What a person at the terminal sees: a rich progress bar (step, stage, loss, images/s, ETA) or plain log lines;
for eval and predict, a bar over a count of samples or images (`CountProgress`)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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


class CountProgress:
    """Progress over a known number of items (eval's samples, predict's images): a rich bar (done/total, rate,
    elapsed, remaining) on a terminal, a log line every 5 s otherwise, on stderr. Use as a context manager."""

    def __init__(self, label: str, total: int, unit: str) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.done = 0
        self._started = time.monotonic()
        self._last_log = self._started
        self._progress = None
        self._task = None

    def __enter__(self) -> CountProgress:
        if sys.stderr.isatty():
            self._progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(self.label, total=self.total, rate="")
            self._progress.start()
        return self

    def update(self, done: int) -> None:
        """`done` of `total` items are finished."""
        self.done = done
        now = time.monotonic()
        rate = f"{done / (now - self._started):.1f} {self.unit}/s" if now > self._started and done else ""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, rate=rate)
        elif now - self._last_log >= 5.0 and done < self.total:
            self._last_log = now
            print(f"{self.label}: {done}/{self.total} {self.unit}  {rate}", file=sys.stderr, flush=True)

    def print(self, text: str) -> None:
        """A line above the bar (or a plain line without one), on stderr."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
