# The README's two commands: `make demo` (set up everything, run the default job)
# and `make test`. CI (.ci/run) calls exactly these.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench
setup:
	bash scripts/setup.sh

# Set up, then train LDA on the embedded long-tailed digits (a CPU minute or two).
demo: setup
	$(PY) -m lda_cls.train

test:
	$(PY) -m pytest -q tests

bench:
	$(PY) benchmarks/bench_loss.py
