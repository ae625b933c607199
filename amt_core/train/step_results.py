"""A step's results stay on the device until the trainer's host check reads a batch of them back in one transfer
(no host sync per step): whether the step was applied, its loss and terms, gradient norms, per-sample errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(kw_only=True)
class StepResult:
    """One step as `train_step` leaves it (tensors on the device)."""

    step: int
    """The step number once this step is done."""
    indices: list[int]
    """Dataset indices of the batch."""
    ok: torch.Tensor
    """() 1.0 when the update was applied, 0.0 when a non-finite loss or gradient skipped it."""
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor]
    """Samples each term saw (a term with none in this step is absent from the step's figures)."""
    norms: torch.Tensor
    """(param groups,) gradient norm of each optimizer param group before clipping."""
    errors: torch.Tensor
    """(B,) per-sample error, for hard-case mining."""
    time_s: float
    """Host time of the step."""


@dataclass(kw_only=True)
class HostStep:
    """A `StepResult` read back to the host."""

    step: int
    indices: list[int]
    ok: bool
    loss: float
    terms: dict[str, tuple[float, bool]]
    """{term: (value, had samples)}."""
    errors: list[float]
    time_s: float


def read_back(pending: list[StepResult], param_groups: list[dict]) -> tuple[list[HostStep], dict[str, float]]:
    """The pending steps on the host, and the last step's gradient norm by group name (several param groups may
    share a name: their norms combine), in a few transfers for the whole list."""
    ok = torch.stack([p.ok for p in pending]).cpu().tolist()
    losses = torch.stack([p.loss.float() for p in pending]).cpu().tolist()
    last_norms = pending[-1].norms.cpu().tolist()
    steps = [
        HostStep(
            step=p.step,
            indices=p.indices,
            ok=bool(ok[i]),
            loss=losses[i],
            terms=_host_terms(p.terms, p.counts),
            errors=p.errors.cpu().tolist(),
            time_s=p.time_s,
        )
        for i, p in enumerate(pending)
    ]
    squares: dict[str, float] = {}
    for group, value in zip(param_groups, last_norms):
        squares[group["group"]] = squares.get(group["group"], 0.0) + value**2
    return steps, {name: value**0.5 for name, value in squares.items()}


def _host_terms(terms: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> dict[str, tuple[float, bool]]:
    """A step's device-side terms as {name: (value, had samples)}, in one transfer (a term without a count: True)."""
    if not terms:
        return {}
    names = list(terms)
    values = torch.stack(
        [terms[n].float() for n in names]
        + [torch.as_tensor(counts.get(n, 1)).to(terms[n].device).float() for n in names]
    )
    table = values.cpu().tolist()
    return {n: (table[i], table[len(names) + i] > 0) for i, n in enumerate(names)}
