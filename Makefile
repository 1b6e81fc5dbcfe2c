# Two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tamer-installed

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned here (a CPU build that lies on this machine's disk); pyproject accepts any torch >= 2.6.
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[dev,minilm,ner]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tamer run --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache
