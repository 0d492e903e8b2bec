# Two entry points for a fresh clone: `make demo` (the offline miniature) and `make test` (the whole suite).
# Both create the virtual environment in .venv first if it is missing or out of date.
PYTHON ?= python3
VENV := .venv

.PHONY: demo test lint

$(VENV)/installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt -e ".[train,mlx,dev]"
	touch $@

demo: $(VENV)/installed
	$(VENV)/bin/reson demo

test: $(VENV)/installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: $(VENV)/installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
