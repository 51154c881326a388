# hwopt: `make demo` and `make test` do all set-up on a machine with only Python >= 3.10 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwopt-installed
SAMPLES := $(addprefix sample_models/,mobilenetv2_tiny.onnx resnext_tiny.onnx shufflenet_tiny.onnx inception_tiny.onnx transformer_tiny.onnx)

.PHONY: demo test lint bench fuzz models install clean

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

# Calibrated on real photographs (sample_models/calib): static INT8 never rests on generated data.
demo: install models
	$(VENV)/bin/hwopt optimize sample_models/mobilenetv2_tiny.onnx --target cpu --config configs/sample-cnn.toml -o build/demo

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
	$(PY) bench/encoders.py
	$(PY) bench/defaults.py
	$(PY) bench/static_shapes.py
	$(PY) bench/reproducibility.py

# Thousands of mutated sample models through every command (tests/test_fuzz.py), new ones each
# run, then the whole hostile-model corpus including its minutes-long cases. Counts go to
# bench/results/fuzz.json.
FUZZ_EXAMPLES ?= 2500
fuzz: install models
	HWOPT_FUZZ_RANDOM=1 HWOPT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HWOPT_FUZZ_REPORT=bench/results/fuzz.json \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py
	HWOPT_FULL_CORPUS=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_robustness.py

clean:
	rm -rf build .pytest_cache
