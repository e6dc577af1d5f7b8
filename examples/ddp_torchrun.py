"""DistributedDataParallel with torchrun: each process mixes its own shard with its own generator.

    python -m torch.distributed.run --nproc_per_node 2 examples/ddp_torchrun.py --steps 30

(``torchrun`` is the same command.) On CPUs the processes talk over gloo; on GPUs use nccl and
``--device cuda`` (each process takes the GPU of its ``LOCAL_RANK``). The mixing draws come from a
generator seeded by the seed and the rank: the ranks draw differently, and a rerun draws the same.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from common import MEAN, NUM_CLASSES, STD, SyntheticImages, TinyNet, parse_args
from randsaliencymix import RandSaliencyMix, SoftTargetCrossEntropy


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    on_gpu = args.device.startswith("cuda")
    dist.init_process_group("nccl" if on_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if on_gpu else torch.device("cpu")

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts them)
    model = DistributedDataParallel(TinyNet().to(device), device_ids=[device.index] if on_gpu else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dataset = SyntheticImages()
    sampler: DistributedSampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    mix = RandSaliencyMix(num_classes=NUM_CLASSES, mean=MEAN, std=STD)
    # One generator per process, seeded by the rank: the same seed on every rank would give every
    # shard the same lam, boxes and pairing positions in every step.
    gen = torch.Generator(device=device).manual_seed(args.seed * world + rank)
    criterion = SoftTargetCrossEntropy()

    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)  # a new shuffle (and shard) every epoch
        for x, y in loader:
            x, y = mix(x.to(device), y.to(device), generator=gen)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients over the ranks
            optimizer.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        print(f"{world} processes, {step} steps: mean last loss {mean_loss.item() / world:.4f}")
    dist.barrier()  # no rank tears its gloo threads down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
