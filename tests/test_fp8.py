"""FP8 precision on the CPU: the refusals, the layer selection by size, the measured threshold and its cache, the
autocast nesting and TE's extra state across checkpoints. The GPU paths themselves (TE, torchao on CUDA) run elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch
from torch import nn

from amt_core.accel import fp8, fp8_state, fp8_threshold, precision, probe
from amt_core.accel.fp8 import Fp8Config, Fp8Report
from amt_core.errors import UserError

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture
def gpu(monkeypatch):
    """Pretend to be on an sm_90 GPU with torchao importable; returns a setter for other capabilities/backends."""

    def set_gpu(capability=(9, 0), backends=("torchao",)):
        monkeypatch.setattr(probe, "cuda_capability", lambda device=None: capability)
        monkeypatch.setattr(probe, "fp8_backends", lambda: tuple(backends))

    set_gpu()
    return set_gpu


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache directory; returns the threshold file's path."""
    monkeypatch.setenv("AMT_CACHE_DIR", str(tmp_path))
    return tmp_path / fp8.THRESHOLD_FILE


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- refusals -------------------------------------------------------------------------------------------------------


def test_fp8_is_a_precision():
    assert precision.PRECISIONS == ("fp32", "bf16", "fp8")
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        precision.check_precision("fp16", CPU)


def test_fp8_refused_on_the_cpu():
    with pytest.raises(UserError) as err:
        precision.check_precision("fp8", CPU)
    assert "FP8 needs a CUDA GPU with compute capability 8.9+ (none found)" in _one_line(err)


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (7, 5)])
def test_fp8_refused_below_sm89(gpu, capability):
    gpu(capability=capability)
    with pytest.raises(UserError) as err:
        precision.check_precision("fp8", CUDA)
    message = _one_line(err)
    assert f"FP8 needs compute capability 8.9+ (found {capability[0]}.{capability[1]})" in message
    assert "trainer.precision=bf16" in message


@pytest.mark.parametrize("capability", [(8, 9), (9, 0), (10, 0)])
def test_fp8_accepted_from_sm89_with_a_backend(gpu, capability):
    gpu(capability=capability, backends=("te",))
    assert precision.check_precision("fp8", CUDA) is None


def test_fp8_needs_transformer_engine_or_torchao(gpu):
    gpu(backends=())
    with pytest.raises(UserError) as err:
        precision.check_precision("fp8", CUDA)
    message = _one_line(err)
    assert "transformer-engine[pytorch]" in message and "torchao" in message


def test_backend_probe_skips_missing_and_broken_packages(tmp_path, monkeypatch):
    # A package whose import fails with OSError, as TE's does when its CUDA libraries are missing.
    (tmp_path / "broken_fp8_lib.py").write_text("raise OSError('libcudart.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_fp8_lib", raising=False)
    monkeypatch.setattr(probe, "FP8_PACKAGES", {"te": "broken_fp8_lib", "torchao": "json"})
    assert probe.fp8_backends() == ("torchao",)
    monkeypatch.setattr(probe, "FP8_PACKAGES", {"te": "no_such_fp8_module_here", "torchao": "json.decoder"})
    assert probe.fp8_backends() == ("torchao",)
    monkeypatch.setattr(probe, "FP8_PACKAGES", {"te": "json", "torchao": "no_such_fp8_module_here"})
    assert probe.fp8_backends() == ("te",)


def test_cuda_capability_is_none_off_cuda():
    assert probe.cuda_capability(CPU) is None


def test_prepare_fp8_refuses_the_cpu():
    with pytest.raises(UserError, match="none found"):
        fp8.prepare_fp8(nn.Linear(2048, 2048), Fp8Config(), CPU)


def test_mxfp8_needs_blackwell():
    with pytest.raises(UserError) as err:
        fp8.check_recipe("mxfp8", (9, 0))
    assert "compute capability 10.0+ (found 9.0)" in _one_line(err)
    with pytest.raises(UserError, match="found none"):
        fp8.check_recipe("mxfp8", None)
    fp8.check_recipe("mxfp8", (10, 0))
    for recipe in ("delayed", "current", "tensorwise", "rowwise"):
        fp8.check_recipe(recipe, (8, 9))


