# `make test` and `make demo` build .venv from scratch on a fresh machine.
# torch==2.13.0 is installed first so that the range in pyproject.toml is already satisfied
# (any other torch spec would pull GBs of CUDA wheels).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,viz,bench,train]'
	# Lightning for its integration test; where it cannot install, that test is skipped and says why.
	$(PY) -m pip install -q -e '.[lightning]' || echo 'lightning did not install: tests/library/test_integrations_lightning.py will be skipped'
	touch $(STAMP)

# The whole suite: lint (ruff), format check, type check (mypy, clean on src/), then the tests.
# CI runs this. The fast tier, under a minute here: `make test-fast`, that is
#   .venv/bin/ruff check src tests benchmarks examples study && OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -m "not slow"
test: lint
	$(PY) -m pytest -q

# The fast tier: lint, then every test not marked `slow` (training end to end, subprocesses,
# anything over ~0.5 s: see tests/conftest.py); `pytest -m slow` runs the rest. One OpenMP thread
# unless OMP_NUM_THREADS says otherwise: beside the training jobs on the 2 shared cores, torch's
# default of one thread a core made this tier 5x slower (150 s against 27 s).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples study
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples study
	$(VENV)/bin/ruff format --check src tests benchmarks examples study
	$(VENV)/bin/mypy

# The gallery, then a short comparison on the embedded procedural dataset (about 4 minutes here).
demo: $(STAMP)
	$(VENV)/bin/rsmix show --out gallery.png
	$(VENV)/bin/rsmix compare --data procedural:5000:1000 --epochs 6 --batch-size 128 --seeds 0 --test \
		--methods none,mixup,cutmix,saliencymix,randsaliencymix --out runs/demo

bench: $(STAMP)
	$(PY) benchmarks/ops.py --out BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
