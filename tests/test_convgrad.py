"""GemmGradConv2d: the same convolution as nn.Conv2d, its bf16 CPU weight gradient from a
GEMM when the output is tiny (convgrad.py); TinyConvGrads applies it during a fit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from countnet_classify.convgrad import (
    GemmGradConv2d,
    TinyConvGrads,
    restore_convs,
    swap_convs,
)

# (in, out, kernel, stride, padding, bias, input size): outputs of 1 to 4 positions.
CASES = [
    (16, 24, 3, 1, 1, False, 2),  # ResNet's last stage at 64 px
    (8, 16, 3, 2, 1, True, 4),  # the stage's strided first conv
    (8, 16, 1, 2, 0, False, 4),  # its 1x1 downsample
    (6, 10, 3, 1, 0, True, 3),  # no padding: a 1x1 output
    (5, 7, (3, 1), (1, 2), (1, 0), True, (2, 3)),  # rectangular everything
]


def _pair(conv_args, channels_last):
    torch.manual_seed(0)
    ci, co, k, s, p, bias, hw = conv_args
    ref = nn.Conv2d(ci, co, k, s, p, bias=bias)
    gemm = copy.deepcopy(ref)
    swap_convs(gemm)
    h, w = (hw, hw) if isinstance(hw, int) else hw
    x = torch.randn(6, ci, h, w)
    if channels_last:
        ref, gemm = (m.to(memory_format=torch.channels_last) for m in (ref, gemm))
        x = x.contiguous(memory_format=torch.channels_last)
    return ref, gemm, x


def _step(conv, x, seed=1):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    torch.manual_seed(seed)
    y.backward(torch.randn(y.shape).to(y.dtype))  # the same numbers whatever y's layout
    grads = [x.grad] + [p.grad for p in conv.parameters()]
    return y, grads


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_bf16_gradients_are_the_convolutions(case, channels_last):
    ref, gemm, x = _pair(case, channels_last)
    assert type(gemm) is GemmGradConv2d
    y_ref, g_ref = _step(ref, x)
    y, g = _step(gemm, x)
    assert "GemmGradConv" in y.grad_fn.name()  # the GEMM path was taken
    assert y.dtype == torch.bfloat16 and torch.equal(y, y_ref)  # the forward is PyTorch's
    assert torch.equal(g[0], g_ref[0])  # so is the input gradient
    for got, want, p in zip(g[1:], g_ref[1:], gemm.parameters(), strict=True):
        assert got.dtype == p.dtype == torch.float32 and got.shape == p.shape
        assert torch.allclose(got, want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
    # Against exact sums over the same bf16-rounded operands: GEMM rounding only.
    xb = x.to(torch.bfloat16).double().requires_grad_()
    wb = gemm.weight.detach().to(torch.bfloat16).double().requires_grad_()
    y64 = torch.nn.functional.conv2d(xb, wb, None, gemm.stride, gemm.padding)
    torch.manual_seed(1)
    y64.backward(torch.randn(y64.shape).to(torch.bfloat16).double())
    scale = wb.grad.abs().max().item()
    assert (g[1].double() - wb.grad).abs().max().item() <= 1e-2 * scale


def test_other_calls_are_nn_conv2d_unchanged():
    """Larger outputs, fp32, float64, inference: PyTorch's own convolution, bit for bit."""
    ref, gemm, x = _pair((8, 8, 3, 1, 1, False, 3), channels_last=True)  # 9 positions
    y, _ = _step(gemm, x)
    assert "GemmGradConv" not in y.grad_fn.name()
    ref, gemm, x = _pair(CASES[0], channels_last=True)
    y_ref = ref(x)
    y = gemm(x)  # fp32 training step
    assert "GemmGradConv" not in y.grad_fn.name() and torch.equal(y, y_ref)
    y.sum().backward()
    y_ref.sum().backward()
    assert torch.equal(gemm.weight.grad, ref.weight.grad)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(gemm(x), ref(x))
    ref64, gemm64 = ref.double(), gemm.double()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast leaves float64 alone
        y = gemm64(x.double())
        assert y.dtype == torch.float64 and "GemmGradConv" not in y.grad_fn.name()
        assert torch.equal(y, ref64(x.double()))


