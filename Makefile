# Every target does its own set-up on a fresh machine: a .venv is created when
# missing and the project is (re)installed whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.compgs-installed

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# pytest's own exit code is kept: 5 (no tests collected) fails the target.
test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m compgs demo

bench: $(STAMP)
	@set -e; for b in tools/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
