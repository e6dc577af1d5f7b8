"""Shape, size, gradient and registry checks of the training harness's networks.

Parameter counts are computed here from the architectures' published layouts (conv k*k*in*out
without bias, BN 2 per channel, linear in*out + out), not read back from ``src``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsmix.models import (
    MODEL_NAMES,
    FastCNN,
    FastResNet,
    ImageNetResNet,
    build_model,
    cifar_resnet18,
    fast_cnn,
    fast_resnet,
    preact_resnet18,
    resnet18_imagenet,
    wide_resnet,
    wrn_28_10,
)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout


def bn(c: int) -> int:
    return 2 * c


def expected_resnet18_params(num_classes: int) -> int:
    total = conv(3, 3, 64) + bn(64)
    cin = 64
    for width in (64, 128, 256, 512):
        for _ in range(2):
            total += conv(3, cin, width) + bn(width) + conv(3, width, width) + bn(width)
            if cin != width:
                total += conv(1, cin, width) + bn(width)
            cin = width
    return total + 512 * num_classes + num_classes


def expected_preact_resnet18_params(num_classes: int) -> int:
    total = conv(3, 3, 64)
    cin = 64
    for width in (64, 128, 256, 512):
        for _ in range(2):
            total += bn(cin) + conv(3, cin, width) + bn(width) + conv(3, width, width)
            if cin != width:
                total += conv(1, cin, width)
            cin = width
    return total + bn(512) + 512 * num_classes + num_classes


def expected_wrn_params(depth: int, k: int, num_classes: int) -> int:
    n = (depth - 4) // 6
    total = conv(3, 3, 16)
    cin = 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += bn(cin) + conv(3, cin, width) + bn(width) + conv(3, width, width)
            if cin != width:
                total += conv(1, cin, width)
            cin = width
    return total + bn(cin) + cin * num_classes + num_classes


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def wrn():
    # WRN-28-10 is the slowest to build (36M parameters); build it once for the module.
    torch.manual_seed(0)
    return wrn_28_10(10)


def test_model_names_match_the_registry():
    assert MODEL_NAMES == ("resnet18", "preact_resnet18", "wrn28_10", "fast_cnn", "fast_resnet", "resnet18_imagenet")


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "fast_cnn"])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shape_at_32x32(name, num_classes):
    torch.manual_seed(0)
    model = build_model(name, num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_wrn_output_shape_at_32x32(wrn):
    wrn.eval()
    with torch.no_grad():
        out = wrn(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(48, 40), (16, 16), (17, 23), (64, 64)])
def test_fast_cnn_accepts_other_sizes(size):
    model = fast_cnn(7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 7)


@pytest.mark.slow
def test_resnets_accept_non_square_input():
    # Adaptive pooling, not a fixed 4x4 average pool, ends every network.
    with torch.no_grad():
        assert cifar_resnet18(5).eval()(torch.randn(2, 3, 48, 40)).shape == (2, 5)
        assert preact_resnet18(5).eval()(torch.randn(2, 3, 48, 40)).shape == (2, 5)


def test_fast_cnn_rejects_images_too_small_to_pool():
    model = fast_cnn(10)
    with pytest.raises(ValueError, match=r"Expected images of at least 9x9 pixels, but got 8x16 instead"):
        model(torch.randn(1, 3, 8, 16))


@pytest.mark.slow
def test_resnet18_parameter_count():
    assert count_params(cifar_resnet18(10)) == expected_resnet18_params(10) == 11_173_962
    assert count_params(cifar_resnet18(100)) == expected_resnet18_params(100)


@pytest.mark.slow
def test_preact_resnet18_parameter_count():
    assert count_params(preact_resnet18(10)) == expected_preact_resnet18_params(10)
    assert 11.1e6 < count_params(preact_resnet18(10)) < 11.25e6


@pytest.mark.slow
def test_wrn_28_10_parameter_count(wrn):
    assert count_params(wrn) == expected_wrn_params(28, 10, 10) == 36_479_194


@pytest.mark.slow
def test_wrn_widths_and_dropout(wrn):
    convs = [m for m in wrn.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sorted({m.out_channels for m in convs}) == [16, 160, 320, 640]
    # 1 stem conv + 3 groups x 4 blocks x 2 convs = 25 3x3 convs.
    assert len(convs) == 25
    dropouts = [m for m in wrn.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 12 and all(m.p == 0.3 for m in dropouts)
    assert not any(isinstance(m, nn.Dropout) for m in wrn_28_10(10, dropout=0.0).modules())


def test_small_wide_resnet_parameter_count():
    assert count_params(wide_resnet(16, 4, 10)) == expected_wrn_params(16, 4, 10)


def expected_fast_cnn_params(num_classes: int, widths=(32, 64, 128), stem=24, residual=True) -> int:
    total = conv(2, 3, stem) + bn(stem)
    cin = stem
    for width in widths:
        total += conv(3, cin, width) + bn(width)
        if residual:
            total += conv(3, width, width) + bn(width)
        cin = width
    return total + cin * num_classes  # bias-free head


def test_fast_cnn_parameter_count():
    assert count_params(fast_cnn(10)) == expected_fast_cnn_params(10) == 295_120
    plain = fast_cnn(100, widths=(16, 32), residual=False)
    assert count_params(plain) == expected_fast_cnn_params(100, (16, 32), residual=False)


@pytest.mark.slow
def test_no_max_pool_in_cifar_resnets():
    for model in (cifar_resnet18(10), preact_resnet18(10)):
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
        stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.out_channels == 64


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fast_cnn", "resnet18", "fast_resnet"])
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, 10).train()
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([1, 7])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


@pytest.mark.slow
def test_fast_cnn_sgd_steps_fit_a_small_batch():
    # A few SGD steps on one fixed batch must lower its loss: the network trains, not just runs.
    torch.manual_seed(0)
    model = fast_cnn(10).train()
    x = torch.randn(10, 3, 32, 32)
    y = torch.arange(10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_fast_cnn_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = fast_cnn(10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "fast_cnn", "fast_resnet", "resnet18_imagenet"])
def test_same_seed_gives_identical_init(name):
    torch.manual_seed(123)
    a = build_model(name, 10).state_dict()
    torch.manual_seed(123)
    b = build_model(name, 10).state_dict()
    torch.manual_seed(124)
    c = build_model(name, 10).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_init_scheme():
    torch.manual_seed(0)
    model = cifar_resnet18(10)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        elif isinstance(m, nn.Linear):
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    # He normal with fan_out: std = sqrt(2 / (k*k*out)). The 64->128 convs hold 73,728 weights,
    # enough for the sample std to sit within 2% of it.
    conv = model.stages[1][0].conv1
    weight = conv.weight.detach()
    expected_std = (2.0 / (3 * 3 * conv.out_channels)) ** 0.5
    assert abs(float(weight.std()) / expected_std - 1) < 0.02
    assert abs(float(weight.mean())) < 0.05 * expected_std


@pytest.mark.slow
def test_build_model_passes_keywords():
    model = build_model("wrn28_10", 10, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    small = build_model("fast_cnn", 10, widths=(16, 32))
    assert isinstance(small, FastCNN)
    assert small.fc.in_features == 32


def test_unknown_model_name():
    with pytest.raises(
        ValueError,
        match=r"Expected a model name in 'resnet18', 'preact_resnet18', "
        r"'wrn28_10', 'fast_cnn', 'fast_resnet', 'resnet18_imagenet', but got 'resnet50' instead\.",
    ):
        build_model("resnet50", 10)


@pytest.mark.parametrize("bad", [None, 3])
def test_model_name_must_be_a_string(bad):
    with pytest.raises(TypeError, match="Expected the model name as a str"):
        build_model(bad, 10)


@pytest.mark.parametrize(
    "num_classes, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), (None, TypeError)]
)
def test_bad_num_classes(num_classes, error):
    with pytest.raises(error, match="Expected num_classes"):
        build_model("fast_cnn", num_classes)


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match=r"Expected depth = 6n \+ 4"):
        wide_resnet(27, 10)
    with pytest.raises(ValueError, match="Expected dropout in"):
        wrn_28_10(10, dropout=1.5)
    with pytest.raises(ValueError, match="Expected every width to be an int >= 1"):
        fast_cnn(10, widths=(32, 0))
    with pytest.raises(ValueError, match="Expected at least one width"):
        fast_cnn(10, widths=())
    with pytest.raises(TypeError, match="Expected widths as a sequence of ints, but got int instead"):
        fast_cnn(10, widths=64)
    with pytest.raises(ValueError, match="Expected stem_width to be an int >= 1"):
        fast_cnn(10, stem_width=0)
    with pytest.raises(ValueError, match="Expected logit_scale > 0"):
        FastCNN(10, logit_scale=0.0)


# --------------------------------------------------------------------------------------------
# Photographs: fast_resnet (CPU, 96-160 px) and resnet18_imagenet
# --------------------------------------------------------------------------------------------


def expected_basic_stages(cin: int, widths, blocks) -> int:
    total = 0
    for width, n in zip(widths, blocks):
        for _ in range(n):
            total += conv(3, cin, width) + bn(width) + conv(3, width, width) + bn(width)
            if cin != width:
                total += conv(1, cin, width) + bn(width)
            cin = width
    return total


def expected_fast_resnet_params(num_classes: int, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), stem=24) -> int:
    total = conv(3, 3, stem) + bn(stem) + conv(3, stem, widths[0]) + bn(widths[0])
    total += expected_basic_stages(widths[0], widths, blocks)
    return total + widths[-1] * num_classes + num_classes


def expected_resnet18_imagenet_params(num_classes: int) -> int:
    total = conv(7, 3, 64) + bn(64) + expected_basic_stages(64, (64, 128, 256, 512), (2, 2, 2, 2))
    return total + 512 * num_classes + num_classes


@pytest.fixture(scope="module")
def photo_models():
    torch.manual_seed(0)
    return {"fast_resnet": fast_resnet(10).eval(), "resnet18_imagenet": resnet18_imagenet(10).eval()}


@pytest.mark.parametrize("size", [64, 96, 128, 160])
@pytest.mark.parametrize("name", ["fast_resnet", "resnet18_imagenet"])
def test_photo_models_output_shapes(photo_models, name, size):
    model = photo_models[name]
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        out = model(x)
        features = model.features(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    # Both downsample by 32 in all: 4 in the stem, 2 in each of the three later stages.
    assert features.shape[-2:] == (size // 32, size // 32)


@pytest.mark.parametrize("name", ["fast_resnet", "resnet18_imagenet"])
def test_photo_models_stem_downsamples_by_4(photo_models, name):
    with torch.no_grad():
        assert photo_models[name].stem(torch.randn(1, 3, 128, 128)).shape[-2:] == (32, 32)
        assert photo_models[name].stem(torch.randn(1, 3, 96, 160)).shape[-2:] == (24, 40)


@pytest.mark.parametrize("name", ["fast_resnet", "resnet18_imagenet"])
def test_photo_models_head_is_average_pool_then_one_linear(photo_models, name):
    # The structure class activation maps need: logits = fc(mean over space of features), so
    # the CAM of class k, fc.weight[k] . features, averages (plus the bias) to logit k.
    model = photo_models[name]
    assert isinstance(model.fc, nn.Linear) and isinstance(model.pool, nn.AdaptiveAvgPool2d)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [model.fc]
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        features = model.features(x)
        cams = torch.einsum("kc,bchw->bkhw", model.fc.weight, features)
        logits = model(x)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + model.fc.bias, logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_photo_model_parameter_counts():
    assert count_params(fast_resnet(10)) == expected_fast_resnet_params(10) == 1_235_714
    small = fast_resnet(7, widths=(16, 32), blocks_per_stage=(2, 1), stem_width=8)
    assert count_params(small) == expected_fast_resnet_params(7, (16, 32), (2, 1), 8)
    assert count_params(resnet18_imagenet(10)) == expected_resnet18_imagenet_params(10) == 11_181_642
    # torchvision's resnet18 (1000 classes) has 11,689,512 parameters.
    assert count_params(resnet18_imagenet(1000)) == 11_689_512


def test_resnet18_imagenet_layout():
    model = resnet18_imagenet(10)
    assert isinstance(model, ImageNetResNet)
    stem_conv = model.stem[0]
    assert stem_conv.kernel_size == (7, 7) and stem_conv.stride == (2, 2) and stem_conv.out_channels == 64
    pool = model.stem[3]
    assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 3 and pool.stride == 2
    assert [len(stage) for stage in model.stages] == [2, 2, 2, 2]
    assert [stage[0].conv1.out_channels for stage in model.stages] == [64, 128, 256, 512]
    assert [stage[0].conv1.stride for stage in model.stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]


def test_fast_resnet_layout():
    model = fast_resnet(10)
    assert isinstance(model, FastResNet)
    convs = [m for m in model.stem.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [((3, 3), (2, 2), 24), ((3, 3), (2, 2), 32)]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert [len(stage) for stage in model.stages] == [1, 1, 1, 1]
    assert [stage[0].conv1.out_channels for stage in model.stages] == [32, 64, 128, 256]


def test_fast_resnet_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = fast_resnet(10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_photo_models_bad_arguments():
    with pytest.raises(ValueError, match="Expected every block count to be an int >= 1"):
        fast_resnet(10, blocks_per_stage=(1, 0, 1, 1))
    with pytest.raises(TypeError, match="Expected blocks_per_stage as a sequence of ints, but got int instead"):
        fast_resnet(10, blocks_per_stage=2)
    with pytest.raises(ValueError, match=r"Expected one block count per stage \(4\), but got 3 instead"):
        fast_resnet(10, blocks_per_stage=(1, 1, 1))
    with pytest.raises(ValueError, match="Expected stem_width to be an int >= 1"):
        fast_resnet(10, stem_width=0)
    with pytest.raises(ValueError, match="Expected num_classes"):
        resnet18_imagenet(0)
