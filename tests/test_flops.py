"""FLOP counting: known layers give their textbook counts; a model's step count is linear in the batch; MFU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amt_core.train.flops import BF16_PEAK_TFLOPS, StepFlops, bf16_peak_tflops, count_flops, count_step_flops, mfu


def test_linear_layer_forward_and_backward_flops():
    batch, d_in, d_out = 8, 64, 32
    layer = nn.Linear(d_in, d_out)
    x = torch.randn(batch, d_in, requires_grad=True)
    forward, backward = count_flops(lambda: layer(x).sum())
    assert forward == 2 * batch * d_in * d_out
    # input gradient and weight gradient: two matmuls of the forward's size
    assert backward == 2 * (2 * batch * d_in * d_out)


def test_frozen_linear_layer_backward_skips_the_weight_gradient():
    layer = nn.Linear(16, 16).requires_grad_(False)
    x = torch.randn(4, 16, requires_grad=True)
    forward, backward = count_flops(lambda: layer(x).sum())
    assert backward == forward == 2 * 4 * 16 * 16


def test_convolution_flops():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    x = torch.randn(2, 3, 10, 10)
    forward, _ = count_flops(lambda: conv(x).sum())
    # each output value: 3 * 3 * 3 multiply-adds
    assert forward == 2 * (2 * 8 * 10 * 10) * (3 * 3 * 3)


def test_attention_math_flops_are_the_two_batched_products():
    from amt_core.models.attention import attention_math

    b, h, n, d = 2, 4, 10, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    forward, backward = count_flops(lambda: attention_math(q, k, v)[0].sum())
    assert forward == 2 * (2 * b * h * n * n * d)
    assert backward == 2 * forward  # dq, dk from the scores' product; dv, dprobs from the output's


def test_model_step_flops_are_linear_in_the_batch_and_counted_for_every_preset_path():
    from amt_core.models import create_model

    torch.manual_seed(0)
    from amt_core.accel.attention import attention_backend_of, set_attention_backend

    model = create_model("amt_micro")
    set_attention_backend(model, "sdpa")
    before = attention_backend_of(model)
    K = torch.tensor([[77.0, 0.0, 32.0], [0.0, 77.0, 32.0], [0.0, 0.0, 1.0]]).expand(3, 3, 3).clone()
    batch = {"image": torch.rand(3, 3, 64, 64), "K": K}
    flops = count_step_flops(model, None, batch)
    assert flops.forward_per_image > 0 and flops.backward_per_image > flops.forward_per_image
    # the backbone alone accounts for a known share: its first convolution we can count by hand
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    outputs = (64 // first.stride[0]) ** 2
    assert flops.forward_per_image > 2 * outputs * first.in_channels * first.out_channels * first.kernel_size[0] ** 2
    # the count runs the math attention path (SDPA's fused CPU kernel is not an op the counter knows) and restores
    # the model's backend afterwards
    assert attention_backend_of(model) == before
    assert all(p.grad is None for p in model.parameters())
    set_attention_backend(model, "math")
    forward3, backward3 = count_flops(lambda: model(batch).joints3d.float().square().sum())
    assert forward3 + backward3 == pytest.approx(flops.total(3), rel=0.02)


def test_mfu_and_peaks():
    assert mfu(494.7e12, 989.4) == pytest.approx(0.5)
    assert mfu(1e12, None) is None
    assert bf16_peak_tflops(torch.device("cpu")) is None
    names = [key for key, _ in BF16_PEAK_TFLOPS]
    # a more specific name is matched before the name it contains
    for i, key in enumerate(names):
        assert not any(other.lower() in key.lower() for other in names[:i] if other != key), key
    assert StepFlops(forward_per_image=1.0, backward_per_image=2.0, fixed=5.0).total(4) == 17.0
