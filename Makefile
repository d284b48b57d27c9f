# mibgkit: `make report` sets everything up and produces the reports; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install report test benchmark clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mibgkit needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/mibgkit shape mibgkit/data/ibsi_phantom/mask.nii.gz --json > reports/ibsi_phantom_shape.json
	$(BIN)/mibgkit report

test: $(STAMP)
	$(BIN)/python -m pytest -q

benchmark: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/shape_vs_pyradiomics.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
