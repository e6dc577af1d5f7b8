"""Class activation maps (``cam.py``; SPEC.md, "Saliency sources"): equal to the hand computation from
each zoo model's features and head weights, found by structure (also for torchvision- and
timm-style heads), computed without changing the model's mode or BatchNorm statistics, without
reading a tensor's values on the host; and every error path."""

from __future__ import annotations

import copy
import re
from typing import Callable, Dict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import gen, no_host_reads
from randsaliencymix import cam_and_logits, class_activation_maps
from randsaliencymix.saliency import cam_from_features
from rsmix.models import build_model, wide_resnet

N_CLASSES = 7


def hand_cam(features: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor, size) -> torch.Tensor:
    """relu(sum_d W[c, d] F[i, d]), bilinear (align_corners=False) to size, divided by its max."""
    f, w = features.double(), weight.double()
    out = []
    for i in range(f.shape[0]):
        cam = (w[int(classes[i])][:, None, None] * f[i]).sum(0).clamp(min=0).detach()
        cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        peak = float(cam.max())
        out.append(cam / peak if peak > 0 else cam)
    return torch.stack(out)


# Each zoo model and the features its head pools, computed by hand from its submodules.
ZOO: Dict[str, Callable[[], nn.Module]] = {
    "fast_cnn": lambda: build_model("fast_cnn", N_CLASSES),
    "resnet18": lambda: build_model("resnet18", N_CLASSES),
    "preact_resnet18": lambda: build_model("preact_resnet18", N_CLASSES),
    "wrn": lambda: wide_resnet(10, 2, N_CLASSES, dropout=0.0),  # the WRN class at a test-sized depth
    "fast_resnet": lambda: build_model("fast_resnet", N_CLASSES),
    "resnet18_imagenet": lambda: build_model("resnet18_imagenet", N_CLASSES),
}


def features_of(name: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = model
    if name == "fast_cnn":
        return m.blocks(m.stem(x))
    if name == "resnet18":
        return m.stages(m.stem(x))
    if name == "preact_resnet18":
        return m.relu(m.final_bn(m.stages(m.stem(x))))
    if name == "wrn":
        return m.relu(m.final_bn(m.groups(m.stem(x))))
    return m.features(x)


def perturb_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so eval mode is not the identity."""
    g = gen(99)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)


# Every zoo model in eval mode; the cheaper ones also in train mode (batch statistics, and the
# running statistics a train-mode forward would update must come back unchanged).
CASES = [(name, False) for name in ZOO] + [(name, True) for name in ("fast_cnn", "wrn", "fast_resnet")]


@pytest.mark.parametrize("name, train", CASES, ids=[f"{n}-{'train' if t else 'eval'}" for n, t in CASES])
def test_cam_equals_the_hand_computation(name, train):
    torch.manual_seed(0)
    model = ZOO[name]()
    perturb_batchnorm(model)
    model.train(train)
    side = 64 if name in ("fast_resnet", "resnet18_imagenet") else 16
    x = torch.randn(2, 3, side, side, generator=gen(1))
    classes = torch.tensor([3, 6])
    state = copy.deepcopy(model.state_dict())
    maps, logits = cam_and_logits(model, x, classes)
    # No state changed: mode, every parameter and buffer (BN running statistics included).
    assert model.training == train
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state), "the CAM forward changed the model's state"
    # The hand computation, on a copy (a train-mode forward would update its statistics).
    twin = copy.deepcopy(model)
    with torch.no_grad():
        feats = features_of(name, twin, x)
        expected = hand_cam(feats, twin.fc.weight, classes, (side, side))
        expected_logits = twin(x)  # train mode normalises by the batch: the twin's statistics do not matter
    assert maps.shape == (2, side, side) and maps.dtype == torch.float32
    torch.testing.assert_close(maps.double(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-4)
    assert not logits.requires_grad
    assert bool((maps >= 0).all()) and bool((maps <= 1).all())


def test_predicted_classes_and_the_pure_function():
    model = build_model("fast_cnn", N_CLASSES).eval()
    x = torch.randn(4, 3, 16, 16, generator=gen(2))
    maps, logits = cam_and_logits(model, x, "predicted")
    torch.testing.assert_close(maps, class_activation_maps(model, x, logits.argmax(1)))
    # cam_from_features: an all-zero map stays zero; sizes equal to the feature map skip the resize.
    feats = torch.randn(2, 5, 4, 4, generator=gen(3))
    weight = torch.zeros(3, 5)
    weight[1] = torch.randn(5, generator=gen(4))
    zero = cam_from_features(feats, weight, torch.tensor([0, 1]), (4, 4))
    assert torch.equal(zero[0], torch.zeros(4, 4))
    torch.testing.assert_close(zero[1].double(), hand_cam(feats[1:], weight, torch.tensor([1]), (4, 4))[0])


class TorchvisionStyle(nn.Module):
    """torchvision's ResNet head: ``avgpool`` (AdaptiveAvgPool2d((1, 1))), ``torch.flatten``, ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.layer4 = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, N_CLASSES)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.layer4(self.conv(x))), 1))


class SelectPool(nn.Module):
    """timm's SelectAdaptivePool2d('avg', flatten=True): a module holding the pool and a Flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x):
        return self.flatten(self.pool(x))


class TimmStyle(nn.Module):
    """timm's ResNet head: ``global_pool`` (SelectAdaptivePool2d), dropout, ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.global_pool = SelectPool()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, N_CLASSES)

    def forward(self, x):
        return self.fc(self.drop(self.global_pool(self.body(x))))


@pytest.mark.parametrize("cls", [TorchvisionStyle, TimmStyle])
def test_torchvision_and_timm_heads_are_found_by_structure(cls):
    torch.manual_seed(0)
    model = cls().train()
    x = torch.randn(2, 3, 9, 9, generator=gen(5))
    maps = class_activation_maps(model, x, torch.tensor([1, 2]))
    with torch.no_grad():
        body = model.layer4(model.conv(x)) if cls is TorchvisionStyle else model.body(x)
    torch.testing.assert_close(maps.double(), hand_cam(body, model.fc.weight, torch.tensor([1, 2]), (9, 9)))
    assert model.training


# --------------------------------------------------------------------------------------------
# Error paths
# --------------------------------------------------------------------------------------------


class FunctionalPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, N_CLASSES)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


class ChannelsLastHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, N_CLASSES)

    def forward(self, x):
        return self.fc(x.permute(0, 2, 3, 1)).mean((1, 2))


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, N_CLASSES)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1)), x


HEAD = "Expected a classifier whose head is global pooling then a linear layer, but got {} instead."
BAD_MODELS = {
    "no-linear": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        "a model with no linear layer",
    ),
    "after-head": (
        lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, N_CLASSES), nn.Softmax(1)),
        "a model whose last linear layer is followed by Softmax",
    ),
    "mlp-head": (
        lambda: nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, N_CLASSES)
        ),
        "ReLU before the last linear layer",
    ),
    "local-pool": (
        lambda: nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * 16, N_CLASSES)),
        "AvgPool2d before the last linear layer",
    ),
    "functional-pool": (FunctionalPool, "a last linear layer fed by no module (pooling done functionally?)"),
    "linear-on-pixels": (ChannelsLastHead, "a last linear layer whose input has shape (2, 8, 8, 3)"),
    "tuple-output": (TupleOut, "a model whose output is tuple, not (B, K) logits"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_models_without_a_pooled_linear_head_are_refused(case):
    make, what = BAD_MODELS[case]
    with pytest.raises(ValueError, match=re.escape(HEAD.format(what))):
        class_activation_maps(make(), torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "classes, exc, msg",
    [
        (
            torch.tensor([0.0, 1.0]),
            TypeError,
            "Expected classes as an integer tensor of shape (B,) or 'predicted', but got torch.float32 instead.",
        ),
        (
            [0, 1],
            TypeError,
            "Expected classes as an integer tensor of shape (B,) or 'predicted', but got list instead.",
        ),
        (torch.tensor([0, 1, 2]), ValueError, "Expected classes of shape (2,), but got (3,) instead."),
        (
            torch.tensor([0, N_CLASSES]),
            ValueError,
            f"Expected classes in [0, {N_CLASSES - 1}], but got {N_CLASSES} instead.",
        ),
        ("target", ValueError, "Expected classes as a (B,) tensor or 'predicted', but got 'target' instead."),
    ],
    ids=["float", "list", "shape", "range", "string"],
)
def test_bad_classes_are_refused(classes, exc, msg):
    model = build_model("fast_cnn", N_CLASSES)
    with pytest.raises(exc, match=re.escape(msg)):
        class_activation_maps(model, torch.randn(2, 3, 16, 16), classes)


def test_bad_model_and_images_are_refused():
    with pytest.raises(TypeError, match=re.escape("Expected model to be a torch.nn.Module, but got function instead.")):
        class_activation_maps(lambda x: x, torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=re.escape("Expected a batch of shape (B, C, H, W), but got (3, 8, 8) instead.")
    ):
        class_activation_maps(build_model("fast_cnn", N_CLASSES), torch.randn(3, 8, 8), torch.tensor([0]))


def test_a_failed_forward_leaves_no_hook_and_restores_statistics():
    model = TorchvisionStyle().train()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(RuntimeError):
        class_activation_maps(model, torch.randn(2, 4, 8, 8), torch.tensor([0, 1]))  # 4 channels: conv fails
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _ShiftedHead(nn.Module):
    """Pools with a module, then changes the pooled features functionally before the linear head:
    the structure looks like pooling + linear, but the CAM of W·F would not be this model's."""

    def __init__(self, shift: float = -1.0, scale: float = 1.0, logit_scale: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.shift, self.scale, self.logit_scale = shift, scale, logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(self.pool(torch.relu(self.conv(x))), 1)
        return self.fc(pooled * self.scale + self.shift) * self.logit_scale


def test_a_functional_operation_between_pooling_and_head_is_refused():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 8, generator=gen(2))
    with pytest.raises(ValueError, match="not its last linear layer applied to the pooled features"):
        cam_and_logits(_ShiftedHead(shift=-1.0), x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="not its last linear layer"):
        cam_and_logits(_ShiftedHead(shift=0.0, scale=-2.0), x, torch.tensor([0, 1, 2]))
    # A positive factor on the logits does not change a CAM divided by its maximum (fast_cnn's
    # logit scale): accepted.
    maps, _ = cam_and_logits(_ShiftedHead(shift=0.0, logit_scale=3.0), x, torch.tensor([0, 1, 2]))
    assert maps.shape == (3, 8, 8)


def test_the_head_check_holds_under_bf16_autocast():
    torch.manual_seed(0)
    model = build_model("fast_resnet", 10).train()
    x = torch.randn(4, 3, 64, 64, generator=gen(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps, logits = cam_and_logits(model, x, torch.tensor([0, 1, 2, 3]))
    assert maps.dtype == torch.float32 and float(maps.amax()) <= 1.0 and logits.shape == (4, 10)


CAM_FROM_FEATURES_ERRORS = {
    "classes out of range": (dict(classes=torch.tensor([0, 5])), ValueError, "Expected classes in [0, 4]"),
    "negative class": (dict(classes=torch.tensor([-1, 0])), ValueError, "Expected classes in [0, 4]"),
    "float classes": (dict(classes=torch.tensor([0.0, 1.0])), TypeError, "integer tensor"),
    "classes of another length": (dict(classes=torch.tensor([0, 1, 2])), ValueError, "Expected classes of shape (2,)"),
    "size zero": (dict(size=(0, 4)), ValueError, "Expected size as two positive integers"),
    "size of one number": (dict(size=(4,)), ValueError, "Expected size as two positive integers"),
    "weight of the wrong width": (dict(weight=torch.randn(5, 7)), ValueError, "Expected weight of shape (K, 6)"),
    "features not 4-d": (dict(features=torch.randn(2, 6, 4)), ValueError, "Expected features"),
}


@pytest.mark.parametrize("case", sorted(CAM_FROM_FEATURES_ERRORS))
def test_cam_from_features_refuses_bad_input(case):
    good = dict(features=torch.randn(2, 6, 4, 4), weight=torch.randn(5, 6), classes=torch.tensor([0, 4]), size=(8, 8))
    change, error, message = CAM_FROM_FEATURES_ERRORS[case]
    with pytest.raises(error, match=re.escape(message)):
        cam_from_features(**{**good, **change})


# --------------------------------------------------------------------------------------------
# No host reads (validate=False)
# --------------------------------------------------------------------------------------------

K = 5


def test_cam_does_not_read_values_on_the_host():
    model = build_model("fast_resnet", K).train()
    x = torch.randn(2, 3, 32, 32)
    cam_and_logits(model, x, torch.tensor([0, 1]), validate=False)
    with no_host_reads():
        cam_and_logits(model, x, torch.tensor([0, 1]), validate=False)
        cam_and_logits(model, x, "predicted", validate=False)
