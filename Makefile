# The README's two commands: `make demo` (set up everything, run the default job)
# and `make test`. CI (.ci/run) calls exactly these.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench bench-cls bench-det bench-methods
setup:
	bash scripts/setup.sh

# Set up, then train LDA on the embedded long-tailed digits (a CPU minute or two).
# --overwrite: the demo is disposable, so a second `make demo` replaces output/digits_lt_lda
# (a plain second `python -m lda_cls.train` refuses to overwrite an earlier run).
demo: setup
	$(PY) -m lda_cls.train --overwrite

test:
	$(PY) -m pytest -q tests

bench:
	$(PY) benchmarks/bench_loss.py

# Long: CE vs LDA trainings on the CPU (CIFAR-10-LT needs ../shared/data).
bench-cls:
	$(PY) benchmarks/bench_cls_accuracy.py --out /tmp/bench_cls
	$(PY) benchmarks/bench_cls_step.py

# Every detection head on the LVIS-profile synthetic set, 3 seeds (projects/LDA/README.md's table); resumable.
bench-det:
	$(PY) benchmarks/bench_det_synthetic.py --seeds 1 2 3 --iters 200 --output-dir /tmp/bench_det_methods
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_det_step.py

# Long on a CPU (hours): the README's decision table, CIFAR-10-LT IR 100 (needs ../shared/data), 20 epochs,
# seeds 0-2; one result file per run under benchmarks/results/ (runs already there are skipped), then the tables.
bench-methods:
	$(PY) benchmarks/bench_methods.py --seeds 0 1 2 --epochs 20 --jobs 2 --threads 1 --curves lda,balanced_softmax,lda_la,lda_la_fixed_alpha
	$(PY) benchmarks/results_table.py --write-readme README.md
	$(PY) benchmarks/results_table.py --write-readme docs/methods.md
