# BTC Watcher: `make run` runs the whole system, `make test` runs every check.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
PYTHON ?= python3
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0

.PHONY: setup run test lint test-sqlite test-postgres system-packages test-packages migration \
	bench clean

setup: $(VENV)/.installed system-packages

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

# Debian packages the system needs at run time (installed only when missing).
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v sqlite3 >/dev/null || missing="$$missing sqlite3"; \
	command -v pg_dump >/dev/null || ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 || \
		missing="$$missing postgresql-client"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		(apt-get update -qq && $(APT_GET) install $$missing >/dev/null) || \
		{ echo "apt-get failed; install$$missing by hand"; exit 1; }; \
	fi

# ...and the ones the tests need: PostgreSQL, Chromium for page tests, nginx for the gateway bench.
test-packages: system-packages
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	[ -x /usr/bin/tinyproxy ] || missing="$$missing tinyproxy"; \
	command -v microsocks >/dev/null || missing="$$missing microsocks"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		(apt-get update -qq && $(APT_GET) install $$missing >/dev/null) || \
		{ echo "apt-get failed; install$$missing by hand"; exit 1; }; \
	fi

run: setup
	$(FLASK) backup upgrade
	$(FLASK) up

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Two xdist workers: the real-bots world's files run on one (tests/conftest.py), the rest beside.
# The PostgreSQL pass runs the tests marked both_databases (what depends on the dialect).
PYTEST := $(VENV)/bin/pytest -p no:cacheprovider -n 2

test-sqlite: setup test-packages
	$(PYTEST) $(PYTEST_ARGS)

test-postgres: setup test-packages
	BTCW_TEST_DB=postgres $(PYTEST) $(PYTEST_ARGS)

test: setup test-packages lint
	$(PYTEST) $(PYTEST_ARGS)
	BTCW_TEST_DB=postgres $(PYTEST) $(PYTEST_ARGS)

# The schema is released: every model change gets a new revision (make migration MSG="what").
migration: $(VENV)/.installed
	@test -n "$(MSG)" || { echo 'say what changed: make migration MSG="add proxy groups"'; exit 1; }
	tmp=$$(mktemp -d) && BTCW_VAR_DIR=$$tmp $(FLASK) db upgrade && \
		BTCW_VAR_DIR=$$tmp $(FLASK) db migrate -m "$(MSG)"; rm -rf "$$tmp"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
