# Two commands: `make demo` and `make test`. Both create .venv on first use and install the
# pinned, fully resolved dependency set in requirements.lock (no resolver backtracking).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs venv clean data

# uv (pinned) installs the lock in well under a minute where pip took about 2.5 minutes on the
# 2-core build machine; if uv cannot be fetched or fails, pip installs the same lock the same way.
# --compile-bytecode, as pip does: without it the first processes compile what they import (2.5 s
# more for Prefect's engine here), and in the first CI run without it a dispatched run of the
# end-to-end test started 21 s after its window (its test allows 15 s).
UV_VERSION := 0.13.9
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
UV := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@if $(PIP) uv==$(UV_VERSION) && $(UV) --no-deps -r requirements.lock && $(UV) --no-deps --no-build-isolation -e . ; then \
	  echo "Installed requirements.lock and CaRE into $(VENV) with uv $(UV_VERSION)."; \
	else \
	  echo "uv $(UV_VERSION) unavailable or failed: installing with pip (a few minutes)."; \
	  $(PIP) --no-deps -r requirements.lock && $(PIP) --no-deps --no-build-isolation -e . ; \
	fi
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/care demo

# Each test file on one xdist worker, so its module fixtures start once (the demo's 2-4 minutes).
# (--dist loadgroup groups nothing under pytest 9: xdist 3.8 sets item._nodeid, which pytest 9 no
# longer reads; the suite then ran the demo twice.)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

docs: $(STAMP)
	$(BIN)/python scripts/build_docs.py

data: $(STAMP)
	$(BIN)/python scripts/build_embedded_data.py

clean:
	rm -rf $(VENV) .pytest_cache care-report
