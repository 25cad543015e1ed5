# `make demo` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench docs clean

# setup.py and the C source: the editable install builds skfeaturize/words/_speedups in place
$(STAMP): pyproject.toml setup.py skfeaturize/words/_speedups.c Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch with torchvision: these two versions install from local files on the project's machines
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/few_labels.py

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check skfeaturize tests benchmarks examples

# the API reference and guides as HTML in build/docs/html; every warning is an error (-E: read every source
# again, so a warning is never hidden by an earlier build)
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m sphinx -E -W --keep-going -b html -q docs build/docs/html
	@echo "docs: build/docs/html/index.html"

bench: $(STAMP)
	$(PY) benchmarks/image_throughput.py

clean:
	rm -rf $(VENV) build dist *.egg-info
