# The two commands: `make run` and `make test`. Both create .venv and fetch MNIST first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench data clean beat-env

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

# BEAT's executor and block interpreter: its own venv (numpy<2, jsonschema==3.2.0), see
# platforms/beat/requirements.txt. `python run.py --platform beat` runs this on first use.
BEAT_VENV := .venv-beat
BEAT_STAMP := $(BEAT_VENV)/.installed

$(BEAT_STAMP): platforms/beat/requirements.txt
	test -x $(BEAT_VENV)/bin/python || $(PYTHON) -m venv $(BEAT_VENV)
	$(BEAT_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BEAT_VENV)/bin/python -m pip install --disable-pip-version-check -q -r platforms/beat/requirements.txt
	touch $(BEAT_STAMP)

beat-env: $(BEAT_STAMP)

clean:
	rm -rf $(VENV) $(BEAT_VENV) .pytest_cache
