# seedfield — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: install demo zoo test test-fast lint server clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the pinned CPU wheel; the constraints file pins every tested version.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seedfield demo --out $(DEMO_DIR)

# Every architecture of the zoo on the demo's stores (run `make demo` first): docs/model-zoo.md.
zoo: $(STAMP)
	$(VENV)/bin/seedfield compare -c flows/demo.toml --seedings $(DEMO_DIR)/seedings.zarr \
		--raw $(DEMO_DIR)/raw.zarr --registry $(DEMO_DIR)/models --start 2010-01-01 --end 2017-12-31 \
		--json $(DEMO_DIR)/model-zoo.json --markdown docs/model-zoo.md

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

server: $(STAMP)
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
