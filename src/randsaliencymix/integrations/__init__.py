"""Adapters that put this library's operators where users already train.

* :mod:`randsaliencymix.integrations.timm`: :class:`~randsaliencymix.integrations.timm.Mixup`, a
  drop-in for ``timm.data.Mixup`` (same constructor, same soft targets) whose cut-and-paste part
  can be CutMix, SaliencyMix or RandSaliencyMix. timm itself is never imported.

The DataLoader side, :class:`randsaliencymix.MixCollate`, lives in :mod:`randsaliencymix.collate`.
"""
