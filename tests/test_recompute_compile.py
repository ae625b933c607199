"""Activation checkpointing policies, activation offloading and in-place torch.compile on the micro models (CPU,
fp32): each gives the same outputs and gradients as the plain model and leaves the state_dict keys alone."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections import Counter

import pytest
import torch
import torch.utils.checkpoint as torch_checkpoint
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from amt_core.accel import recompute
from amt_core.accel.recompute import (
    EveryNth,
    FullCheckpointing,
    NoCheckpointing,
    SelectiveOps,
    checkpointed_modules,
    make_policy,
    remove_checkpointing,
    save_matmuls_policy,
    transformer_blocks,
)
from amt_core.errors import UserError
from amt_core.models import create_model
from amt_core.train import memory
from amt_core.train.compile import compile_model, compile_targets, run_eagerly

aten = torch.ops.aten
SPECS = ["none", "full", "every:2", "every:3", "selective"]
_HEADS = ("hand", "refine", "object", "contact")
# Every random layer off, so a compiled model (whose RNG differs from eager) can be compared in train mode.
NO_RANDOMNESS = {
    "backbone.drop_path": 0.0,
    "noise.enabled": False,
    "hand.sigma.enabled": False,
    **{
        f"{part}.block.{rate}": 0.0
        for part in ("hand", "refine", "object", "contact")
        for rate in ("drop_path", "dropout")
    },
}

VIT_TRUNK = {"backbone.variant": "scratch"}
"""The micro models on the scratch ViT: these tests are about the transformer blocks of a timm backbone (the GPU
presets' DINOv2), which the micro preset's own convolutional trunk does not have."""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    yield
    torch._dynamo.reset()  # compiled graphs hold on to the test's modules


@pytest.fixture(scope="module")
def hand_layer():
    from amt_core.hand import HandModel

    return HandModel()


@pytest.fixture(scope="module")
def amt(hand_layer):
    """amt_micro with its random layers on and timm's own checkpointing switched on (the backbone's
    `set_grad_checkpointing`, timm's contract), which a policy must take over from."""
    torch.manual_seed(0)
    model = create_model("amt_micro", **VIT_TRUNK, hand_layer=hand_layer)
    model.backbone.set_grad_checkpointing(True)
    return model


def _batch(batch: int = 2, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[1.2 * size, 0.0, size / 2], [0.0, 1.2 * size, size / 2], [0.0, 0.0, 1.0]])
    return {"image": torch.rand(batch, 3, size, size, generator=g), "K": K.expand(batch, 3, 3).clone()}


