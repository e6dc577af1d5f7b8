"""Class activation maps (Zhou et al., CVPR 2016) of a classifier whose head is global pooling then
one linear layer, as a saliency source ("Saliency sources" in docs/methods.md in the repository).
Re-exported by :mod:`randsaliencymix.saliency`.

For a head ``logits = W · pool(F) + b`` (global average or max pooling) over features ``F`` of
shape ``(B, D, h, w)``, the map of image ``i`` for class ``c`` is ``relu(Σ_d W[c, d] F[i, d])``,
upsampled bilinearly (``align_corners=False``) to the image size ``(H, W)`` and divided by its
maximum (an all-zero map stays zero): ``(B, H, W)`` float32 in ``[0, 1]``.

The head is found **by structure**, not by name: one forward of the model records the leaf modules
it calls; the last ``nn.Linear`` called is the head and must be fed, through nothing but
``nn.Flatten``, ``nn.Identity`` or dropout, by a global pooling module (``nn.AdaptiveAvgPool2d`` or
``nn.AdaptiveMaxPool2d`` to 1x1, or ``nn.AvgPool2d``/``nn.MaxPool2d`` whose window covers the whole
map), whose input is ``F``. Every model of this library's zoo has such a head, and so do
torchvision's and timm's ResNets (``avgpool``/``global_pool`` then ``fc``). A model that pools
functionally (``F.avg_pool2d`` in ``forward``) is not recognised: wrap the pooling in a module.

The forward runs under ``torch.no_grad()`` in the model's current mode (train or eval), as
SnapMix's clean forward does: in train mode BatchNorm normalises with the batch's statistics and
dropout is active. It changes no state: the mode is untouched and the running statistics of
every BatchNorm layer (``running_mean``, ``running_var``, ``num_batches_tracked``) are restored
after the forward, so the model trains exactly as it would without the call. (Other state a
forward may change, e.g. a custom module's counters, is not restored.)

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_images, should_check_values

__all__ = ["cam_and_logits", "cam_from_features", "class_activation_maps"]

_PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
_HEAD_ERROR = "Expected a classifier whose head is global pooling then a linear layer, but got {} instead."


def cam_from_features(
    features: torch.Tensor,
    weight: torch.Tensor,
    classes: torch.Tensor,
    size: Tuple[int, int],
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Class activation maps ``(B, H, W)`` from features ``F`` ``(B, D, h, w)``, the head's weight
    ``W`` ``(K, D)`` and one class per image ``(B,)``: ``relu(Σ_d W[c_i, d] F[i, d])`` upsampled
    bilinearly (``align_corners=False``) to ``size`` and divided by its maximum (all zero stays
    zero). Computed in float32 (also inside an autocast region), without gradient. Pure: no model
    is run. ``validate`` checks the class range (CPU: by default; it reads the classes on the host)."""
    _check_cam_inputs(features, weight, classes, size, validate)
    with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
        f = features.detach().float()
        w = weight.detach().float().index_select(0, classes.to(weight.device).long()).to(f.device)
        cam = torch.einsum("bdhw,bd->bhw", f, w).clamp_(min=0.0)
        if tuple(cam.shape[-2:]) != tuple(size):
            cam = F.interpolate(cam.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)
        peak = cam.amax(dim=(1, 2), keepdim=True)
        return torch.where(peak > 0, cam / peak.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(cam))


def _check_cam_inputs(
    features: object, weight: object, classes: object, size: object, validate: Optional[bool]
) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != 4 or not features.is_floating_point():
        got = (
            f"{tuple(features.shape)} {features.dtype}"
            if isinstance(features, torch.Tensor)
            else type(features).__name__
        )
        raise ValueError(f"Expected features as a floating-point (B, D, h, w) tensor, but got {got} instead.")
    d = int(features.shape[1])
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or int(weight.shape[1]) != d:
        got = str(tuple(weight.shape)) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(
            f"Expected weight of shape (K, {d}), one row per class over the D features, but got {got} instead."
        )
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"Expected size as two positive integers (H, W), but got {size!r} instead.")
    _check_classes(classes, int(features.shape[0]), int(weight.shape[0]), validate)


def _describe(module: nn.Module) -> str:
    return type(module).__name__


def _is_global_pool(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> bool:
    if not isinstance(module, _GLOBAL_POOLS) or inp.ndim != 4:
        return False
    if out.ndim == 4 and tuple(out.shape[-2:]) != (1, 1):
        return False
    if out.ndim not in (2, 4) or out.shape[0] != inp.shape[0] or out.shape[1] != inp.shape[1]:
        return False
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        pad = module.padding if isinstance(module.padding, tuple) else (module.padding,) * 2
        return tuple(pad) == (0, 0) and k[0] >= inp.shape[-2] and k[1] >= inp.shape[-1]
    return True


class _Recorder:
    """Forward hook of every leaf module: the order of the calls, and the tensors of the last
    pooling call and of the last linear call only (so no other activation is kept alive)."""

    def __init__(self) -> None:
        self.modules: List[nn.Module] = []
        # (call index, input F, pooled output, is global)
        self.pool: Optional[Tuple[int, torch.Tensor, torch.Tensor, bool]] = None
        self.linear_input: Optional[Tuple[int, Tuple[int, ...]]] = None  # (call index, input shape)

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        index = len(self.modules)
        self.modules.append(module)
        inp = inputs[0] if isinstance(inputs, tuple) and len(inputs) > 0 else inputs
        if isinstance(module, _GLOBAL_POOLS) and isinstance(inp, torch.Tensor) and isinstance(output, torch.Tensor):
            self.pool = (index, inp, output, _is_global_pool(module, inp, output))
        elif isinstance(module, nn.Linear) and isinstance(inp, torch.Tensor):
            self.linear_input = (index, tuple(inp.shape))

    def features_and_head(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor, nn.Linear]:
        """The features ``F``, their pooled vector and the linear head, or the error naming what is wrong."""
        if self.linear_input is None:
            return _fail("a model with no linear layer")
        last, head_shape = self.linear_input
        head = cast(nn.Linear, self.modules[last])
        after = [m for m in self.modules[last + 1 :] if not isinstance(m, _PASS_THROUGH)]
        if after:
            return _fail(f"a model whose last linear layer is followed by {_describe(after[0])}")
        if len(head_shape) != 2 or head_shape[0] != batch:
            return _fail(f"a last linear layer whose input has shape {head_shape}")
        for index in range(last - 1, -1, -1):
            module = self.modules[index]
            if isinstance(module, _PASS_THROUGH):
                continue
            if self.pool is not None and self.pool[0] == index and self.pool[3]:
                features, pooled = self.pool[1], self.pool[2]
                if features.shape[1] == head.in_features:
                    return features, pooled.flatten(1), head
            return _fail(f"{_describe(module)} before the last linear layer")
        return _fail("a last linear layer fed by no module (pooling done functionally?)")


def _active_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, _PASS_THROUGH[2:]) and m.training and getattr(m, "p", 0) > 0 for m in model.modules())


def _check_head_reproduces(pooled: torch.Tensor, head: nn.Linear, logits: torch.Tensor) -> None:
    """The head found by structure must be what made the logits: the pooled features through it
    reproduce them, up to a positive factor (as ``fast_cnn``'s logit scale; a CAM divided by its
    maximum does not change under it), at the cost of one (B, D) x (D, K) product. A model that
    changes the pooled features functionally in ``forward`` (``fc(pool(x) - 1)``) fails here
    instead of giving wrong maps."""
    low = torch.is_autocast_enabled(pooled.device.type) or torch.finfo(logits.dtype).eps > 1e-6
    with torch.no_grad():
        want = head(pooled if low else pooled.to(head.weight.dtype)).float()
    got = logits.float()
    tol = 5e-2 if low else 1e-4
    size = float(want.abs().amax()) if want.numel() else 0.0
    if size == 0.0:  # a head that gives zeros (e.g. zero-initialised): the logits must be zeros too
        ok = float(got.abs().amax()) <= tol if got.numel() else True
    else:
        factor = float((got * want).sum() / (want * want).sum())
        ok = factor > 0 and torch.allclose(got, factor * want, rtol=tol, atol=tol * factor * size)
    if not ok:
        _fail(
            "a model whose logits are not its last linear layer applied to the pooled features "
            "(an operation between them in forward?)"
        )


