# The two commands: `make run` and `make test`. Both create .venv and fetch MNIST first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench data images clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

data: $(STAMP)
	$(PY) run.py data fetch

# The platform images' environments for `run.py preflight` (platforms/*/image.yaml): built once into
# the user cache, keyed by each description's hash, so this is a no-op when they are there.
images: $(STAMP)
	$(PY) run.py preflight kaggle --build-only
	$(PY) run.py preflight codalab --build-only

run: data
	$(PY) run.py --platform local

test: data images
	$(PY) -m pytest -q --durations=15

bench: data
	$(PY) run.py bench

clean:
	rm -rf $(VENV) .pytest_cache
