# hwopt: `make demo` and `make test` do all set-up on a machine with only Python >= 3.10 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwopt-installed
SAMPLES := $(addprefix sample_models/,mobilenetv2_tiny.onnx resnext_tiny.onnx shufflenet_tiny.onnx inception_tiny.onnx transformer_tiny.onnx)

.PHONY: demo test lint bench models install clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "hwopt needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)

# Re-install when the package metadata changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The generated models are committed; regenerate them (deterministically) when one is missing.
models: install
	@for f in $(SAMPLES); do test -f $$f || { $(PY) sample_models/generate.py; break; }; done

demo: install models
	$(VENV)/bin/hwopt optimize sample_models/mobilenetv2_tiny.onnx --target cpu -o build/demo

test: install models lint
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check hwopt tests bench scripts sample_models

# Benchmarks write their tables to bench/results/; onnxslim is a bench-only dependency.
BENCH_STAMP := $(VENV)/.hwopt-bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: install models $(BENCH_STAMP)
	$(PY) bench/compare_passes.py
	$(PY) bench/memory.py
	$(PY) bench/quantize.py

clean:
	rm -rf build .pytest_cache
