# The two commands a new user needs: `make demo` and `make test`.
# Each creates its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	bash tests/support/system-deps.sh
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tests.support.demo $(if $(DEMO_DIR),--workdir $(DEMO_DIR))

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	bash bench/run.sh

docs: $(STAMP)
	$(PY) -m sphinx -W -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build docs/_build .pytest_cache
