"""Adapters that put this library's operators where users already train.

* :mod:`randsaliencymix.integrations.timm`: :class:`~randsaliencymix.integrations.timm.Mixup`, a
  drop-in for ``timm.data.Mixup`` (same constructor, same soft targets) whose cut-and-paste part
  can be CutMix, SaliencyMix or RandSaliencyMix. timm itself is never imported.
* :mod:`randsaliencymix.integrations.lightning`:
  :class:`~randsaliencymix.integrations.lightning.BatchMixer`, mixing in a ``LightningModule``'s ``on_after_batch_transfer``, resumable and per rank.
  Lightning itself is never imported.

The DataLoader side is :class:`randsaliencymix.MixCollate`.
"""