def _train_step(model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Train-mode forward and backward with a fixed seed: (output fields, gradients by parameter name)."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    out = model(batch)
    fields = {"joints3d": out.joints3d}
    if out.hand_verts is not None:
        fields |= {"hand_verts": out.hand_verts, "obj_trans": out.obj_trans, "contact_prob": out.contact_prob}
        fields |= {"obj_logits": out.obj_logits, "obj_present": out.obj_present, "contact_forces": out.contact_forces}
    sum(value.float().mean() for value in fields.values()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in fields.items()}, grads


def _assert_same_step(got, expected, *, atol: float = 1e-6, zero_extra: bool = False) -> None:
    (out, grads), (ref_out, ref_grads) = got, expected
    for name, value in ref_out.items():
        torch.testing.assert_close(out[name], value, atol=atol, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert set(ref_grads) <= set(grads), f"parameters that lost their gradient: {sorted(set(ref_grads) - set(grads))}"
    for name, value in ref_grads.items():
        torch.testing.assert_close(grads[name], value, atol=atol, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    extra = set(grads) - set(ref_grads)
    if zero_extra:  # compiled graphs hand zeros, not None, to parameters the loss does not reach
        assert all(grads[name].abs().max() == 0 for name in extra)
    else:
        assert not extra, f"parameters that gained a gradient: {sorted(extra)[:5]}"


# ---------------------------------------------------------------- checkpointing policies


@pytest.mark.parametrize("spec", SPECS)
def test_policy_gives_the_same_outputs_and_gradients(spec, amt):
    reference = copy.deepcopy(amt)
    reference.backbone.set_grad_checkpointing(False)
    expected = _train_step(reference, _batch())

    model = copy.deepcopy(amt)
    keys = list(model.state_dict())
    wrapped = make_policy(spec).apply(model)
    assert list(model.state_dict()) == keys
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert checkpointed_modules(model) == wrapped
    blocks = [name for name, _ in transformer_blocks(model)]
    assert len(blocks) == 4 + 1 + 1 + 1 + 2  # backbone, hand encoder, refinement, object, contact (both ways)
    assert wrapped == {"none": [], "full": blocks, "every:2": blocks[::2], "every:3": blocks[::3]}.get(spec, blocks)
    # A policy that wraps blocks takes over from timm's switch; "none" leaves the model as it was built.
    assert model.backbone.vit.grad_checkpointing is (spec == "none")
    _assert_same_step(_train_step(model, _batch()), expected)


@pytest.mark.parametrize("spec", ["full", "selective"])
def test_recompute_context_is_entered_in_the_forward_and_again_in_the_recomputation(spec, amt):
    # Transformer Engine's FP8 autocast must wrap a checkpointed block's forward and its backward recomputation.
    model = copy.deepcopy(amt)
    wrapped = make_policy(spec).apply(model)
    entered = Counter()

    @contextlib.contextmanager
    def counting(kind):
        entered[kind] += 1
        yield

    assert recompute.set_recompute_context(model, lambda: (counting("forward"), counting("recompute"))) == len(wrapped)
    expected = _train_step(copy.deepcopy(amt), _batch())
    got = _train_step(model, _batch())
    # once per block call (the refinement block runs once per refinement step), and once more per call in backward
    assert entered["forward"] == entered["recompute"] >= len(wrapped)
    _assert_same_step(got, expected)
    remove_checkpointing(model)
    assert not any(hasattr(m, "_amt_checkpoint_recompute") for m in model.modules())


def _checkpoint_calls(model: nn.Module, monkeypatch) -> int:
    """Calls of torch's checkpoint (timm's goes through it too) in one train-mode forward and backward."""
    calls = []
    real = torch_checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch_checkpoint, "checkpoint", counting)
        _train_step(model, _batch())
    return len(calls)


def test_policy_and_timm_checkpointing_never_stack(amt, monkeypatch):
    model = copy.deepcopy(amt)
    assert _checkpoint_calls(model, monkeypatch) == 4  # timm's switch: the 4 backbone blocks
    FullCheckpointing().apply(model)
    assert not model.backbone.vit.grad_checkpointing
    # 9 blocks, the refinement block runs 3 times: each block call is one checkpoint, none nested in another.
    assert _checkpoint_calls(model, monkeypatch) == 11
    model.backbone.set_grad_checkpointing(True)  # what apply prevents: timm's checkpoint around the policy's
    assert _checkpoint_calls(model, monkeypatch) > 11


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _ops_in_backward(policy) -> Counter[str]:
    torch.manual_seed(0)
    # With LayerScale (DINOv2's blocks) every matmul output is needed by the backward pass, so full checkpointing
    # recomputes all four per block; without it, PyTorch's early stop skips the one feeding only a residual add.
    model = create_model(
        "baseline_micro", **VIT_TRUNK, **{"backbone.drop_path": 0.0, "backbone.layer_scale": 1e-5}
    ).train()
    policy.apply(model)
    out = model(_batch())
    counter = _CountOps()
    with counter:
        out.joints3d.sum().backward()
    return counter.counts


def test_selective_keeps_matmul_outputs_and_recomputes_elementwise_ops():
    attention = "_scaled_dot_product_flash_attention_for_cpu"
    plain, full, selective = (_ops_in_backward(p) for p in (NoCheckpointing(), FullCheckpointing(), SelectiveOps()))
    blocks = 4
    assert plain["native_layer_norm"] == plain["gelu"] == plain[attention] == plain["addmm"] == 0
    # Full recomputes every op of each block in the backward pass; selective only the cheap element-wise ones.
    assert full["gelu"] == selective["gelu"] == blocks
    assert full["native_layer_norm"] == selective["native_layer_norm"] == 2 * blocks
    assert full[attention] == blocks and full["addmm"] == 4 * blocks  # qkv, proj, fc1, fc2
    assert selective[attention] == 0 and selective["addmm"] == 0


def test_selective_op_policy():
    save, recompute = torch_checkpoint.CheckpointPolicy.MUST_SAVE, torch_checkpoint.CheckpointPolicy.PREFER_RECOMPUTE
    for op in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.convolution.default):
        assert save_matmuls_policy(None, op) is save
    assert save_matmuls_policy(None, aten._scaled_dot_product_efficient_attention.default) is save
    for op in (aten.gelu.default, aten.add.Tensor, aten.native_layer_norm.default, aten.native_dropout.default):
        assert save_matmuls_policy(None, op) is recompute


def test_apply_replaces_the_previous_policy_and_remove_restores(amt):
    model = copy.deepcopy(amt)
    full = FullCheckpointing().apply(model)
    every = EveryNth(2).apply(model)
    assert checkpointed_modules(model) == every and len(every) < len(full)
    assert NoCheckpointing().apply(model) == [] and checkpointed_modules(model) == []
    SelectiveOps().apply(model)
    assert remove_checkpointing(model) == full
    assert all("forward" not in vars(module) for module in model.modules())


def test_wrapped_model_deep_copies_onto_itself(amt):
    model = copy.deepcopy(amt)
    FullCheckpointing().apply(model)
    clone = copy.deepcopy(model)
    block = clone.backbone.vit.blocks[0]
    assert block.forward.__self__ is block  # not the original's block
    assert checkpointed_modules(clone) == checkpointed_modules(model)


def test_checkpoint_runs_only_in_training_with_grad(amt, monkeypatch):
    calls = []
    real = torch_checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(recompute.torch_checkpoint, "checkpoint", counting)
    model = copy.deepcopy(amt)
    blocks = len(FullCheckpointing().apply(model))
    with torch.no_grad():
        model.train()(_batch())
        model.eval()(_batch())
    model.eval()(_batch())
    assert calls == []
    model.train()(_batch())
    assert len(calls) == blocks + 2  # the shared refinement block runs once per step, 3 times


@pytest.mark.parametrize(
    ("spec", "policy"),
    [
        ("none", NoCheckpointing()),
        ("FULL", FullCheckpointing()),
        (" every:4 ", EveryNth(4)),
        ("selective", SelectiveOps()),
    ],
)
def test_make_policy_parses(spec, policy):
    parsed = make_policy(spec)
    assert parsed == policy
    assert make_policy(parsed.spec) == policy
    assert parsed.describe().startswith(parsed.spec) and "\n" not in parsed.describe()


@pytest.mark.parametrize("spec", ["", "fulll", "every", "every:", "every:0", "every:-1", "every:x", "every:2.5", "2"])
def test_make_policy_rejects_bad_specs_in_one_line(spec):
    with pytest.raises(UserError) as err:
        make_policy(spec)
    message = str(err.value)
    assert "\n" not in message and "every:" in message


def test_every_nth_checks_its_period():
    with pytest.raises(ValueError, match="n must be >= 1"):
        EveryNth(0)


# ---------------------------------------------------------------- activation offloading


def test_offloading_gives_the_same_gradients(amt):
    model = copy.deepcopy(amt)
    model.backbone.set_grad_checkpointing(False)
    expected = _train_step(model, _batch())
    with memory.offload_activations(True, torch.device("cpu")):
        _assert_same_step(_train_step(model, _batch()), expected)
    with memory.offload_activations(False, torch.device("cpu")):
        _assert_same_step(_train_step(model, _batch()), expected)
    SelectiveOps().apply(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # SAC under saved-tensor hooks warns unless told what to do
        with memory.offload_activations(True, torch.device("cpu")):
            _assert_same_step(_train_step(model, _batch()), expected)


def test_offloading_pins_host_memory_only_with_cuda(monkeypatch):
    made = []
    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", lambda **kwargs: made.append(kwargs) or "hooks")
    assert memory.offload_activations(True, torch.device("cuda", 0)) == "hooks"
    assert memory.offload_activations(True, torch.device("cpu")) == "hooks"
    assert made == [{"pin_memory": True}, {"pin_memory": False}]
    assert isinstance(memory.offload_activations(False, torch.device("cuda")), contextlib.nullcontext)
    assert len(made) == 2


def test_offloading_sends_saved_tensors_through_its_hooks():
    hooks = memory.offload_activations(True, torch.device("cpu"))
    assert isinstance(hooks, torch.autograd.graph.saved_tensors_hooks)
    packed = []
    pack = hooks.pack_hook
    hooks.pack_hook = lambda tensor: packed.append(tuple(tensor.shape)) or pack(tensor)
    x = torch.randn(4, 8, requires_grad=True)
    with hooks:
        y = torch.tanh(x @ x.T).sum()
    y.backward()
    assert (4, 8) in packed and (4, 4) in packed
    torch.testing.assert_close(x.grad, torch.func.grad(lambda t: torch.tanh(t @ t.T).sum())(x.detach()))


# ---------------------------------------------------------------- torch.compile


def test_compile_targets_are_the_backbone_blocks_and_the_heads(hand_layer):
    amt = create_model("amt_micro", **VIT_TRUNK, hand_layer=hand_layer)
    blocks = [f"backbone.vit.blocks.{i}" for i in range(4)]
    assert [n for n, _ in compile_targets(amt)] == [*blocks, "hand_encoder", "refine", "object_head", "contact_head"]
    baseline = create_model("baseline_micro", **VIT_TRUNK)
    assert [n for n, _ in compile_targets(baseline)] == [*blocks, "mlp"]


@pytest.mark.parametrize("spec", ["none", "full", "selective"])
def test_compile_matches_eager(spec):
    torch.manual_seed(0)
    eager = create_model("baseline_micro", **VIT_TRUNK, **{"backbone.drop_path": 0.0})
    expected = _train_step(eager, _batch())
    eager.eval()
    with torch.no_grad():
        expected_eval = eager(_batch()).joints3d

    model = copy.deepcopy(eager)
    keys = list(model.state_dict())
    make_policy(spec).apply(model)
    names = compile_model(model, backend="aot_eager")
    assert names == [n for n, _ in compile_targets(model)]
    assert list(model.state_dict()) == keys
    _assert_same_step(_train_step(model, _batch()), expected, atol=1e-5, zero_extra=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(_batch()).joints3d, expected_eval, atol=1e-5, rtol=1e-5)


class _CountingBackend:
    """A torch.compile backend that runs graphs as they are and counts compilations and graph runs."""

    def __init__(self) -> None:
        self.compiled = 0
        self.runs = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs):
        self.compiled += 1

        def run(*args):
            self.runs += 1
            return graph_module.forward(*args)

        return run


@pytest.mark.parametrize("spec", ["none", "full"])
def test_blocks_share_graphs_despite_per_block_drop_rates(spec):
    # 12 blocks, each with its own stochastic-depth rate: dynamo must not compile (nor give up on) each of them.
    depth = 12
    model = create_model("baseline_micro", **VIT_TRUNK, **{"backbone.depth": depth, "backbone.drop_path": 0.2}).train()
    make_policy(spec).apply(model)
    backend = _CountingBackend()
    compile_model(model, backend=backend)
    for _ in range(2):
        model(_batch()).joints3d.sum().backward()
    assert backend.compiled <= 4  # block 0 (no DropPath), block 1 (rate constant), the rest (rate symbolic), the MLP
    assert backend.runs == 2 * (depth + 1)  # every block ran compiled, every time


def test_compiled_drop_path_keeps_the_distribution():
    from timm.layers import DropPath

    from amt_core.train.compile import _shared_graph_drop_path

    x = torch.ones(20_000, 3)
    for scale_by_keep in (True, False):
        layer = DropPath(0.25, scale_by_keep=scale_by_keep).train()
        torch.manual_seed(0)
        y = _shared_graph_drop_path(layer, x)
        kept = y[:, 0] != 0
        assert abs(kept.float().mean().item() - 0.75) < 0.02
        assert (y[kept] == (1 / 0.75 if scale_by_keep else 1.0)).all() and (y[~kept] == 0).all()
        assert (y == y[:, :1]).all()  # one draw per sample
        assert _shared_graph_drop_path(layer.eval(), x) is x


def test_compile_with_offloading_matches_eager():
    torch.manual_seed(0)
    eager = create_model("baseline_micro", **VIT_TRUNK, **{"backbone.drop_path": 0.0})
    expected = _train_step(eager, _batch())
    model = copy.deepcopy(eager)
    SelectiveOps().apply(model)
    compile_model(model, backend="aot_eager")
    with memory.offload_activations(True, torch.device("cpu")):
        _assert_same_step(_train_step(model, _batch()), expected, atol=1e-5, zero_extra=True)


def test_attention_recording_runs_eagerly_and_compiled_graphs_stay():
    from amt_core.models import record_attention

    torch.manual_seed(0)
    eager = create_model("baseline_micro", **VIT_TRUNK).eval()
    with torch.no_grad(), record_attention(eager):
        expected = eager(_batch()).attention
    model = copy.deepcopy(eager)
    FullCheckpointing().apply(model)
    backend = _CountingBackend()
    compile_model(model, backend=backend)
    with torch.no_grad():
        model(_batch())
    runs = backend.runs
    for _ in range(2):
        with torch.no_grad(), record_attention(model), run_eagerly():
            maps = model(_batch()).attention
        assert sorted(maps) == sorted(expected)
        for name, value in expected.items():
            torch.testing.assert_close(maps[name], value)
    assert backend.runs == runs  # nothing compiled ran while recording
    with torch.no_grad():
        model(_batch())
    assert backend.runs == 2 * runs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, "unknown compile mode 'fast'"),
        ({"backend": "nope"}, "unknown torch.compile backend 'nope'"),
        ({"backend": "aot_eager", "mode": "max-autotune"}, "needs the inductor backend"),
    ],
)
def test_compile_rejects_bad_settings(kwargs, message):
    model = create_model("baseline_micro", **VIT_TRUNK)
    with pytest.raises(UserError, match=message) as err:
        compile_model(model, **kwargs)
    assert "\n" not in str(err.value)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


