# nicodec: the two set-up commands are `make install` and `make test`.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTHON  := $(BIN)/python

.PHONY: install test bench fuzz data models experiments clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

test: install
	$(BIN)/pytest

# Measured numbers on the test sets (needs `make data`): codec speed and RD per generation
# against JPEG 2000 and WebP, encoder effort and rate control, start-up, training speed.
bench: install
	$(PYTHON) -m nicodec.bench

# The decoder against 10,000 corrupted files (fixed seed): refused / decoded / crashes / hangs.
fuzz: install
	$(PYTHON) scripts/fuzz.py --count 2500 --json docs/results/fuzz.json

# Fetch the three domains into data/ (git-ignored) and print the split counts.
data: install
	$(PYTHON) -m nicodec.data

# Retrain the shipped base models and adapters (hours on 2 CPU cores; resumes from runs/).
models: install data
	NIC=$(BIN)/nicodec scripts/train_base.sh
	NIC=$(BIN)/nicodec scripts/train_adapters.sh

# The paper's tables and figures at our scale: docs/results/ and docs/experiments.md
# (about 5 hours on 2 CPU cores; GPU when present; resumes from runs/experiments/).
experiments: install data
	$(PYTHON) -m study

clean:
	rm -rf $(VENV) runs build *.egg-info
