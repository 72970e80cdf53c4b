# The two commands: `make run` and `make test`. Both create .venv and fetch MNIST first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BACKENDS_STAMP := $(VENV)/.backends-installed

.PHONY: run test bench data backends images clean codalab-cli beat-env postgres

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

# JAX and PyTorch for `--backend jax|torch`, into the same .venv: pip's resolver finds them
# compatible with every pin of requirements.txt (installed together, so it keeps them), and the
# backend tests load a model saved under JAX or torch under TensorFlow in one interpreter.
# The price, measured: with JAX installed, TensorFlow's import pulls it in (tensorflow/lite/python/util.py:
# `from jax import jit`, ~2 s), and Keras imports it under torch too (its orbax checkpoint callback).
$(BACKENDS_STAMP): $(STAMP) requirements-backends.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-backends.txt
	touch $(BACKENDS_STAMP)

backends: $(BACKENDS_STAMP)

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

# The real CodaLab CLI (`cl`, codalab 1.7.5) in its own Python 3.9 venv: it does not install on
# Python 3.11 and pins old packages, so it never touches .venv. The tests drive it (parser, download).
PYTHON39 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.9.*/bin/python) $(shell command -v python3.9 2>/dev/null))
CODALAB_VENV := .venv-codalab
CODALAB_STAMP := $(CODALAB_VENV)/.installed

codalab-cli: $(CODALAB_STAMP)

$(CODALAB_STAMP): platforms/codalab/cl-requirements.txt
	@test -n "$(PYTHON39)" || { echo "make codalab-cli: no Python 3.9 (looked for $$(pyenv root)/versions/3.9.*/bin/python and python3.9 on PATH); set PYTHON39=" >&2; exit 3; }
	test -x $(CODALAB_VENV)/bin/python || $(PYTHON39) -m venv $(CODALAB_VENV)
	$(CODALAB_VENV)/bin/python -m pip install --disable-pip-version-check -q -r platforms/codalab/cl-requirements.txt
	touch $(CODALAB_STAMP)

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
	rm -rf $(VENV) $(CODALAB_VENV) $(BEAT_VENV) .pytest_cache

# A real PostgreSQL for the explore workers' tests (Debian's package; the tests start a
# throwaway server on 127.0.0.1). Idempotent: installs only when initdb is missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb
