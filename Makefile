# The two commands: `make run` and `make test`. Both create .venv and fetch MNIST first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BACKENDS_STAMP := $(VENV)/.backends-installed

.PHONY: run test bench data backends clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

# JAX and PyTorch for `--backend jax|torch`, into the same .venv: pip's resolver finds them
# compatible with every pin of requirements.txt (installed together, so it keeps them), and the
# backend tests load a model saved under JAX or torch under TensorFlow in one interpreter.
$(BACKENDS_STAMP): $(STAMP) requirements-backends.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-backends.txt
	touch $(BACKENDS_STAMP)

backends: $(BACKENDS_STAMP)

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
