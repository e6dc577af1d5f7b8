"""The training harness: datasets, the data pipeline, the model zoo, the training loop, evaluation,
comparisons and the ``rsmix`` command line. It is built on the library (the package above it),
which never imports from here."""