def test_swap_keeps_parameters_and_restores_plain_modules():
    from torchvision.models import resnet18

    model = resnet18(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    swapped = swap_convs(model)
    assert len(swapped) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 20
    assert model.state_dict().keys() == before.keys()
    restore_convs(swapped)
    assert all(type(m) is nn.Conv2d for m in swapped)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_cpu_bf16_fit_takes_gemm_weight_gradients_and_fp32_does_not(monkeypatch):
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    from countnet_classify import devices as prec
    from countnet_classify.callbacks.precision import apply_precision

    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)  # whatever CI runs on

    def fit(precision):
        torch.manual_seed(0)
        ds = list(zip(torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,)), strict=True))
        dls = DataLoaders.from_dsets(ds, ds, bs=8, device="cpu")
        tiny = nn.Conv2d(4, 6, 3, 2, 1)  # 8 px -> 4x4 -> 2x2: 4 positions
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), tiny, nn.Flatten(), nn.Linear(24, 2)
        )
        seen = []  # (class, grad_fn) of the tiny conv in each training forward
        tiny.register_forward_hook(
            lambda m, a, out: seen.append((type(m).__name__, out.grad_fn.name()))
            if torch.is_grad_enabled() else None
        )  # fmt: skip
        learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss())
        apply_precision(learn, precision, torch.device("cpu"), channels_last=True)
        with learn.no_logging(), learn.no_bar():
            learn.fit(1, 1e-3)
        assert all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))
        return seen

    bf16 = fit("bf16")
    assert len(bf16) == 2 and all(
        kind == "GemmGradConv2d" and "GemmGradConv" in fn for kind, fn in bf16
    )
    fp32 = fit("fp32")
    assert len(fp32) == 2 and all(
        kind == "Conv2d" and "GemmGradConv" not in fn for kind, fn in fp32
    )


def test_apply_precision_adds_it_for_native_cpu_bf16_only(monkeypatch):
    """Measured on CPUs with native bf16 only; fp32 stays as it was (it must reproduce
    earlier runs)."""
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    from countnet_classify import devices
    from countnet_classify.callbacks.precision import apply_precision

    ds = [(torch.randn(3, 8, 8), 0)] * 4
    dls = DataLoaders.from_dsets(ds, ds, bs=2, device="cpu")
    found = {}
    for native in (True, False):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        for precision in ("bf16", "fp32"):
            learn = Learner(dls, nn.Conv2d(3, 2, 8), loss_func=nn.CrossEntropyLoss())
            apply_precision(learn, precision, torch.device("cpu"), channels_last=False)
            found[native, precision] = any(isinstance(cb, TinyConvGrads) for cb in learn.cbs)
    assert found == {
        (True, "bf16"): True, (True, "fp32"): False, (False, "bf16"): False, (False, "fp32"): False
    }  # fmt: skip


def test_a_fit_that_raised_is_restored_by_the_next():
    """fastai skips after_fit when a fit raises: the next fit's end restores the modules."""
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    class Boom(Callback):
        def after_batch(self):
            raise RuntimeError("boom")

    ds = [(torch.randn(3, 8, 8), 0)] * 4
    dls = DataLoaders.from_dsets(ds, ds, bs=2, device="cpu")
    model = nn.Sequential(nn.Conv2d(3, 2, 3, 2, 1), nn.Conv2d(2, 2, 3, 2, 1), nn.Flatten())
    learn = Learner(dls, model, loss_func=lambda out, y: out.sum(), cbs=[TinyConvGrads()])
    with learn.no_logging(), learn.no_bar():
        with pytest.raises(RuntimeError, match="boom"):
            learn.fit(1, 1e-3, cbs=[Boom()])
        assert {type(m) for m in model} == {GemmGradConv2d, nn.Flatten}  # left swapped
        learn.fit(1, 1e-3)
    assert {type(m) for m in model} == {nn.Conv2d, nn.Flatten}