# --- config and backend ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"backend": "cublas"}, "backend"),
        ({"recipe": "fastest"}, "recipe"),
        ({"backend": "te", "recipe": "rowwise"}, "recipe"),
        ({"backend": "torchao", "recipe": "delayed"}, "recipe"),
        ({"min_dim": -1}, "min_dim"),
    ],
)
def test_config_checks_its_fields(kwargs, field):
    with pytest.raises(ValueError, match=f"Fp8Config.{field}"):
        Fp8Config(**kwargs)


def test_backend_resolution(gpu):
    gpu(backends=("te", "torchao"))
    assert fp8.resolve_backend(Fp8Config(recipe="delayed")) == ("te", "delayed")
    assert fp8.resolve_backend(Fp8Config(recipe="rowwise")) == ("torchao", "rowwise")
    assert fp8.resolve_backend(Fp8Config(backend="torchao")) == ("torchao", "tensorwise")
    gpu(backends=("torchao",))
    assert fp8.resolve_backend(Fp8Config()) == ("torchao", "tensorwise")
    with pytest.raises(UserError) as err:
        fp8.resolve_backend(Fp8Config(backend="te"))
    assert "fp8 backend te does not import here; pip install 'transformer-engine[pytorch]'" in _one_line(err)
    gpu(backends=())
    with pytest.raises(UserError, match="neither imports"):
        fp8.resolve_backend(Fp8Config())


# --- which layers -------------------------------------------------------------------------------------------------


def _model() -> nn.Module:
    """Linear layers of the sizes that matter, on the meta device (shapes only, no memory)."""
    model = nn.Module()
    model.small = nn.Linear(64, 64, device="meta")
    model.edge = nn.Linear(1024, 1024, device="meta")
    model.block = nn.Module()
    model.block.mlp = nn.Linear(1536, 6144, device="meta")
    model.block.square = nn.Linear(1040, 1040, device="meta")
    model.block.odd = nn.Linear(1030, 2048, device="meta")
    model.narrow = nn.Linear(4096, 512, device="meta")
    model.head = nn.Linear(2048, 2048, bias=False, device="meta")
    return model


def test_threshold_filter_converts_exactly_the_large_aligned_layers():
    selection = fp8.select_fp8_linears(_model(), 1025)
    assert selection.converted == ["block.mlp", "block.square", "head"]
    assert selection.skipped == {
        "small": "64x64 is below min_dim 1025",
        "edge": "1024x1024 is below min_dim 1025",
        "block.odd": "1030x2048 is not a multiple of 16 (FP8 GEMM requirement)",
        "narrow": "4096x512 is below min_dim 1025",
    }


def test_threshold_filter_follows_min_dim_and_skip():
    assert fp8.select_fp8_linears(_model(), 1024).converted == ["edge", "block.mlp", "block.square", "head"]
    assert fp8.select_fp8_linears(_model(), 2048).converted == ["head"]
    assert fp8.select_fp8_linears(_model(), 16).converted == [
        "small",
        "edge",
        "block.mlp",
        "block.square",
        "narrow",
        "head",
    ]
    selection = fp8.select_fp8_linears(_model(), 1025, skip=("block", "head"))
    assert selection.converted == []
    assert selection.skipped["block.mlp"] == selection.skipped["head"] == "listed in skip"
    # A prefix of a name is not a parent: "bl" skips nothing.
    assert fp8.select_fp8_linears(_model(), 1025, skip=("bl",)).converted == ["block.mlp", "block.square", "head"]


def test_mxfp8_alignment_is_32():
    model = nn.Sequential(*(nn.Linear(n_in, n_out, device="meta") for n_in, n_out in [(1040, 2048), (2048, 2080)]))
    assert fp8.select_fp8_linears(model, 1025).converted == ["0", "1"]
    selection = fp8.select_fp8_linears(model, 1025, align=fp8.MXFP8_ALIGN)
    assert selection.converted == ["1"]
    assert selection.skipped["0"] == "1040x2048 is not a multiple of 32 (FP8 GEMM requirement)"


def test_linear_subclasses_and_the_root_are_left_alone():
    attention = nn.MultiheadAttention(2048, 16, device="meta")  # its out_proj is used through .weight, not forward
    selection = fp8.select_fp8_linears(attention, 16)
    assert selection.converted == []
    assert "Linear subclass" in selection.skipped["out_proj"]
    root = fp8.select_fp8_linears(nn.Linear(2048, 2048, device="meta"), 16)
    assert root.converted == [] and "the model itself" in root.skipped[""]


