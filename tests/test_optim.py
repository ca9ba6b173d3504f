"""FusedAdam is fastai's Adam: same updates under a fastai schedule, same weight-decay rule,
and an older checkpoint's fastai optimizer state carries over."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


def _learner(opt_func):
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    items = list(zip(x, y, strict=True))
    dls = DataLoaders(DataLoader(items, bs=8), DataLoader(items[:16], bs=8))
    model = _model()
    learn = Learner(
        dls, model, loss_func=nn.functional.cross_entropy, opt_func=opt_func,
        splitter=lambda m: [list(m[:2].parameters()), list(m[4].parameters())],
    )  # fmt: skip
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *a, **k: None
    return learn


def test_fused_adam_trains_like_fastais_adam_under_one_cycle():
    """Two parameter groups at discriminative LRs, one-cycle's LR and momentum schedule,
    fastai's default weight decay (none on BatchNorm and biases): the weights after 24 steps
    equal fastai's Adam's to float rounding, and they moved far more than that."""
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
    from fastai.optimizer import Adam

    from countnet_classify.optim import FusedAdam

    start = {n: p.detach().clone() for n, p in _model().named_parameters()}
    ref, fused = _learner(Adam), _learner(FusedAdam)
    for learn in (ref, fused):
        learn.fit_one_cycle(3, slice(1e-3, 3e-2))
    assert isinstance(fused.opt, FusedAdam) and fused.opt.opt.defaults["fused"]
    got, want = fused.model.state_dict(), ref.model.state_dict()
    for name, a in want.items():
        assert torch.allclose(a.float(), got[name].float(), atol=2e-5), name
    moved = max((want[k] - v).abs().max() for k, v in start.items())
    assert moved > 0.01


def test_fused_sgd_trains_like_fastais_sgd_with_l2():
    """--opt sgd is fastai's SGD with momentum and L2 weight decay (Caffe's solver): under
    one-cycle (LR and momentum cycled) at discriminative LRs, weights equal after 24 steps."""
    import functools

    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
    from fastai.optimizer import SGD

    from countnet_classify.optim import FusedSGD

    start = {n: p.detach().clone() for n, p in _model().named_parameters()}
    ref_opt = functools.partial(SGD, mom=0.9, wd=5e-4, decouple_wd=False)
    ref, fused = _learner(ref_opt), _learner(FusedSGD)
    for learn in (ref, fused):
        learn.fit_one_cycle(3, slice(1e-3, 5e-2))
    assert isinstance(fused.opt.opt, torch.optim.SGD)
    got, want = fused.model.state_dict(), ref.model.state_dict()
    for name, a in want.items():
        assert torch.allclose(a.float(), got[name].float(), atol=2e-5), name
    assert max((want[k] - v).abs().max() for k, v in start.items()) > 0.01


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_weight_decay_spares_batchnorm_and_biases(name):
    """With zero gradients Adam's step is zero and SGD's is lr*wd*p (L2 on the gradient,
    first step, no momentum yet), so what changes is weight decay alone: conv and linear
    weights shrink by exactly (1 - lr*wd); BatchNorm and biases do not."""
    from countnet_classify.optim import opt_func

    learn = _learner(opt_func(name))
    learn.create_opt()
    learn.opt.set_hypers(lr=0.1, wd=0.5)
    model = learn.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    learn.opt.step()
    for n, p in model.named_parameters():
        decayed = n in ("0.weight", "4.weight")
        want = before[n] * (1 - 0.1 * 0.5) if decayed else before[n]
        assert torch.allclose(p, want, atol=1e-7), n
        assert decayed == (not torch.equal(p, before[n])), n


def test_a_fastai_adam_checkpoint_resumes_into_fused_adam():
    """A run interrupted under countnet's former optimizer (fastai's Adam) resumes with its
    moments: converted, the next steps equal fastai's Adam continuing on its own."""
    from fastai.optimizer import Adam

    from countnet_classify.callbacks.checkpoint import _plain
    from countnet_classify.optim import FusedAdam, from_fastai_state

    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)

    def steps(model, opt, n):
        for _ in range(n):
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()

    m_ref = _model()
    ref = Adam(list(m_ref.parameters()), lr=1e-2)
    steps(m_ref, ref, 5)
    buf = io.BytesIO()  # through a file, as a checkpoint is: its own tensors, read weights-only
    torch.save(_plain(ref.state_dict()), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    m_new, m_cold = copy.deepcopy(m_ref), copy.deepcopy(m_ref)
    new = FusedAdam(list(m_new.parameters()), lr=1e-2)
    new.load_state_dict(from_fastai_state(saved, new))
    assert new.opt.state_dict()["state"][0]["step"].item() == 5
    steps(m_ref, ref, 5)
    steps(m_new, new, 5)
    steps(m_cold, FusedAdam(list(m_cold.parameters()), lr=1e-2), 5)  # the moments dropped
    for a, b in zip(m_ref.parameters(), m_new.parameters(), strict=True):
        assert (a - b).abs().max() < 5e-5  # float rounding; the steps move ~1e-2 each
    assert any(
        not torch.allclose(a, c, atol=1e-3)
        for a, c in zip(m_ref.parameters(), m_cold.parameters(), strict=True)
    )


@pytest.mark.parametrize("arch", ["resnet18", "lenet"])
def test_learners_use_fused_adam(arch):
    from countnet_classify.model import make_learner
    from countnet_classify.optim import FusedAdam

    dls = _learner(FusedAdam).dls
    dls.vocab, dls.c = ["a", "b", "c"], 3
    learn = make_learner(dls, arch, None, pretrained=False, loss_func=nn.CrossEntropyLoss())
    learn.create_opt()
    assert isinstance(learn.opt, FusedAdam)


def test_fused_adam_freezes_and_unfreezes_like_fastais_adam():
    """fine_tune's shape: a frozen phase (only BatchNorm trains in the body group, fastai's
    force_train), then unfrozen with a cleared state: the same weights as fastai's Adam."""
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
    from fastai.optimizer import Adam

    from countnet_classify.optim import FusedAdam

    ref, fused = _learner(Adam), _learner(FusedAdam)
    conv0 = fused.model[0].weight.detach().clone()
    for learn in (ref, fused):
        learn.freeze()
        learn.fit_one_cycle(1, 1e-2)
    assert torch.equal(fused.model[0].weight, conv0)  # frozen: the conv did not move
    assert not torch.equal(fused.model[1].weight, torch.ones(4))  # BatchNorm did
    for learn in (ref, fused):
        learn.unfreeze()
        learn.fit_one_cycle(1, slice(1e-3, 1e-2))
    assert not torch.equal(fused.model[0].weight, conv0)
    got = dict(fused.model.named_parameters())
    for name, a in ref.model.named_parameters():
        assert torch.allclose(a, got[name], atol=2e-5), name


def test_lr_finder_restores_the_fused_optimizer_state():
    """fastai's LR finder saves model and optimizer and loads them back; a failed load is
    only a warning in fastai, so warnings are errors here."""
    import warnings

    from fastai.callback.schedule import lr_find  # noqa: F401  (patches Learner)

    from countnet_classify.optim import FusedAdam

    learn = _learner(FusedAdam)
    before = {n: p.detach().clone() for n, p in learn.model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        learn.lr_find(num_it=6, show_plot=False)
    for n, p in learn.model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_loaded_moments_take_their_parameters_memory_layout():
    """The fused CPU kernel walks raw memory: moments saved in NCHW memory, loaded beside
    channels_last weights, must be re-laid out, or the update pairs the wrong elements."""
    from countnet_classify.optim import FusedAdam

    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 3, 3, 3, generator=g)
    state = {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 3, 3, 3, generator=g)}
    state["exp_avg_sq"] = torch.rand(4, 3, 3, 3, generator=g)
    grad = torch.randn(4, 3, 3, 3, generator=g)

    def stepped(weight_layout, moment_layout):
        p = nn.Parameter(w.clone().contiguous(memory_format=weight_layout))
        opt = FusedAdam([p], lr=1e-2)
        sd = opt.state_dict()
        sd["state"] = {
            0: {
                k: v.clone().contiguous(memory_format=moment_layout) if v.dim() == 4 else v.clone()
                for k, v in state.items()  # cloned: the kernel counts "step" up in place
            }
        }
        opt.load_state_dict(sd)
        p.grad = grad.clone().contiguous(memory_format=weight_layout)
        opt.step()
        return p.detach().contiguous()

    same = stepped(torch.channels_last, torch.channels_last)
    mixed = stepped(torch.channels_last, torch.contiguous_format)
    assert torch.allclose(same, stepped(torch.contiguous_format, torch.contiguous_format))
    assert torch.allclose(mixed, same)


