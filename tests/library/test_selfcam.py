"""Self-CAM labels (SPEC.md, "Self-CAM labels"): equal to a hand computation of steps 1-5 from the
features of the training forward, with its fallback and unchanged cases; kappa 0 is the operator's
own step bit for bit; no gradient through the targets, no host read; every operator, bf16 autocast,
channels_last, a DDP wrapper; every error path."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from typing import Callable, Dict, Tuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import gen, no_host_reads
from randsaliencymix import (
    CutMix,
    GuidedMixup,
    MixParams,
    MixUp,
    RandSaliencyMix,
    SaliencyMix,
    SelfCAMLabels,
    source_share,
)
from randsaliencymix.integrations.timm import Mixup as TimmMixup
from randsaliencymix.selfcam import self_cam_weights

K = 5
D = 6


class Net(nn.Module):
    """conv features F (B, D, h, w) at stride 4, global average pool, linear head."""

    def __init__(self, classes: int = K) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, D, 4, stride=4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(D, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(self.features(x))))


def batch(b: int = 8, size: int = 16, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.randint(0, K, (b,), generator=g)


def net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def hand_weights(model: Net, images: torch.Tensor, params: MixParams, y: torch.Tensor, kappa: float) -> torch.Tensor:
    """SPEC's steps 1-5, one sample at a time, in float64, from the pixels of each box."""
    feats = model.features(images).detach().double()
    w = model.fc.weight.detach().double()
    b, _, h, wd = feats.shape
    height, width = params.image_size
    out = params.source_weight.clone()
    for i in range(b):
        share = torch.zeros(height, width, dtype=torch.float64)
        if params.share_map is not None:
            share = params.share_map[i, 0].double().clone()
        elif bool(params.mixup[i]):
            share[:] = 1.0 - float(params.lam[i])
        else:
            r1, c1, r2, c2 = (int(v) for v in params.dst_boxes[i])
            share[r1:r2, c1:c2] = float(params.eta[i])
        if not bool(params.applied[i]):
            share[:] = 0.0
        a, src = int(y[i]), int(y[int(params.perm[i])])
        if a == src or not bool(params.applied[i]) or float(share.max()) == float(share.min()):
            continue  # step 5: unchanged
        s = share.reshape(h, height // h, wd, width // wd).mean(dim=(1, 3))  # step 1: area average
        act_a = (w[a][:, None, None] * feats[i]).sum(0).clamp(min=0)  # step 2
        act_b = (w[src][:, None, None] * feats[i]).sum(0).clamp(min=0)
        e_b, e_a = float((s * act_b).sum()), float(((1 - s) * act_a).sum())  # step 3
        w_cam = e_b / (e_a + e_b) if e_a + e_b > 0 else float(share.mean())
        out[i] = (1 - kappa) * float(params.source_weight[i]) + kappa * w_cam  # step 4
    return out


def one_step(op, model, x, y, kappa=0.5, **kw):
    labeler = SelfCAMLabels(model, kappa=kappa)
    step = labeler.step(op, x, y, **kw)
    model(step.images)
    return step


OPERATORS: Dict[str, Callable[[], nn.Module]] = {
    "cutmix-batch": lambda: CutMix(num_classes=K),
    "cutmix-sample": lambda: CutMix(num_classes=K, mode="sample"),
    "saliencymix-per-sample": lambda: SaliencyMix(num_classes=K, variant="per_sample"),
    "saliencymix-official": lambda: SaliencyMix(num_classes=K, variant="official"),
    "randsaliencymix": lambda: RandSaliencyMix(num_classes=K, p=1.0, tau_src=1.0, tau_dst=1.0, gamma=0.5),
    "randsaliencymix-noise": lambda: RandSaliencyMix(num_classes=K, p=1.0, patch_noise=0.3, label_smoothing=0.1),
    "guidedmixup": lambda: GuidedMixup(num_classes=K, p=1.0),
    "timm": lambda: TimmMixup(num_classes=K, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1),
    "timm-rsm": lambda: TimmMixup(num_classes=K, mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_op="randsaliencymix"),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("kappa", [0.5, 1.0])
def test_equals_the_hand_computation(name: str, kappa: float) -> None:
    op, model = OPERATORS[name](), net(1)
    x, y = batch(16, 16, seed=2)
    step = one_step(op, model, x, y, kappa, generator=gen(3))
    want = hand_weights(model, step.images, step.params, y, kappa)
    soft = F.one_hot(y, K).double() * (1 - op.label_smoothing) + op.label_smoothing / K
    expected = soft + want[:, None] * (soft[step.params.perm] - soft)
    torch.testing.assert_close(step.targets.double(), expected, atol=2e-6, rtol=0)
    # the images are the operator's own, from the same draws
    images, _ = op(x, y, generator=gen(3))
    assert torch.equal(images, step.images)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_kappa_zero_is_the_operators_step_bit_for_bit(name: str) -> None:
    op, model = OPERATORS[name](), net()
    x, y = batch(12, 16)
    step = one_step(op, model, x, y, 0.0, generator=gen(5))
    images, targets = op(x, y, generator=gen(5))
    assert torch.equal(step.images, images) and torch.equal(step.targets, targets)


def test_unchanged_cases_keep_the_operators_labels() -> None:
    """Equal classes, unapplied samples, MixUp samples and a box over the whole image: unchanged."""
    x, _ = batch(8, 16)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    model, op = net(), CutMix(num_classes=K)
    base = op.sample_params(x, y, generator=gen(0))
    n = 8
    full = torch.tensor([0, 0, 16, 16]).repeat(n, 1)
    params = replace(
        base,
        perm=torch.tensor([1, 0, 3, 2, 4, 6, 5, 7]),  # 0<->1 and 2<->3 share a class; 4, 7 their own source
        applied=torch.tensor([True, True, True, True, True, True, False, True]),
        mixup=torch.tensor([False, False, False, False, False, True, False, False]),
        src_boxes=full,
        dst_boxes=full,
        lam=torch.full((n,), 0.4, dtype=torch.float64),
        eta=torch.full((n,), 0.7, dtype=torch.float64),
        source_weight=torch.full((n,), 0.3, dtype=torch.float64),
        blended=True,
    )
    step = one_step(op, model, x, y, 1.0, params=params)
    _, targets = op.apply_params(x, y, params)
    assert torch.equal(step.targets, targets)


def test_fallback_is_the_applied_area_weight_when_no_class_is_seen() -> None:
    model, op = net(), CutMix(num_classes=K)
    with torch.no_grad():
        model.fc.weight.zero_()  # A_a = A_b = 0: E_a + E_b == 0
    x, y = batch(16, 16, seed=4)
    step = one_step(op, model, x, y, 1.0, generator=gen(1))
    share = source_share(step.params, 16, 16, torch.float64).mean(dim=(1, 2, 3))
    classes_differ = y != y[step.params.perm]
    w = torch.where(classes_differ & step.params.applied, share, step.params.source_weight)
    soft = F.one_hot(y, K).float()
    torch.testing.assert_close(step.targets, torch.lerp(soft, soft[step.params.perm], w.float()[:, None]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kappa=st.floats(0.0, 1.0), b=st.integers(1, 9), smooth=st.sampled_from([0.0, 0.1]))
def test_targets_are_distributions_between_the_two_classes(seed: int, kappa: float, b: int, smooth: float) -> None:
    model = net(seed % 7)
    x, y = batch(b, 16, seed=seed)
    op = RandSaliencyMix(num_classes=K, p=0.8, label_smoothing=smooth)
    step = one_step(op, model, x, y, kappa, generator=gen(seed))
    t = step.targets
    torch.testing.assert_close(t.sum(dim=1), torch.ones(b), atol=1e-6, rtol=0)
    assert bool((t >= 0).all())
    # all mass outside the two classes is the smoothing's
    other = torch.ones_like(t, dtype=torch.bool)
    other[torch.arange(b), y] = False
    other[torch.arange(b), y[step.params.perm]] = False
    torch.testing.assert_close(t[other], torch.full_like(t[other], smooth / K))


def test_probability_labels_use_their_argmax_as_the_class() -> None:
    model, op = net(), CutMix(num_classes=K)
    x, y = batch(8, 16, seed=6)
    soft = F.one_hot(y, K).float() * 0.8 + 0.2 / K
    a = one_step(op, model, x, soft, 0.5, generator=gen(2)).targets
    b = one_step(op, model, x, y, 0.5, generator=gen(2))
    # the same weights: rebuild from the soft rows with the index path's weights
    w = (b.targets - F.one_hot(y, K).float())[torch.arange(8), y[b.params.perm]]
    same = y != y[b.params.perm]
    expected = torch.lerp(soft, soft[b.params.perm], torch.where(same, w, 0.0)[:, None])
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=0)


def test_no_gradient_flows_through_the_targets() -> None:
    model, op = net(), RandSaliencyMix(num_classes=K, p=1.0)
    x, y = batch(8, 16)
    x.requires_grad_(True)
    labeler = SelfCAMLabels(model, kappa=0.5)
    step = labeler.step(op, x, y, generator=gen(0))
    logits = model(step.images)
    assert not step.targets.requires_grad
    loss = -(step.targets * logits.log_softmax(1)).sum()
    loss.backward()
    assert x.grad is not None and model.fc.weight.grad is not None  # the mix and the model still learn


def test_no_host_reads_with_validate_false() -> None:
    model = net()
    x, y = batch(8, 16)
    for op in (CutMix(num_classes=K, validate=False), RandSaliencyMix(num_classes=K, p=1.0, validate=False)):
        labeler = SelfCAMLabels(model, kappa=0.5, validate=False)
        with no_host_reads():
            step = labeler.step(op, x, y, generator=gen(0))
            model(step.images)
            _ = step.targets


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_autocast_and_channels_last_weights_in_float32(memory_format, dtype) -> None:
    model = net().to(memory_format=memory_format)
    x, y = batch(8, 16)
    x = x.contiguous(memory_format=memory_format)
    op = CutMix(num_classes=K, mode="sample")
    labeler = SelfCAMLabels(model, kappa=1.0)
    step = labeler.step(op, x, y, generator=gen(0))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        model(step.images)
    assert step.targets.dtype == torch.float32
    want = hand_weights(model, step.images, step.params, y, 1.0)
    got = step.targets[torch.arange(8), y[step.params.perm]].double()
    differ = y != y[step.params.perm]
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got[differ], want[differ], atol=tol, rtol=0)


def test_zoo_models_and_a_ddp_wrapper(tmp_path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from rsmix.models import build_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = build_model("fast_resnet", K)
        x, y = torch.rand(4, 3, 64, 64), torch.randint(0, K, (4,))
        op = CutMix(num_classes=K, mode="sample")
        plain = one_step(op, model, x, y, 0.5, generator=gen(1)).targets
        wrapped = one_step(op, DistributedDataParallel(model), x, y, 0.5, generator=gen(1)).targets
        torch.testing.assert_close(plain, wrapped)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model, op = net(), CutMix(num_classes=K, mode="sample")
    x, y = batch(8, 16)
    cpu = one_step(op, model, x, y, 0.5, generator=gen(0))
    params = cpu.params.to("cuda")
    cuda = one_step(op.cuda(), model.cuda(), x.cuda(), y.cuda(), 0.5, params=params)
    torch.testing.assert_close(cuda.targets.cpu(), cpu.targets, atol=1e-5, rtol=0)


# -- errors ---------------------------------------------------------------------------------


def test_error_model_without_a_pooled_linear_head() -> None:
    model = nn.Sequential(nn.Conv2d(3, K, 16), nn.Flatten())
    x, y = batch(4, 16)
    step = SelfCAMLabels(model, kappa=0.5).step(CutMix(num_classes=K), x, y, generator=gen(0))
    model(step.images)
    with pytest.raises(ValueError, match=r"Expected a classifier whose head is global pooling then a linear layer"):
        _ = step.targets


def test_error_forward_on_another_tensor() -> None:
    model = net()
    x, y = batch(4, 16)
    step = SelfCAMLabels(model, kappa=0.5).step(CutMix(num_classes=K), x, y, generator=gen(0))
    model(step.images.clone())
    with pytest.raises(RuntimeError, match=r"Expected the model's input to be step.images itself"):
        _ = step.targets


def test_error_model_called_twice() -> None:
    model = net()
    x, y = batch(4, 16)
    step = SelfCAMLabels(model, kappa=0.5).step(CutMix(num_classes=K), x, y, generator=gen(0))
    model(step.images)
    model(step.images)
    with pytest.raises(RuntimeError, match=r"Expected one forward of the model .* but got 2 instead"):
        _ = step.targets


def test_error_targets_before_the_forward() -> None:
    step = SelfCAMLabels(net(), kappa=0.5).step(CutMix(num_classes=K), *batch(4, 16), generator=gen(0))
    with pytest.raises(RuntimeError, match=r"before reading step.targets, but got none instead"):
        _ = step.targets


def test_error_a_new_step_before_the_last_ones_targets() -> None:
    model = net()
    labeler = SelfCAMLabels(model, kappa=0.5)
    x, y = batch(4, 16)
    step = labeler.step(CutMix(num_classes=K), x, y, generator=gen(0))
    model(step.images)
    with pytest.raises(RuntimeError, match=r"previous step to be read before the next step"):
        labeler.step(CutMix(num_classes=K), x, y, generator=gen(0))


def test_error_params_of_another_batch() -> None:
    model, op = net(), CutMix(num_classes=K)
    x, y = batch(4, 16)
    other = op.sample_params(torch.rand(6, 3, 16, 16), generator=gen(0))
    with pytest.raises(ValueError, match=r"Expected params for a batch of 4, but got params for 6 instead"):
        SelfCAMLabels(model, kappa=0.5).step(op, x, y, params=other)
    small = op.sample_params(torch.rand(4, 3, 8, 8), generator=gen(0))
    with pytest.raises(ValueError, match=r"Expected params for 16x16 images"):
        SelfCAMLabels(model, kappa=0.5).step(op, x, y, params=small)


def test_error_head_of_another_class_count() -> None:
    model = Net(classes=K + 2)
    x, y = batch(4, 16)
    step = SelfCAMLabels(model, kappa=0.5).step(CutMix(num_classes=K), x, y, generator=gen(0))
    model(step.images)
    with pytest.raises(ValueError, match=rf"Expected a head with one row per class \({K}\), but got {K + 2}"):
        _ = step.targets


@pytest.mark.parametrize("kappa", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_error_kappa_out_of_range(kappa) -> None:
    with pytest.raises(ValueError, match=r"Expected kappa in \[0, 1\]"):
        SelfCAMLabels(net(), kappa=kappa)


def test_error_not_a_model_or_not_an_operator() -> None:
    with pytest.raises(TypeError, match=r"Expected model to be a torch.nn.Module, but got function instead"):
        SelfCAMLabels(lambda x: x, kappa=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Expected op to be a randsaliencymix Mixer, but got function instead"):
        SelfCAMLabels(net(), kappa=0.5).step(lambda x, y: (x, y), *batch(4, 16))  # type: ignore[arg-type]


def test_hooks_are_removed_after_the_targets() -> None:
    model = net()
    x, y = batch(4, 16)
    step = one_step(CutMix(num_classes=K), model, x, y)
    _ = step.targets
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_weights_function_is_float32_and_bounded() -> None:
    model, op = net(), MixUp(num_classes=K)
    x, y = batch(6, 16)
    params = op.sample_params(x, generator=gen(0))
    w, evidence = self_cam_weights(model.features(x), model.fc.weight, params, y)
    assert w.dtype == torch.float32 and w.shape == (6,) and not bool(evidence.any())  # MixUp: no evidence


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    size=st.sampled_from([(16, 16, 4, 4), (15, 17, 4, 5), (33, 20, 5, 3), (8, 8, 8, 8), (9, 9, 1, 1)]),
    op_name=st.sampled_from(["cutmix-sample", "randsaliencymix", "timm", "guidedmixup"]),
)
def test_the_share_on_the_feature_grid_is_the_area_average_of_the_applied_share(seed, size, op_name) -> None:
    """Boxes are averaged onto the features' grid from their edges (no full-size map): equal to
    adaptive average pooling of source_share, for grids that do not divide the image too."""
    from randsaliencymix.selfcam import _share

    height, width, h, w = size
    x = torch.rand(6, 3, height, width, generator=gen(seed))
    op = OPERATORS[op_name]()
    params = op.sample_params(x, torch.randint(0, K, (6,), generator=gen(seed)), generator=gen(seed + 1))
    s, area, varies = _share(params, h, w, torch.device("cpu"))
    full = source_share(params, height, width, torch.float64)
    torch.testing.assert_close(s.double(), F.adaptive_avg_pool2d(full, (h, w))[:, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(area.double(), full.mean(dim=(1, 2, 3)), atol=1e-6, rtol=0)
    flat = full.flatten(1)
    assert torch.equal(varies, flat.amax(dim=1) > flat.amin(dim=1))


def test_fp16_features_give_float32_weights() -> None:
    """fp16 autocast (CUDA) hands the head half-precision features: the weights are computed in float32."""
    model, op = net(), CutMix(num_classes=K, mode="sample")
    x, y = batch(8, 16)
    params = op.sample_params(x, y, generator=gen(0))
    feats = model.features(params_images := op(x, y, params=params)[0]).detach()
    assert params_images.shape == x.shape
    w32, e32 = self_cam_weights(feats, model.fc.weight, params, y)
    w16, e16 = self_cam_weights(feats.half(), model.fc.weight.half(), params, y)
    assert w16.dtype == torch.float32 and torch.equal(e16, e32)
    torch.testing.assert_close(w16, w32, atol=2e-3, rtol=0)
