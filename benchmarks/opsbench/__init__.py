"""The parts of ``benchmarks/ops.py``, one job each.

* ``common``: constants, the photo batches, a timed row and its result, the timing loops (one after
  another, and interleaved), the formatting of times, ratios and target lines;
* ``memory``: the floor rows (``x.clone()``, ``out.copy_(x)``), the peak extra memory of a call,
  target 4;
* ``detectors``: the batched detectors against OpenCV's per-image loop, target 2 and issue 2's;
* ``operators``: this library's operators against timm and kornia, the pairing steps and CAM,
  targets 1 and 3; ``timm_reference``: timm's ``mixup.py`` read out of its wheel;
* ``report``: the tables, every family's targets in order, the notes; ``environment``: the
  hardware, versions and command of a run.
"""