def test_a_run_checkpointed_under_fastais_adam_resumes_through_restore_state(tmp_path):
    """The resume path as train() takes it: checkpoint.pt written with fastai's Adam (two
    parameter groups, BatchNorm without weight decay), read back weights-only by
    load_checkpoint, restored by RestoreState into a FusedAdam learner: its next epoch
    equals fastai's Adam's own next epoch."""
    from fastai.optimizer import Adam

    from countnet_classify.callbacks.checkpoint import (
        CHECKPOINT,
        RestoreState,
        _plain,
        load_checkpoint,
    )
    from countnet_classify.optim import FusedAdam

    ref = _learner(Adam)
    ref.fit(1, 1e-2)
    torch.save(
        {"epoch": 1, "model": ref.model.state_dict(), "opt": _plain(ref.opt.state_dict())},
        tmp_path / CHECKPOINT,
    )
    ckpt, _ = load_checkpoint(tmp_path)
    resumed = _learner(FusedAdam)
    resumed.model.load_state_dict(ckpt["model"])
    resumed.fit(1, 1e-2, cbs=[RestoreState(ckpt, optimizer=True)])
    ref.fit(1, 1e-2)
    got = dict(resumed.model.named_parameters())
    for name, a in ref.model.named_parameters():
        assert torch.allclose(a, got[name], atol=5e-5), name
    steps = {int(s["step"]) for s in resumed.opt.opt.state.values()}
    assert steps == {16}  # 8 batches before the checkpoint, 8 after: the moments carried on
