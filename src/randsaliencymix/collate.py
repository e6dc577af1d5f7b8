"""Mixing inside DataLoader workers, reproducibly: :class:`MixCollate`.

A seeded transform inside DataLoader workers is a classic trap: each worker holds a copy of the
transform and of its generator, so every worker draws the same numbers, and since non-persistent
workers are re-created each epoch from the same state, every epoch repeats the previous one's
"random" augmentation exactly. :class:`MixCollate` never keeps a generator: each batch draws from a
fresh one whose seed is a hash of

``(seed, epoch, pass, worker id, n)``

* ``seed``: the base seed given to the constructor. Under DDP the **rank** is folded in too
  (``rank=``, by default ``torch.distributed``'s rank when it is initialised, else the ``RANK``
  environment variable that ``torchrun`` sets, else 0), so ranks draw different mixes from one
  seed; rank 0 draws exactly what a single process draws;
* ``epoch``: the last value given to :meth:`MixCollate.set_epoch` (0 if never called). It is kept
  in shared memory, so it reaches workers that already exist (``persistent_workers=True``) as
  well as new ones; call it before iterating the loader for that epoch, as with
  ``DistributedSampler.set_epoch``;
* ``pass``: how many times worker ``id`` was started anew since the last ``set_epoch`` (0 unless
  the loader is iterated again without a ``set_epoch``: then a non-persistent worker's new pass
  draws new numbers instead of repeating the previous one);
* worker id (``get_worker_info().id``; 0 in the main process when ``num_workers=0``) and ``n``, the
  number of batches that worker has mixed in this stream (since its start or the last ``set_epoch``).

So draws differ across workers and epochs, a rerun with the same seed reproduces them, and after
``set_epoch(e)`` they are those of ``(seed, e, 0, worker, n)``: the same with or without persistent
workers, and epoch ``e`` can be drawn again alone (a resumed run). Without ``set_epoch`` they still
differ from pass to pass, but a persistent worker keeps counting ``n`` where a fresh one counts
passes, so the two settings draw differently. Draws depend on ``num_workers`` (which worker
collates which batch).

**Samples** (with the default ``collate_fn``): ``(image, label)`` pairs whose image is a tensor
``(C, H, W)`` (or ``(H, W)``, one channel), a NumPy array ``(H, W, C)``, ``(C, H, W)`` (or ``(H,
W)``) or a PIL image. PIL images are channels-last and are converted to ``(C, H, W)`` uint8 tensors
before stacking, as torchvision's ``ToImage`` reads them. A 3-D NumPy array's layout is read from
its shape: channels (1 to 4) last and not first is ``(H, W, C)`` (the layout of decoded images,
e.g. ``(H, W, 3)`` uint8, converted as PIL's), first and not last is ``(C, H, W)`` (kept); a shape
that reads both ways (``(3, 8, 3)``) or neither (``(8, 8, 8)``) is refused, as there is no telling
which dimension holds the channels (pass ``(C, H, W)`` tensors then). Tensors keep their dtype.
Without the conversion a batch of ``(H, W, C)`` arrays would be read as ``(B, H, W, C)`` and mix
pixels whose channels come from different images. A ``collate_fn`` of your own must return ``(B,
C, H, W)`` images.

**Operators that learn from the model** (:attr:`~randsaliencymix.Mixer.learns_from_model`, e.g.
``RandSaliencyMix(pairing="confusion")``) are refused, at construction and at every batch (an
operator switched to ``pairing="confusion"`` afterwards): DataLoader workers hold copies of the
operator that never see the main process's ``observe()``, so their pairing would stay uniform.
Mix those in the training loop (or Lightning's ``on_after_batch_transfer``) instead.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import struct
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import default_collate, get_worker_info

from .base import Mixer

__all__ = ["MixCollate", "batch_seed"]

# Workers a MixCollate can tell apart (its per-worker pass counters live in shared memory).
MAX_WORKERS = 1024
_INT64 = (-(2**63), 2**63 - 1)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected {name} to be an int, but got {type(value).__name__} instead.")
    number = int(value)
    if not max(low, _INT64[0]) <= number <= _INT64[1]:
        raise ValueError(f"Expected {name} in [{max(low, _INT64[0])}, 2**63 - 1], but got {number} instead.")
    return number


def batch_seed(seed: int, epoch: int, pass_: int, worker: int, index: int, rank: int = 0) -> int:
    """The seed of one batch's generator: a 63-bit hash of the integers (BLAKE2b), so nearby keys
    give unrelated streams and every process computes the same value. Rank 0 hashes the five
    integers alone (the seeds of a single process); another rank hashes its rank too."""
    key = struct.pack("<5q", seed, epoch, pass_, worker, index)
    if rank:
        key += struct.pack("<q", rank)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class MixCollate:
    """A ``collate_fn`` that stacks samples and mixes them: ``DataLoader(ds, collate_fn=MixCollate(op, seed=0))``.

    ``op`` is any :class:`~randsaliencymix.Mixer` (e.g. ``RandSaliencyMix(num_classes=10)`` or the
    timm drop-in); ``seed`` (required) is the base seed of every draw; ``collate_fn`` stacks the
    samples into ``(images, labels)`` (default: torch's ``default_collate``, for datasets of
    ``(image tensor, label)`` pairs). Each call returns ``op(images, labels, generator=g)``:
    mixed images and ``(B, K)`` soft targets, on the CPU of the worker. The generator ``g`` of each
    batch is seeded as the module docstring says; call :meth:`set_epoch` at the start of every
    epoch.
    """

    def __init__(
        self,
        op: Mixer,
        *,
        seed: int,
        collate_fn: Optional[Callable[[List[Any]], Any]] = None,
        rank: Optional[int] = None,
    ) -> None:
        _check_op(op)
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"Expected collate_fn to be callable, but got {type(collate_fn).__name__} instead.")
        self.op = op
        self.seed = _check_int("seed", seed, _INT64[0])
        # None: this process's rank, read at the first batch (not here: a LightningModule or a script
        # may build the collate before the process knows its rank)
        self._rank: Optional[int] = None if rank is None else _check_int("rank", rank, 0)
        if rank is None:
            _default_rank()  # a bad RANK environment variable fails now, not at the first batch
        self._converts = collate_fn is None  # the default collate reads NumPy and PIL images as torchvision does
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        # Shared memory, so that it reaches every worker, forked, spawned or persistent: the epoch
        # and the number of set_epoch calls (written by the main process); per worker id, the
        # set_epoch call of its last start and its pass (written by that worker).
        self._shared = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._slots = torch.full((MAX_WORKERS, 2), -1, dtype=torch.int64).share_memory_()
        self._stream: Optional[Tuple[int, int, int, int]] = None  # this process's (pid, worker seed, worker, call)
        self._pass = 0
        self._count = 0

    @property
    def rank(self) -> int:
        """The rank folded into the seeds: the one given, else this process's, read when first needed
        (at the first batch) from torch.distributed, ``RANK``, or Lightning's ``NODE_RANK``/``LOCAL_RANK``."""
        if self._rank is None:
            self._rank = _default_rank()
        return self._rank

    @property
    def epoch(self) -> int:
        return int(self._shared[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of epoch ``epoch`` (>= 0) from now on, in this process and in every
        worker of every loader using this collate, persistent or not: every worker restarts at
        pass 0, batch 0 of that epoch. Call it before iterating the loader."""
        self._shared[0] = _check_int("epoch", epoch, 0)
        self._shared[1] += 1

    def __repr__(self) -> str:
        rank = "unresolved" if self._rank is None else self._rank
        return f"MixCollate({self.op!r}, seed={self.seed}, rank={rank}, epoch={self.epoch})"

    def _next_seed(self) -> int:
        info = get_worker_info()
        worker = 0 if info is None else int(info.id)
        if worker >= MAX_WORKERS:
            raise ValueError(f"Expected at most {MAX_WORKERS} DataLoader workers, but got worker id {worker} instead.")
        epoch, call = (int(v) for v in self._shared)
        # A new worker process (a new pass over a loader without persistent workers) or a
        # set_epoch call starts a new stream; a second start of worker w since the last set_epoch
        # is a new pass.
        stream = (os.getpid(), -1 if info is None else int(info.seed), worker, call)
        if stream != self._stream:
            slot = self._slots[worker]
            self._pass = int(slot[1]) + 1 if int(slot[0]) == call else 0
            slot[0], slot[1] = call, self._pass
            self._stream, self._count = stream, 0
        seed = batch_seed(self.seed, epoch, self._pass, worker, self._count, self.rank)
        self._count += 1
        return seed

    def __call__(self, samples: List[Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        _check_op(self.op)  # again (attributes only): the operator may have changed since construction
        if self._converts:
            samples = [_chw_sample(sample) for sample in samples]
        batch = self.collate_fn(samples)
        if not isinstance(batch, Sequence) or len(batch) != 2 or not all(isinstance(t, torch.Tensor) for t in batch):
            got = type(batch).__name__ + (f" of length {len(batch)}" if isinstance(batch, Sequence) else "")
            raise TypeError(f"Expected samples that collate to (images, labels) tensors, but got a {got} instead.")
        images, labels = batch
        if images.ndim != 4:
            raise ValueError(
                f"Expected samples that collate to (B, C, H, W) images, but got images of shape "
                f"{tuple(images.shape)} instead."
            )
        generator = torch.Generator(device=images.device).manual_seed(self._next_seed())
        return self.op(images, labels, generator=generator)


def _check_op(op: object) -> None:
    if not isinstance(op, Mixer):
        raise TypeError(f"Expected op to be a randsaliencymix Mixer, but got {type(op).__name__} instead.")
    if op.learns_from_model:
        raise ValueError(
            f"Expected an operator without state that follows the model, but got {type(op).__name__} that "
            "learns from observe() (e.g. pairing='confusion') instead: DataLoader workers never see the "
            "main process's observe(); mix in the training loop's process (after the batch is loaded)."
        )


def _default_rank() -> int:
    """This process's DDP rank: torch.distributed's when initialised, else ``RANK`` (torchrun), else
    Lightning's ``NODE_RANK`` and ``LOCAL_RANK`` (set before its processes start, when ``RANK`` may
    not be: ``NODE_RANK * 2**16 + LOCAL_RANK``, one value per process, 0 for a single process), else 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    try:
        if "RANK" in os.environ:
            rank = max(int(os.environ["RANK"]), 0)
        else:
            rank = max(int(os.environ.get("NODE_RANK", "0")), 0) * 2**16 + max(
                int(os.environ.get("LOCAL_RANK", "0")), 0
            )
    except ValueError:
        return 0
    return _check_int("the RANK environment variable", rank, 0)


# The channel counts a NumPy image's layout is read by (grey, grey and alpha, RGB, RGBA).
_CHANNEL_COUNTS = (1, 2, 3, 4)


def _chw_image(image: Any) -> Any:
    """A sample's image as a ``(C, H, W)`` tensor: tensors are ``(C, H, W)`` (``(H, W)``: one
    channel); PIL images are ``(H, W, C)`` (``(H, W)``: one channel), as torchvision's ``ToImage``
    reads them; NumPy arrays are ``(H, W)`` or, by their shape, ``(H, W, C)`` or ``(C, H, W)`` (see
    :func:`_numpy_channels_last`). Anything else is passed on for the collate to handle."""
    if isinstance(image, torch.Tensor):
        return image.unsqueeze(0) if image.ndim == 2 else image
    channels_last = False
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(image, pil.Image):
        import numpy as np

        image = np.array(image)  # (H, W[, C]) uint8; a copy, so the tensor owns its memory
        channels_last = True
    if type(image).__module__ == "numpy" and hasattr(image, "ndim"):
        if image.ndim not in (2, 3):
            raise ValueError(
                "Expected a NumPy image of shape (H, W, C), (C, H, W) or (H, W), "
                f"but got shape {tuple(image.shape)} instead."
            )
        tensor = torch.as_tensor(image)
        if tensor.ndim == 2:
            return tensor.unsqueeze(0)
        if channels_last or _numpy_channels_last(tuple(image.shape)):
            return tensor.permute(2, 0, 1).contiguous()
        return tensor
    return image


def _numpy_channels_last(shape: Tuple[int, ...]) -> bool:
    """Whether a 3-D NumPy image is ``(H, W, C)`` (else ``(C, H, W)``), read from its shape:
    channels (1 to 4) last and not first, or first and not last. A shape that reads both ways or
    neither is refused."""
    first, last = shape[0] in _CHANNEL_COUNTS, shape[-1] in _CHANNEL_COUNTS
    if first != last:
        return last
    reads = "both ways" if first else "neither way"
    raise ValueError(
        "Expected a NumPy image whose shape tells its layout, (H, W, C) or (C, H, W) with C in 1..4 on one "
        f"side only, but got shape {shape}, which reads {reads}, instead: pass (C, H, W) tensors "
        "(or a collate_fn of your own)."
    )


def _chw_sample(sample: Any) -> Any:
    if isinstance(sample, (tuple, list)) and len(sample) >= 1:
        return (_chw_image(sample[0]), *sample[1:])
    return sample
