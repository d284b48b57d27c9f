# mibgkit: `make report` sets everything up and produces the reports; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install report test test-deps benchmark clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mibgkit needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/mibgkit shape mibgkit/data/ibsi_phantom/mask.nii.gz --json > reports/ibsi_phantom_shape.json
	$(BIN)/mibgkit report

# The browser tests drive Debian's Chromium: installed here when missing (as root, with apt-get).
test-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and cannot be installed here: the browser tests will say they were skipped"; fi; }

test: $(STAMP) test-deps
	$(BIN)/python -m pytest -q

# pyradiomics 3.0.1 builds from source and imports numpy in its setup script: built without isolation.
benchmark: $(STAMP)
	$(BIN)/python -m pip install --quiet wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation "pyradiomics==3.0.1"
	$(BIN)/python benchmarks/shape_vs_pyradiomics.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