def _fail(what: str) -> Any:
    raise ValueError(_HEAD_ERROR.format(what))


def _batchnorm_state(model: nn.Module) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) of every BatchNorm running statistic a train-mode forward would update."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            for buf in (m.running_mean, m.running_var, m.num_batches_tracked):
                if buf is not None:
                    saved.append((buf, buf.clone()))
    return saved


def _check_classes(classes: object, batch: int, num_classes: int, validate: Optional[bool]) -> torch.Tensor:
    if not isinstance(classes, torch.Tensor) or classes.is_floating_point() or classes.dtype == torch.bool:
        got = classes.dtype if isinstance(classes, torch.Tensor) else type(classes).__name__
        raise TypeError(f"Expected classes as an integer tensor of shape (B,) or 'predicted', but got {got} instead.")
    if tuple(classes.shape) != (batch,):
        raise ValueError(f"Expected classes of shape ({batch},), but got {tuple(classes.shape)} instead.")
    if should_check_values(classes, validate) and batch > 0:
        lo, hi = int(classes.min()), int(classes.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"Expected classes in [0, {num_classes - 1}], but got {lo if lo < 0 else hi} instead.")
    return classes.long()


def cam_and_logits(
    model: nn.Module,
    x: torch.Tensor,
    classes: Union[torch.Tensor, str],
    validate: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Class activation maps ``(B, H, W)`` of ``x`` ``(B, C, H, W)`` and the model's logits, from one
    forward of ``model`` (see the module's docstring for the head it needs and the state it keeps).

    ``classes``: the class of each image's map, ``(B,)`` integers (in training, the image's own
    label, as SnapMix), or ``"predicted"`` for the argmax of the logits. The logits are what
    ``model(x)`` returns, computed under ``torch.no_grad()`` (no graph); they can feed, e.g.,
    :meth:`RandSaliencyMix.observe`. ``validate`` checks the class range (CPU: by default).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected model to be a torch.nn.Module, but got {type(model).__name__} instead.")
    check_images(x, validate)
    if isinstance(classes, str) and classes != "predicted":
        raise ValueError(f"Expected classes as a (B,) tensor or 'predicted', but got {classes!r} instead.")
    recorder = _Recorder()
    hooks = [m.register_forward_hook(recorder) for m in model.modules() if next(iter(m.children()), None) is None]
    saved = _batchnorm_state(model)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(_HEAD_ERROR.format(f"a model whose output is {got}, not (B, K) logits"))
    features, pooled, head = recorder.features_and_head(x.shape[0])
    if should_check_values(logits, validate) and not _active_dropout(model):
        _check_head_reproduces(pooled, head, logits)
    if isinstance(classes, str):
        chosen = logits.argmax(dim=1)
    else:
        chosen = _check_classes(classes, x.shape[0], head.out_features, validate).to(head.weight.device)
    maps = cam_from_features(features, head.weight, chosen, (int(x.shape[-2]), int(x.shape[-1])), validate=False)
    return maps.to(x.device), logits


def class_activation_maps(
    model: nn.Module, x: torch.Tensor, classes: Union[torch.Tensor, str], validate: Optional[bool] = None
) -> torch.Tensor:
    """Class activation maps ``(B, H, W)`` in ``[0, 1]`` of ``x`` for ``classes`` (``(B,)`` or
    ``"predicted"``); see :func:`cam_and_logits`, which also returns the logits of the same forward."""
    return cam_and_logits(model, x, classes, validate)[0]
