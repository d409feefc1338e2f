# One entry point: `make demo` runs the main job, `make test` the tests; both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= out/demo
MODEL ?= surgenetxl-caformer

.PHONY: setup demo test docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch from this machine's disk (CPU use); everything else from the package index
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/demo.py --model $(MODEL) --out $(OUT)

test: setup
	$(PY) -m pytest -q

# The documentation site (docs/mkdocs.yml), built strictly: a broken link or a vanished API object fails.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -f docs/mkdocs.yml

clean:
	rm -rf $(VENV) out site
