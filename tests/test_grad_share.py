"""Each loss term's share of the gradient at the trunk: the computation against a hand computation on a toy, a term
switched off, the trainer's diagnostics event, and the studio's plot of it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from amt_core.metrics.grad_share import trunk_grad_share, trunk_of


@dataclass
class Features:
    maps: list[torch.Tensor]
    fused: torch.Tensor
    label: str = "not a tensor"


class Trunk(nn.Module):
    """Outputs a dataclass with a list of maps, like `BackboneFeatures`."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 6)
        self.second = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> Features:
        first = torch.tanh(self.first(x))
        return Features(maps=[first], fused=torch.tanh(self.second(first)))


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = Trunk()
        self.pose = nn.Linear(12, 3)
        self.shape = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return self.pose(torch.cat([features.maps[0], features.fused], dim=-1)), self.shape(features.fused)


WEIGHTS = {"pose": 2.0, "shape": 0.5, "pull": 0.3}


def weighted_terms(weights: dict[str, float]):
    def terms(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        pose, shape = output
        values = {
            "pose": (pose - target).pow(2).mean(),
            "shape": shape.pow(2).mean(),
            "pull": -(pose - target).pow(2).mean(),  # against `pose`: a negative share
        }
        return {name: weights[name] * value for name, value in values.items()}

    return terms


def hand_computed(model: TwoHeads, x: torch.Tensor, target: torch.Tensor, weights: dict[str, float]):
    """g_i by hand: the trunk's outputs recomputed and made leaves, the heads applied to them."""
    features = model.backbone(x)
    maps, fused = features.maps[0].detach().requires_grad_(), features.fused.detach().requires_grad_()
    output = model.pose(torch.cat([maps, fused], dim=-1)), model.shape(fused)
    vectors = {}
    for name, term in weighted_terms(weights)(output, target).items():
        grads = torch.autograd.grad(term, [maps, fused], retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(f) if g is None else g for g, f in zip(grads, (maps, fused))]
        vectors[name] = torch.cat([g.flatten() for g in grads]).double()
    total = sum(vectors.values())
    shares = {name: float(v @ total / (total @ total)) for name, v in vectors.items()}
    norms = {name: float(v.norm()) for name, v in vectors.items()}
    return shares, norms


@pytest.fixture
def toy():
    torch.manual_seed(0)
    model = TwoHeads()
    return model, torch.randn(5, 4), torch.randn(5, 3)


def test_shares_sum_to_one_and_match_a_hand_computation(toy) -> None:
    model, x, target = toy
    result = trunk_grad_share(model, x, lambda output, _x: weighted_terms(WEIGHTS)(output, target))
    shares, norms = hand_computed(model, x, target, WEIGHTS)
    assert sum(result.share.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.share.keys() == shares.keys()
    for name in shares:
        assert result.share[name] == pytest.approx(shares[name], rel=1e-4, abs=1e-6), name
        assert result.norm[name] == pytest.approx(norms[name], rel=1e-4), name
    assert result.share["pull"] < 0 < result.share["shape"]  # the term that fights `pose` is negative
    assert all(norm > 0 for norm in result.norm.values())
    # the parameters' gradients are not touched
    assert all(p.grad is None for p in model.parameters())


def test_a_term_with_weight_zero_has_share_and_norm_zero(toy) -> None:
    model, x, target = toy
    weights = {**WEIGHTS, "shape": 0.0}
    result = trunk_grad_share(model, x, lambda output, _x: weighted_terms(weights)(output, target))
    assert result.share["shape"] == 0.0 and result.norm["shape"] == 0.0
    assert sum(result.share.values()) == pytest.approx(1.0, abs=1e-5)
    shares, _norms = hand_computed(model, x, target, weights)
    assert result.share["pose"] == pytest.approx(shares["pose"], rel=1e-4)


def test_a_term_that_does_not_reach_the_trunk_has_share_zero(toy) -> None:
    model, x, target = toy

    def terms(output, _x):
        return {**weighted_terms(WEIGHTS)(output, target), "bias": model.shape.bias.pow(2).sum()}

    result = trunk_grad_share(model, x, terms)
    assert result.share["bias"] == 0.0 and result.norm["bias"] == 0.0
    assert sum(result.share.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_trunk_of_each_model_kind() -> None:
    from amt_core.models.cnn import CNNConfig, PlainCNN

    assert trunk_of(TwoHeads()) is not None
    cnn = PlainCNN(CNNConfig())
    assert trunk_of(cnn) is cnn.features
    with pytest.raises(ValueError, match="no trunk"):
        trunk_grad_share(nn.Linear(2, 2), torch.zeros(1, 2), lambda o, _b: {"x": o.sum()})


def _noisy_run(run_dir, diag_every: int) -> list[dict]:
    """Three steps of the toy with dropout (it draws from the global generator, as the real models do)."""
    from helpers.toys import NoisyToyModel, ToyDataset, events_of, toy_config

    from amt_core.train import parts
    from amt_core.train.trainer import Trainer

    config = toy_config(steps=(2, 2, 2), max_steps=3, diag_every=diag_every)
    torch.manual_seed(config.trainer.seed)
    model = NoisyToyModel()
    trainer = Trainer(
        config,
        run_dir,
        model=model,
        loss=parts.build_loss(config.loss),
        dataset=ToyDataset(),
        val_dataset=ToyDataset(8),
    )
    trainer.train()
    return events_of(run_dir)


def test_the_trainer_writes_shares_in_its_diagnostics_and_the_run_is_unchanged(tmp_path) -> None:
    events = _noisy_run(tmp_path / "diag", diag_every=1)
    diagnostics = [e for e in events if e["kind"] == "diagnostics"]
    assert [e["step"] for e in diagnostics] == [1, 2, 3]
    for diag in diagnostics:
        shares, norms = diag["grad_share"], diag["grad_norm_trunk"]
        assert shares and shares.keys() == norms.keys()
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(norms.values()) > 0
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert set(diagnostics[0]["grad_share"]) <= set(metrics[0]["terms"])
    # the extra training-mode forward leaves the run alone: the same losses as a run without diagnostics
    plain = [e for e in _noisy_run(tmp_path / "plain", diag_every=1000) if e["kind"] == "metrics"]
    assert [(e["loss"], e["terms"]) for e in metrics] == [(e["loss"], e["terms"]) for e in plain]


@pytest.mark.gui
def test_the_studio_plots_the_share_of_each_term(request) -> None:
    pytest.importorskip("pytestqt")
    qtbot = request.getfixturevalue("qtbot")
    from helpers.studio import event

    from amt_studio.state.run import RunState
    from amt_studio.views.plots import PlotsPanel

    panel = PlotsPanel()
    qtbot.addWidget(panel)
    state = RunState()
    panel.set_state(state)
    shares = {1: {"joints3d": 0.5, "root": 0.3, "contact": 0.2}, 2: {"joints3d": 1.0, "root": 0.25, "contact": -0.25}}
    state.ingest(
        [event("diagnostics", step, grad_norm={"decoders": 1.0}, grad_share=s) for step, s in shares.items()]
        + [event("diagnostics", 3, grad_norm={"decoders": 1.0})]  # an older trainer's event: no shares
    )
    for _ in range(20):  # the window's timer does this: one dirty plot fed per call
        panel.refresh()
    assert not panel._dirty
    curves = panel.curves_of("share")  # by loss group: a group's share is the sum of its terms' shares
    assert set(curves) == {"hand joints", "contact and physics"}
    x, y = curves["contact and physics"].getData()
    assert list(x) == [1, 2] and list(y) == pytest.approx([0.2, -0.25])
    x, y = curves["hand joints"].getData()
    assert list(y) == pytest.approx([0.8, 1.25])
    assert set(state.grad_share.series) == {"joints3d", "root", "contact"}  # each term's own share is kept too
    assert panel.plot_by_key["share"].item.titleLabel.text == "gradient share at the trunk, by loss group"