def test_compile_refuses_a_model_with_nothing_to_compile():
    with pytest.raises(UserError, match="no backbone blocks or trainable heads"):
        compile_model(nn.Linear(4, 4), backend="aot_eager")


@pytest.mark.slow
def test_inductor_compile_with_selective_checkpointing_matches_eager(hand_layer):
    torch.manual_seed(0)
    eager = create_model("amt_micro", **VIT_TRUNK, hand_layer=hand_layer, **NO_RANDOMNESS)
    expected = _train_step(eager, _batch())
    model = copy.deepcopy(eager)
    SelectiveOps().apply(model)
    compile_model(model, backend="inductor")
    _assert_same_step(_train_step(model, _batch()), expected, atol=1e-4, zero_extra=True)
    _assert_same_step(_train_step(model, _batch()), expected, atol=1e-4, zero_extra=True)  # the cached graphs


def test_saved_activations_shrink_with_checkpointing(amt):
    batch = _batch()

    def saved(spec: str, batch: dict = batch) -> int:
        model = copy.deepcopy(amt).train()
        model.backbone.set_grad_checkpointing(False)  # the fixture turns timm's own on
        make_policy(spec).apply(model)
        with memory.saved_activations(model) as found:
            model(batch)
        return found["bytes"]

    none, selective, full = saved("none"), saved("selective"), saved("full")
    assert 0 < full < selective < none
    # activations grow with the batch; the weights layers save for their input gradients would not, and are left out
    assert none / saved("none", _batch(batch=1)) > 1.8
