"""rsmix: the training harness of RandSaliencyMix and its ``rsmix`` command line (also ``python -m rsmix``).

Datasets, the data pipeline, the model zoo, the training loop, evaluation and comparisons over
seeds. It is built on the library :mod:`randsaliencymix` through its public API only, and the
library never imports it (``tests/project/test_structure.py`` checks both directions).
"""
