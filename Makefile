# `make test` and `make demo` build .venv from scratch on a fresh machine.
# torch==2.13.0 is installed first so that the range in pyproject.toml is already satisfied
# (any other torch spec would pull GBs of CUDA wheels).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,viz,bench,train]'
	# Lightning for its integration test; where it cannot install, that test is skipped and says why.
	$(PY) -m pip install -q -e '.[lightning]' || echo 'lightning did not install: tests/test_lightning.py will be skipped'
	touch $(STAMP)

# The whole suite: lint (ruff), format check, type check (mypy, clean on src/), then the tests.
test: lint
	$(PY) -m pytest -q

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
