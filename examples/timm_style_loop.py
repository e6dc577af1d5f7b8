"""timm's training loop with the drop-in Mixup: the cut-and-paste part becomes RandSaliencyMix.

    python examples/timm_style_loop.py --steps 30

In timm's own ``train.py`` (1.0), ``Mixup`` comes in one import line with other names, so the
change is one line added after it, which rebinds the name (run timm with ``--no-prefetcher``: with
its prefetcher timm mixes in the collate with ``FastCollateMixup`` and never builds ``Mixup``)::

    from timm.data import create_dataset, create_loader, resolve_data_config, Mixup, FastCollateMixup, AugMixDataset
    from randsaliencymix.integrations.timm import Mixup  # added: the drop-in wins

plus, optionally, this library's arguments (``cutmix_op``, ``cutmix_options``, ``generator``).
Below, ``train_one_epoch`` follows timm's: the batch is moved to the device, then
``input, target = mixup_fn(input, target)``, and the loss is a soft-target cross-entropy;
``mixup_fn.mixup_enabled = False`` from ``--mixup-off-epoch`` on. timm is not needed.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from common import MEAN, NUM_CLASSES, STD, SyntheticImages, TinyNet, parse_args
from randsaliencymix import SoftTargetCrossEntropy
from randsaliencymix.integrations.timm import Mixup

MIXUP_OFF_EPOCH = 3  # timm's --mixup-off-epoch


def train_one_epoch(epoch, model, loader, optimizer, loss_fn, device, mixup_fn, steps_left):
    """timm's ``train_one_epoch``, reduced to what touches the mixing. Returns the steps taken."""
    if MIXUP_OFF_EPOCH and epoch >= MIXUP_OFF_EPOCH:
        mixup_fn.mixup_enabled = False
    model.train()
    taken = 0
    for input, target in loader:
        input, target = input.to(device), target.to(device)
        input, target = mixup_fn(input, target)
        loss = loss_fn(model(input), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        taken += 1
        if taken == steps_left:
            break
    print(f"epoch {epoch} ({taken} steps, mixing {'on' if mixup_fn.mixup_enabled else 'off'}): loss {loss.item():.4f}")
    return taken


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = TinyNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(
        SyntheticImages(), batch_size=args.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip

    # timm's train.py builds exactly these arguments from its flags (--mixup, --cutmix, ...).
    mixup_args: Dict[str, Any] = dict(
        mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5, mode="batch",
        label_smoothing=0.1, num_classes=NUM_CLASSES,
    )  # fmt: skip
    mixup_fn = Mixup(
        **mixup_args,
        cutmix_op="randsaliencymix",
        cutmix_options={"mean": MEAN, "std": STD},  # how the batch is normalised, for the detector
        generator=torch.Generator(device=device).manual_seed(args.seed),  # on the batch's device
    )
    loss_fn = SoftTargetCrossEntropy()

    step, epoch = 0, 0
    while step < args.steps:
        step += train_one_epoch(epoch, model, loader, optimizer, loss_fn, device, mixup_fn, args.steps - step)
        epoch += 1


if __name__ == "__main__":
    main()
