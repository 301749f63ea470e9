# psleak: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CARGO_TEST_FLAGS ?=

.PHONY: help venv develop demo test test-rust test-python test-psutil test-upstream test-windows lint fmt bench clean check-macos numpy-venvs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# jsonschema: tests validate reports against the shipped schema; setuptools and psutil:
# psleak 0.1.6's test extension is built by its own setup script, which imports both.
$(VENV)/.installed: pyproject.toml scripts/install-test-deps.sh
	bash scripts/install-test-deps.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2" "pytest>=7" "ruff>=0.5" "mypy>=1.10" "pytest-xdist>=3" psutil \
		"jsonschema>=4" setuptools
	touch $@

venv: $(VENV)/.installed  ## create .venv with the build and test tools

develop: venv  ## build the native module (release) into .venv
	. $(VENV)/bin/activate && maturin develop --release -q

demo: develop  ## build, then run the demo: one leak caught, one clean function passed
	$(PY) examples/demo.py

lint: develop  ## rustfmt, clippy and rustdoc (warnings denied), ruff, mypy, stubtest; core without pyo3
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	@if cargo tree -p psleak -e normal,build | grep -q pyo3; then echo "core crate depends on pyo3"; exit 1; fi
	cargo build -p psleak -q
	$(VENV)/bin/ruff check python tests bench examples scripts
	$(VENV)/bin/ruff format --check python tests bench examples scripts
	RUSTDOCFLAGS="-D warnings" cargo doc -p psleak --no-deps -q
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest psleak._psleak

test-rust:  ## cargo tests, one test thread (probes measure the whole process); the unsupported backend too
	cargo test -p psleak -q $(CARGO_TEST_FLAGS) -- --test-threads=1
	RUSTFLAGS="--cfg psleak_unsupported -D warnings" CARGO_TARGET_DIR=target/unsupported \
		cargo test -p psleak -q --lib -- --test-threads=1 sys::unsupported
	# the binding's pure helpers (census merge and sort); nothing there calls into Python
	cargo test -p psleak-python -q --lib

# numpy 1.24.0's ndarray.fill(v) on an object array keeps a reference to v per call (fixed
# in 1.24.1): tests/test_refcount_numpy.py checks psleak reports one and passes the other.
# Each lives in its own venv: two versions cannot share one, and pinning a buggy numpy in
# .venv would hold back whatever else the tests install. Wheels only (no source build);
# where no wheel fits this Python, the venv is not made and the test skips.
NUMPY_VERSIONS := 1.24.0 1.24.1

numpy-venvs:  ## venvs .venv-numpy-<v> with numpy 1.24.0 (leaks references) and 1.24.1 (fixed)
	@for v in $(NUMPY_VERSIONS); do \
		if .venv-numpy-$$v/bin/python -c "import numpy" 2>/dev/null; then continue; fi; \
		python3 -m venv .venv-numpy-$$v && \
		.venv-numpy-$$v/bin/pip install -q --only-binary=:all: numpy==$$v || \
		{ echo "numpy $$v: no wheel for this Python; its test will skip"; rm -rf .venv-numpy-$$v; }; \
	done

test-python: develop numpy-venvs  ## pytest, serially (leak tests measure the whole process)
	$(PY) -m pytest -q -p no:xdist tests

test-upstream: develop  ## psleak 0.1.6's own test suite (sdist fetched from PyPI) against this psleak
	scripts/upstream016/run.sh $(PY)

test: lint test-rust test-python test-upstream  ## everything CI runs

check-macos:  ## type-check + clippy the core for x86_64/aarch64-apple-darwin (Debian rustc-web, -Zbuild-std; not run)
	bash scripts/check-macos.sh

test-windows: venv  ## Windows backend under Wine: clippy, cargo tests, external crate, wheel + pytest (apt installs)
	VENV=$(VENV) bash scripts/test-windows.sh

fmt:  ## format Rust and Python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests bench examples

# psutil 7.2.2's tests/test_memleaks.py as a real client (bench/psutil_client.py): the sdist
# is downloaded and built at run time into target/psutil-client, never committed.
test-psutil: develop  ## psutil 7.2.2's test_memleaks.py under our psleak, once; fails on any failure
	$(PY) bench/psutil_client.py --check

BENCH_ARGS ?=
PSUTIL_ROUNDS ?= 10

bench: develop  ## benchmarks: probes vs psutil; refcount census at 1M objects; native tracking on vs off; leak matrix and psutil's leak tests vs psleak 0.1.6 (BENCH_ARGS="--repeat 5", PSUTIL_ROUNDS=10 by default)
	$(PY) bench/probes.py
	$(PY) bench/census.py
	$(PY) bench/tracking.py
	$(PY) bench/matrix.py $(BENCH_ARGS)
	$(PY) bench/psutil_client.py --rounds $(PSUTIL_ROUNDS)

clean:  ## remove build products and .venv
	rm -rf target $(VENV) .venv-psleak016 .venv-psutil .venv-psutil-psleak016 .venv-numpy-* tests/ext/*.so
