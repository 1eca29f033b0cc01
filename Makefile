# `make test` and `make demo` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo demo-train lint install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(MAKE) browser
	touch $(STAMP)

# Debian's chromium for the `browser` tests (Playwright drives it through executable_path;
# Playwright's own browser download is not used). Installed only where missing, and only as root.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium missing: run 'apt-get install -y chromium' as root (browser tests need it)"; fi

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
