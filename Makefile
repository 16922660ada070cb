# Every target bootstraps .venv itself with the running python3, from the package registries.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | $(PYTHON) -c "import hashlib,sys;print(hashlib.md5(sys.stdin.buffer.read()).hexdigest()[:12])")

.PHONY: test demo bench soak lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@# PostgreSQL server binaries for the scale-out tests (they start a throwaway cluster); only
	@# where missing, only with apt-get, only as root (as in CI) or through passwordless sudo
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "postgresql missing: the PostgreSQL tests will be skipped (apt-get install postgresql)"; exit 0; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null \
		|| echo "could not install postgresql: the PostgreSQL tests will be skipped"; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,parquet,s3,postgres,browse]'
	rm -f $(VENV)/.installed-*
	touch $@

test: venv
	$(PY) -m pytest -q -p no:cacheprovider -n auto

soak: venv
	$(PY) -m pytest -q -p no:cacheprovider -m slow

demo: venv
	$(VENV)/bin/wandb-mirror demo --dir .demo

bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/workers.py

lint: venv
	$(VENV)/bin/ruff check src plugins tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
