# Two set-up commands (README): `make lab` and `make test`. Both install what they need.
SHELL := /bin/bash
PY    := .venv/bin/python
PIP   := .venv/bin/pip
LAB   ?= gitea-lab-1
# `make drift`: which inventory, and optionally one host of it (--limit).
INVENTORY ?= inventories/prod.py
LIMIT ?=

# Debian packages the control machine needs: the engine and debootstrap for the lab, openssl
# for lab certificates, git for the clone itself.
HOST_PACKAGES := docker.io debootstrap openssl git

.PHONY: venv host-packages engine lab lab-down lint test test-unit test-lab test-terraform bench drift

venv: .venv/.installed
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

engine: host-packages venv
	$(PY) -m lab engine

lab: engine
	$(PY) -m lab up $(LAB)
	$(PY) -m lab converge $(LAB)

lab-down: venv
	$(PY) -m lab down --all

# The linter's rules are in pyproject.toml ([tool.ruff]); a finding fails `make test`.
lint: venv
	$(PY) -m ruff check .

test-unit: venv
	$(PY) -m pytest tests/unit

test-terraform: venv
	$(PY) -m pytest tests/terraform

test-lab: engine
	$(PY) -m pytest -m lab

test: lint engine
	$(PY) -m pytest

# Has the host drifted? Changes nothing; exit 0 matches, 1 drifted, 2 could not tell
# (docs/runbooks/deploy.md). `make drift INVENTORY=inventories/lab.py LIMIT=gitea-lab-1`
drift: venv
	$(PY) -m tasks.drift $(INVENTORY) $(if $(LIMIT),--limit $(LIMIT))

bench: engine
	$(PY) tests/bench/converge.py
