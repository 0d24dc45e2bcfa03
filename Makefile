# dsrlab: the two commands of the README, plus the checks they run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# the suite in two workers (pytest-xdist): faster on a 2-core box and on CI; -n 0 runs it in one
PYTEST_PARALLEL ?= -n 2
# Cilium's own datapath sources for its tests (a checkout, or a folder of bpf/ tarballs);
# ../shared/cilium beside the project when it is there, else those tests skip and say why
DSRLAB_CILIUM_SRC ?= $(abspath $(wildcard ../shared/cilium))
export DSRLAB_CILIUM_SRC

.PHONY: install demo test lint bench clean-lab

install:
	@bash scripts/install.sh

demo: install
	$(VENV)/bin/dsrlab run seed

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy lab
	$(VENV)/bin/lint-imports
	$(VENV)/bin/actionlint .github/workflows/ci.yml

test: lint
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

bench: install
	$(PY) bench/bringup.py
	$(PY) bench/datapath.py
	$(PY) bench/review.py
	$(PY) bench/modes.py
	$(PY) bench/verifier.py
	$(PY) bench/scenarios.py
	$(PY) bench/cilium.py
	$(PY) scripts/readme_figures.py

# README.md's figures block from bench/results/*.json (tests/test_readme.py checks it)
.PHONY: figures
figures:
	$(PY) scripts/readme_figures.py

clean-lab: install
	$(VENV)/bin/dsrlab clean

# The datapath fuzz at full size: 1,000,000 malformed frames per program and
# 5,000 hypothesis examples (make test runs 100,000 and 300).
.PHONY: fuzz fuzz-diff
fuzz: install fuzz-diff
	DSRLAB_FUZZ_PACKETS=1000000 DSRLAB_FUZZ_EXAMPLES=5000 $(PY) -m pytest -q -s \
		tests/datapath/test_fuzz_datapath.py tests/datapath/test_fuzz_geneve.py

# The differential fuzz at full size: 100,000 of the fuzzer's frames per family (IPv4,
# IPv6) through the lab's datapath and each Cilium of DSRLAB_CILIUM_SRC, every
# disagreement in an explained class (tests/datapath/cilium/diffclasses.py; make test
# runs 400 IPv4 and 300 IPv6 frames). Geneve is not compared (skb metadata).
fuzz-diff: install
	DSRLAB_FUZZ_DIFF_FRAMES=100000 $(PY) -m pytest -q -s -n 0 \
		tests/datapath/cilium/test_diff_fuzz.py

# The kernel matrix: the datapath tests and the scenarios under the host kernel and
# each kernel of kernels/matrix.yaml, booted in QEMU (virtme-ng). Installs QEMU, the
# kernels and virtme-ng first (scripts/install-matrix.sh; not part of make install).
# Results in matrix/<run-id>/; MATRIX_ARGS adds options (e.g. --kernel 6.1).
MATRIX_ARGS ?=
.PHONY: matrix matrix-full matrix-smoke
matrix: install
	@bash scripts/install-matrix.sh
	$(VENV)/bin/dsrlab matrix $(MATRIX_ARGS)

# ... and the long suites too (datapath test-run suite, fuzz)
matrix-full: install
	@bash scripts/install-matrix.sh
	$(VENV)/bin/dsrlab matrix --full $(MATRIX_ARGS)

# The matrix's smoke, time-bounded (.ci/run calls it after make test): the 5.10 kernel
# (from bullseye: the datapath's declared minimum, the LTS just below the write-up's
# failing 5.11) in QEMU, the default groups: the lab's and Cilium's verifier rows,
# datapath tests, fuzz smoke, the scenarios, Cilium's probes and its seed on both
# versions. 6.1 and 6.12 run in make matrix. Only that kernel is installed.
# SIGTERM at the limit stops the VM and the run.
MATRIX_SMOKE_TIMEOUT ?= 900
matrix-smoke: install
	@bash scripts/install-matrix.sh 5.10
	timeout --signal=TERM --kill-after=60 $(MATRIX_SMOKE_TIMEOUT) \
		$(VENV)/bin/dsrlab matrix --kernel 5.10 --out build/matrix --run-id smoke $(MATRIX_ARGS)
