# The two commands: `make run` (demo on embedded SQLite) and `make test` (SQLite, then PostgreSQL).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/opsdb
PYTEST_ARGS ?= -n 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install lint migrate demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

migrate: install
	DEBUG=1 $(PY) manage.py migrate --no-input

demo: migrate
	DEBUG=1 $(PY) manage.py load_demo

run: demo
	DEBUG=1 $(PY) manage.py run_demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

test: lint
	@echo "== test suite on SQLite =="
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	@if $(PY) scripts/db_reachable.py "$(TEST_DATABASE_URL)"; then \
		echo "== test suite on PostgreSQL ($(TEST_DATABASE_URL)) =="; \
		DATABASE_URL="$(TEST_DATABASE_URL)" $(VENV)/bin/pytest $(PYTEST_ARGS); \
	elif [ "$(REQUIRE_POSTGRES)" = "1" ]; then \
		echo "PostgreSQL is required (REQUIRE_POSTGRES=1) but $(TEST_DATABASE_URL) is not reachable"; exit 1; \
	else \
		echo "== PostgreSQL pass skipped: $(TEST_DATABASE_URL) is not reachable (set TEST_DATABASE_URL) =="; \
	fi

clean:
	rm -rf var/demo var/*.sqlite3* var/test-*
