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

# Renovate's config validator (tests/unit/test_renovate.py), in .tools/renovate (git-ignored). Renovate
# wants Node 24, newer than Debian's nodejs: npm's `node` package carries that binary, so Debian's
# npm is only the installer. A new version installs afresh (the stamp names both).
RENOVATE_VERSION := 44.121.2
RENOVATE_NODE    := 24.21.0
RENOVATE_DIR     := .tools/renovate
RENOVATE_STAMP   := $(RENOVATE_DIR)/.installed-$(RENOVATE_VERSION)-node$(RENOVATE_NODE)

# apt-get install $(1), quietly: the host packages and npm.
apt_install = echo "installing Debian packages: $(1)"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null

.PHONY: venv host-packages engine tools lab lab-down lint test test-unit test-lab test-terraform bench drift

venv: .venv/.installed
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(call apt_install,$$missing); fi

# No npm or no registry: a warning, not a failed `make test`; the validator test then skips saying
# why (and under CI=true a skip fails the run: tests/ci_strict.py).
tools: $(RENOVATE_STAMP)
$(RENOVATE_STAMP):
	@command -v npm >/dev/null || { $(call apt_install,nodejs npm); } || true
	@rm -rf $(RENOVATE_DIR); \
	if npm install --prefix $(RENOVATE_DIR) --no-audit --no-fund --loglevel=error \
	     node@$(RENOVATE_NODE) renovate@$(RENOVATE_VERSION) >/dev/null; then touch $@; \
	else echo "WARNING: Renovate's validator not installed: tests/unit/test_renovate.py will skip it" >&2; fi

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

# Two workers: the lab's tests wait on hosts far more than they compute (two converges side by side
# take 1.4x one, not 2x). Each group runs whole on one worker (tests/conftest.py), in the order
# given there; TEST_JOBS=0 runs everything in this process, in collection order.
TEST_JOBS ?= 2
test: lint engine tools
	$(PY) -m pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadscope --no-loadscope-reorder)

# Has the host drifted? Changes nothing; exit 0 matches, 1 drifted, 2 could not tell
# (docs/runbooks/deploy.md). `make drift INVENTORY=inventories/lab.py LIMIT=gitea-lab-1`
drift: venv
	$(PY) -m tasks.drift $(INVENTORY) $(if $(LIMIT),--limit $(LIMIT))

bench: engine
	$(PY) tests/bench/converge.py