def test_flop_fraction_arithmetic():
    selection = fp8.select_fp8_linears(_model(), 1025)
    flops = {
        "small": 64 * 64,
        "edge": 1024 * 1024,
        "block.mlp": 1536 * 6144,
        "block.square": 1040 * 1040,
        "block.odd": 1030 * 2048,
        "narrow": 4096 * 512,
        "head": 2048 * 2048,
    }
    assert selection.flops_per_token == flops
    expected = (1536 * 6144 + 1040 * 1040 + 2048 * 2048) / sum(flops.values())
    assert selection.flop_fraction == pytest.approx(expected, rel=1e-12)
    assert selection.flop_fraction == 14_713_088 / 19_972_352  # worked by hand: 9437184+1081600+4194304 over all
    assert fp8.select_fp8_linears(nn.Sequential(nn.ReLU()), 16).flop_fraction == 0.0
    assert fp8.select_fp8_linears(_model(), 16).flop_fraction == pytest.approx(1 - 1030 * 2048 / sum(flops.values()))


def test_report_summary_and_record():
    report = Fp8Report(
        backend="torchao",
        recipe="tensorwise",
        min_dim=1025,
        min_dim_source="default",
        converted=["a", "b"],
        skipped={"c": "64x64 is below min_dim 1025"},
        flop_fraction=0.9123,
    )
    assert report.summary() == (
        "FP8 (torchao, tensorwise): 2 of 3 Linear layers, 91.2% of Linear FLOPs; min_dim 1025 (default)"
    )
    record = json.loads(json.dumps(report.to_dict()))
    assert record["converted"] == ["a", "b"] and record["flop_fraction"] == 0.9123 and "te_recipe" not in record


# --- autocast -----------------------------------------------------------------------------------------------------


def test_autocast_modes():
    with precision.autocast("fp32", CPU):
        assert not torch.is_autocast_enabled("cpu")
    with precision.autocast("bf16", CPU):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision.autocast("fp8", CPU):  # no report: bf16 autocast alone
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_fp8_autocast_nests_the_backend_context_inside_bf16():
    events = []

    @contextlib.contextmanager
    def te_context():
        events.append(("enter", torch.is_autocast_enabled("cpu")))
        yield
        events.append(("exit", torch.is_autocast_enabled("cpu")))

    report = SimpleNamespace(quantization_context=te_context)
    context = precision.autocast("fp8", CPU, fp8=report)
    assert events == []  # entered at the `with`, not when built
    with context:
        assert torch.is_autocast_enabled("cpu")
        events.append(("body", torch.is_autocast_enabled("cpu")))
    assert events == [("enter", True), ("body", True), ("exit", True)]
    assert not torch.is_autocast_enabled("cpu")


def test_checkpoint_recomputes_inside_the_fp8_context(monkeypatch):
    active = []

    @contextlib.contextmanager
    def te_context():
        active.append(True)
        yield
        active.pop()

    monkeypatch.setattr(Fp8Report, "quantization_context", lambda self: te_context())
    report = Fp8Report(
        backend="te",
        recipe="current",
        min_dim=1025,
        min_dim_source="default",
        converted=[],
        skipped={},
        flop_fraction=0.0,
    )
    seen = []

    def block(x: torch.Tensor) -> torch.Tensor:
        seen.append(bool(active))
        return torch.sin(x) * 2

    x = torch.randn(4, requires_grad=True)
    with report.quantization_context():  # the training step's forward
        y = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False, context_fn=report.checkpoint_contexts)
    assert seen == [True]
    y.sum().backward()  # outside the step's context: only context_fn can bring it back
    assert seen == [True, True]
    assert torch.allclose(x.grad, 2 * torch.cos(x))


def test_torchao_report_adds_no_context():
    report = Fp8Report(
        backend="torchao",
        recipe="rowwise",
        min_dim=1025,
        min_dim_source="default",
        converted=[],
        skipped={},
        flop_fraction=0.0,
    )
    assert isinstance(report.quantization_context(), contextlib.nullcontext)


# --- measured threshold -------------------------------------------------------------------------------------------


def _fake_timer(speedups: dict[int, float], calls: list | None = None):
    """bf16 takes d^2 units, FP8 d^2 / speedup."""

    def timer(kind: str, d: int) -> float:
        if calls is not None:
            calls.append((kind, d))
        return d * d / (speedups[d] if kind == "fp8" else 1.0)

    return timer


def test_measure_finds_the_crossover(gpu, cache):
    # FP8 with a fixed overhead: bf16 = d^2, fp8 = 0.55 d^2 + c, faster once 0.45 d^2 > c.
    overhead = 0.45 * 1100**2
    calls = []

    def timer(kind: str, d: int) -> float:
        calls.append((kind, d))
        return d * d if kind == "bf16" else 0.55 * d * d + overhead

    result = fp8_threshold.measure_fp8_threshold(tokens=4096, device=CUDA, timer=timer)
    assert result["faster_from"] == result["min_dim"] == 1280
    assert result["sizes"] == list(fp8_threshold.DEFAULT_SIZES)
    assert sorted(calls) == sorted((kind, d) for kind in ("bf16", "fp8") for d in fp8_threshold.DEFAULT_SIZES)
    assert result["speedup"]["1024"] < 1 < result["speedup"]["1280"]
    assert result["speedup"]["4096"] == pytest.approx(4096**2 / (0.55 * 4096**2 + overhead))
    assert (result["backend"], result["recipe"], result["tokens"]) == ("torchao", "tensorwise", 4096)


def test_measure_takes_the_last_dip_and_handles_no_crossover(gpu, cache):
    sizes = (512, 1024, 2048, 4096)
    bumpy = fp8_threshold.measure_fp8_threshold(
        sizes, device=CUDA, timer=_fake_timer({512: 0.8, 1024: 1.1, 2048: 0.95, 4096: 1.3})
    )
    assert bumpy["faster_from"] == bumpy["min_dim"] == 4096
    never = fp8_threshold.measure_fp8_threshold(sizes, device=CUDA, timer=_fake_timer(dict.fromkeys(sizes, 0.9)))
    assert never["faster_from"] is None and never["min_dim"] == 4097
    always = fp8_threshold.measure_fp8_threshold(sizes, device=CUDA, timer=_fake_timer(dict.fromkeys(sizes, 1.2)))
    assert always["min_dim"] == 512
    assert fp8_threshold.crossover([512, 1024], [1.0, 1.01]) == 1024  # equal time is not faster


def test_measure_refuses_unaligned_sizes(gpu, cache):
    with pytest.raises(UserError, match="multiples of 16"):
        fp8_threshold.measure_fp8_threshold((512, 1000), device=CUDA, timer=_fake_timer({512: 1, 1000: 1}))
    gpu(backends=("te",))
    with pytest.raises(UserError, match="multiples of 32"):
        fp8_threshold.measure_fp8_threshold(
            (512, 528), device=CUDA, timer=_fake_timer({512: 1, 528: 1}), config=Fp8Config(recipe="mxfp8")
        )


def test_min_dim_precedence_explicit_then_cached_then_default(gpu, cache):
    assert fp8.resolve_min_dim(Fp8Config(), CUDA) == fp8.DEFAULT_MIN_DIM == 1025
    fp8_threshold.measure_fp8_threshold(
        (768, 1536, 3072), device=CUDA, timer=_fake_timer({768: 0.9, 1536: 1.1, 3072: 1.4})
    )
    assert fp8.resolve_min_dim(Fp8Config(), CUDA) == 1536
    assert fp8.resolve_min_dim(Fp8Config(min_dim=2048), CUDA) == 2048
    assert fp8._resolve_min_dim(Fp8Config(), CUDA, "torchao", "tensorwise") == (1536, "measured")
    # The measurement holds for its recipe only.
    assert fp8.resolve_min_dim(Fp8Config(recipe="rowwise"), CUDA) == 1025


def test_cache_round_trip_keeps_other_entries(gpu, cache):
    fp8_threshold.measure_fp8_threshold((512, 1024), device=CUDA, timer=_fake_timer({512: 0.9, 1024: 1.2}))
    fp8_threshold.measure_fp8_threshold(
        (512, 1024), device=CUDA, timer=_fake_timer({512: 1.1, 1024: 1.2}), config=Fp8Config(recipe="rowwise")
    )
    data = json.loads(cache.read_text())
    tensorwise = fp8.threshold_cache_key(CUDA, "torchao", "tensorwise")
    rowwise = fp8.threshold_cache_key(CUDA, "torchao", "rowwise")
    assert set(data) == {tensorwise, rowwise}
    assert data[tensorwise]["min_dim"] == 1024 and data[rowwise]["min_dim"] == 512
    assert data[tensorwise]["speedup"] == {"512": pytest.approx(0.9), "1024": pytest.approx(1.2)}
    assert "torch " + torch.__version__ in tensorwise and tensorwise.endswith("|tensorwise")
    assert not list(cache.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", "", '{"KEY": {"min_dim": "big"}}', '{"KEY": {"min_dim": -5}}', '{"KEY": {"min_dim": 1.5}}'],
)
def test_corrupt_cache_is_ignored(gpu, cache, content):
    key = fp8.threshold_cache_key(CUDA, "torchao", "tensorwise")
    cache.write_text(content.replace("KEY", key))
    assert fp8.resolve_min_dim(Fp8Config(), CUDA) == 1025
    fp8_threshold.measure_fp8_threshold((512, 1024), device=CUDA, timer=_fake_timer({512: 0.9, 1024: 1.2}))
    assert fp8.resolve_min_dim(Fp8Config(), CUDA) == 1024


