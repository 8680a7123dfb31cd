# Quick start: `make run` serves on port 8080; `make test` checks everything.
VENV := .venv
PYTHON := $(VENV)/bin/python
PORT ?= 8080
CONFIG ?= configs/addressbook-sqlite.yaml

.PHONY: run test lint typecheck unit coverage bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PYTHON) addrservice/tornado/server.py --port $(PORT) --config $(CONFIG)

test: $(VENV)/.installed
	$(PYTHON) run.py lint
	$(PYTHON) run.py typecheck
	$(PYTHON) run.py coverage

lint typecheck: $(VENV)/.installed
	$(PYTHON) run.py $@

unit: $(VENV)/.installed
	$(PYTHON) run.py test --suite unit

# Requests/s of each endpoint per engine, with wrk (10 minutes at most).
bench: $(VENV)/.installed
	$(PYTHON) run.py bench

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov .mypy_cache .hypothesis
