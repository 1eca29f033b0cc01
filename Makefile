# `make test` and `make demo` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo demo-train lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

# A seed study: 2 learning rates x 4 seeds of the tiny model, two trials at a time, then the report.
demo: $(STAMP)
	$(BIN)/sparse-rcnn study jobs/studies/tiny_lr.yaml

# One 2-worker DDP training of the tiny model (9 epochs) and its AP table.
demo-train: $(STAMP)
	$(BIN)/sparse-rcnn train jobs/tiny_synthetic_ddp.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