# --- TE helpers ---------------------------------------------------------------------------------------------------


def test_pad_rows():
    x = torch.arange(10 * 3, dtype=torch.float32).reshape(10, 3)
    padded = fp8.pad_rows(x, 16)
    assert padded.shape == (16, 3)
    assert torch.equal(padded[:10], x) and not padded[10:].any()
    aligned = torch.zeros(32, 3)
    assert fp8.pad_rows(aligned, 16) is aligned


class _ExtraStateLinear(nn.Linear):
    """Stands in for te.Linear: same weight and bias keys plus `_extra_state`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loaded_extra = None

    def get_extra_state(self):
        return torch.tensor([7, 8, 9], dtype=torch.uint8)

    def set_extra_state(self, state):
        self.loaded_extra = state


def _pair(extra: bool) -> nn.Sequential:
    layer = _ExtraStateLinear if extra else nn.Linear
    return nn.Sequential(layer(8, 8), nn.ReLU(), layer(8, 4))


def test_extra_state_is_split_off_and_loads_across_fp8_and_plain_models():
    torch.manual_seed(0)
    te_like = _pair(extra=True)
    weights, extra = fp8_state.split_extra_state(te_like.state_dict())
    assert set(weights) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert set(extra) == {"0._extra_state", "2._extra_state"}

    plain = _pair(extra=False)
    fp8_state.load_weights(plain, weights, extra)  # FP8 checkpoint into a bf16 model: extra state dropped
    assert torch.equal(plain[0].weight, te_like[0].weight)

    target = _pair(extra=True)
    fp8_state.load_weights(target, plain.state_dict())  # bf16 checkpoint into an FP8 model: no extra state to load
    assert torch.equal(target[2].bias, te_like[2].bias) and target[0].loaded_extra is None
    fp8_state.load_weights(target, weights, extra)
    assert torch.equal(target[0].loaded_extra, torch.tensor([7, 8, 9], dtype=torch.uint8))

    with pytest.raises(RuntimeError, match=r"missing \['2.bias'\]"):
        fp8_state.load_weights(plain, {k: v for k, v in weights.items() if k != "2.bias"})
    with pytest.raises(RuntimeError, match=r"unexpected \['3.weight'\]"):
        fp8_state.load_weights(plain, {**weights, "3.weight": torch.zeros(1)})


# --- torchao end to end (only where torchao is installed; it is not a dependency) --------------------------------


def test_torchao_conversion_end_to_end(gpu, cache):
    pytest.importorskip("torchao.float8")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 48), nn.GELU(), nn.Linear(48, 8))
    keys = set(model.state_dict())
    x = torch.randn(40, 32)
    with precision.autocast("bf16", CPU):
        expected = model(x).float()

    report = fp8.prepare_fp8(model, Fp8Config(min_dim=32), CPU)
    assert report.backend == "torchao" and report.recipe == "tensorwise" and report.min_dim_source == "config"
    assert report.converted == ["0", "2"] and set(report.skipped) == {"4"}
    assert report.flop_fraction == pytest.approx((32 * 64 + 64 * 48) / (32 * 64 + 64 * 48 + 48 * 8))
    assert type(model[0]).__name__ == "Float8Linear" and type(model[4]) is nn.Linear
    assert set(model.state_dict()) == keys

    with precision.autocast("fp8", CPU, fp8=report):
        out = model(x)
    out.float().square().mean().backward()
    assert (out.float() - expected).abs().max() < 0.1 * expected.abs().max()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# --- the TE path against a stand-in with TE's documented API (te.Linear, te.autocast, recipe classes) ----------------


class _StandInTeLinear(nn.Module):
    """transformer_engine.pytorch.Linear's documented constructor, parameter names and row assertion."""

    def __init__(self, in_features, out_features, bias=True, *, params_dtype=None, device="cuda"):
        super().__init__()
        self.in_features, self.out_features, self.use_bias = in_features, out_features, bias
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=params_dtype, device=device))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, dtype=params_dtype, device=device))
        else:
            self.bias = torch.Tensor().to(dtype=params_dtype, device=device)  # what TE does: not a parameter
        nn.init.normal_(self.weight, std=0.023)

    def forward(self, inp, is_first_microbatch=None):
        assert math.prod(inp.shape[:-1]) % 8 == 0, "FP8 execution requires the rows to be divisible by 8"
        return nn.functional.linear(inp, self.weight, self.bias if self.use_bias else None)

    def get_extra_state(self):
        return torch.zeros(0, dtype=torch.uint8)

    def set_extra_state(self, state):
        pass


