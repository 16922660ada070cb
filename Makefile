# Every target bootstraps .venv itself with the running python3, from the package registries.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | $(PYTHON) -c "import hashlib,sys;print(hashlib.md5(sys.stdin.buffer.read()).hexdigest()[:12])")

.PHONY: test demo bench soak lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,parquet]'
	rm -f $(VENV)/.installed-*
	touch $@

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

soak: venv
	$(PY) -m pytest -q -p no:cacheprovider -m slow

demo: venv
	$(VENV)/bin/wandb-mirror demo --dir .demo

bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check src plugins tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
