# hwopt: `make demo` and `make test` do all set-up on a machine with only Python >= 3.10 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwopt-installed
SAMPLES := $(addprefix sample_models/,mobilenetv2_tiny.onnx resnext_tiny.onnx shufflenet_tiny.onnx inception_tiny.onnx transformer_tiny.onnx)

.PHONY: demo test test-openvino venv-openvino lint bench fuzz models install clean

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
	$(MAKE) --no-print-directory test-openvino

# The OpenVINO provider comes with onnxruntime-openvino, which installs the same `onnxruntime`
# module as onnxruntime (as onnxruntime-gpu does): a virtualenv of its own, with hwopt's other
# dependencies from pyproject.toml and hwopt itself without them (pip would add onnxruntime).
# Its wheels are for x86-64 Linux and Windows; elsewhere test-openvino says so and passes.
OV_VENV  := .venv-openvino
OV_PY    := $(OV_VENV)/bin/python
OV_STAMP := $(OV_VENV)/.hwopt-installed
OV_HOST  := $(shell $(PYTHON) -c 'import platform; print(platform.machine().lower() in ("x86_64", "amd64") and platform.system() in ("Linux", "Windows"))' 2>/dev/null)

$(OV_STAMP): pyproject.toml | $(STAMP)
	test -x $(OV_PY) || $(PYTHON) -m venv $(OV_VENV)
	$(PY) scripts/requirements.py --without onnxruntime --extra openvino --extra test > $(OV_VENV)/requirements.txt
	$(OV_PY) -m pip install --quiet --disable-pip-version-check -r $(OV_VENV)/requirements.txt
	$(OV_PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(OV_STAMP)

venv-openvino: $(OV_STAMP)

# The openvino target's tests, run for real on the OpenVINO provider, and the target and
# runtime suites on the onnxruntime version that wheel ships.
test-openvino: models
ifeq ($(OV_HOST),True)
	$(MAKE) --no-print-directory $(OV_STAMP)
	$(OV_PY) -m pytest -q tests/test_openvino.py tests/test_targets.py tests/test_runtime.py
else
	@echo "test-openvino: onnxruntime-openvino has no wheel for this platform; its tests did not run"
endif

lint: install
	$(VENV)/bin/ruff check hwopt tests benchmarks scripts sample_models

# Benchmarks write their tables to benchmarks/results/; onnxslim is a bench-only dependency.
BENCH_STAMP := $(VENV)/.hwopt-bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: install models $(BENCH_STAMP)
	$(PY) benchmarks/compare_passes.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/memory_settings.py
	$(PY) benchmarks/quantize.py
	$(PY) benchmarks/encoders.py
	$(PY) benchmarks/defaults.py
	$(PY) benchmarks/static_shapes.py
	$(PY) benchmarks/reproducibility.py
	$(PY) benchmarks/openvino_models.py
	$(PY) benchmarks/speed_models.py
	$(PY) benchmarks/optimize_speed.py --repeat 3
	$(PY) benchmarks/optimize_speed.py --repeat 5 --fast --models resnext50_32x4d
ifeq ($(OV_HOST),True)
	$(MAKE) --no-print-directory $(OV_STAMP)
	$(OV_PY) benchmarks/openvino.py
endif

# Thousands of mutated sample models through every command (tests/test_fuzz.py), new ones each
# run, then the whole hostile-model corpus including its minutes-long cases. Counts go to
# benchmarks/results/fuzz.json.
FUZZ_EXAMPLES ?= 2500
fuzz: install models
	HWOPT_FUZZ_RANDOM=1 HWOPT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HWOPT_FUZZ_REPORT=benchmarks/results/fuzz.json \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py
	HWOPT_FULL_CORPUS=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_robustness.py

clean:
	rm -rf build .pytest_cache