@pytest.fixture
def stand_in_te(monkeypatch):
    """Installs stand-ins for transformer_engine.pytorch and transformer_engine.common.recipe; returns the log."""
    log = []

    @contextlib.contextmanager
    def te_autocast(enabled=True, calibrating=False, recipe=None, amax_reduction_group=None):
        log.append(("enter", enabled, recipe, torch.is_autocast_enabled("cpu")))
        yield
        log.append(("exit",))

    class Float8CurrentScaling:
        pass

    class DelayedScaling:
        pass

    pytorch = ModuleType("transformer_engine.pytorch")
    pytorch.Linear, pytorch.autocast = _StandInTeLinear, te_autocast
    recipe = ModuleType("transformer_engine.common.recipe")
    recipe.Float8CurrentScaling, recipe.DelayedScaling = Float8CurrentScaling, DelayedScaling
    for name, module in [("transformer_engine.pytorch", pytorch), ("transformer_engine.common.recipe", recipe)]:
        monkeypatch.setitem(sys.modules, name, module)
    fp8._padded_te_linear.cache_clear()
    yield SimpleNamespace(log=log, recipe=recipe)
    fp8._padded_te_linear.cache_clear()


def test_te_conversion_keeps_weights_names_and_pads_rows(gpu, cache, stand_in_te):
    gpu(backends=("te", "torchao"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 48), nn.GELU(), nn.Linear(48, 64, bias=False), nn.GELU(), nn.Linear(64, 8))
    model[2].weight.requires_grad_(False)  # a frozen layer stays frozen
    x = torch.randn(3, 7, 32)  # 21 rows: TE would refuse them unpadded
    expected = model(x)
    keys = set(model.state_dict())

    report = fp8.prepare_fp8(model, Fp8Config(min_dim=32), CPU)
    assert (report.backend, report.recipe, report.converted) == ("te", "current", ["0", "2"])
    assert isinstance(report.te_recipe, stand_in_te.recipe.Float8CurrentScaling)
    assert isinstance(model[0], _StandInTeLinear) and type(model[4]) is nn.Linear
    assert not model[2].weight.requires_grad and model[0].weight.requires_grad

    weights, extra = fp8_state.split_extra_state(model.state_dict())
    assert set(weights) == keys and set(extra) == {"0._extra_state", "2._extra_state"}
    torch.testing.assert_close(model(x), expected)  # padded to 32 rows and sliced back

    with precision.autocast("fp8", CPU, fp8=report):
        model(x)
    assert stand_in_te.log == [("enter", True, report.te_recipe, True), ("exit",)]


def test_te_delayed_recipe_and_old_autocast_name(gpu, cache, stand_in_te):
    gpu(backends=("te",))
    old_api = sys.modules["transformer_engine.pytorch"]
    calls = []
    del old_api.autocast
    old_api.fp8_autocast = lambda enabled, fp8_recipe: calls.append((enabled, fp8_recipe)) or contextlib.nullcontext()
    del stand_in_te.recipe.Float8CurrentScaling  # a TE 1.x: no current scaling, so auto means delayed
    report = fp8.prepare_fp8(nn.Sequential(nn.Linear(2048, 2048)), Fp8Config(), CPU)
    assert (report.recipe, report.min_dim, report.min_dim_source) == ("delayed", 1025, "default")
    with report.quantization_context():
        pass
    assert calls == [(True, report.te_recipe)]
