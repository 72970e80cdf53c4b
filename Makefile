# The two commands: `make run` and `make test`. Both create .venv and fetch MNIST first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench data clean postgres

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

data: $(STAMP)
	$(PY) run.py data fetch

run: data
	$(PY) run.py --platform local

test: data
	$(PY) -m pytest -q --durations=15

bench: data
	$(PY) run.py bench

clean:
	rm -rf $(VENV) .pytest_cache

# A real PostgreSQL for the explore workers' tests (Debian's package; the tests start a
# throwaway server on 127.0.0.1). Idempotent: installs only when initdb is missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb
