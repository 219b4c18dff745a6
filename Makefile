# ccq: one command to provision, one to test.
#   make provision   this machine, as you (asks for the Cerebras key once if none is known)
#   make test        lint + unit + integration + molecule (exactly what .ci/run runs)
#   make bench       benchmarks; prints numbers, asserts nothing
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)
BIN := $(CURDIR)/$(VENV)/bin
# Molecule needs the venv's bin on PATH (else FileNotFoundError: 'ansible-config').
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/tests/target_image/containers.conf
export ANSIBLE_FORCE_COLOR ?= 0
PYTEST := $(BIN)/pytest
MOLECULE_SCENARIOS ?= default uninstall

.PHONY: help venv provision test lint unit integration molecule host-deps test-image bench smoke clean

help:
	@echo "make provision  provision this machine (cc and ccq)"
	@echo "make test       lint, unit, integration and molecule tests"
	@echo "make bench      benchmarks (numbers, not pass/fail)"
	@echo "make smoke      the seed's checks against the real Cerebras (CEREBRAS_API_KEY)"

$(VENV_STAMP): requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 cannot create a venv: install python3-venv (sudo apt-get install python3-venv) and retry." >&2; exit 1; }
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(VENV_STAMP)

# Root can install packages itself; anyone else is asked for the sudo password only when
# sudo needs one.
BECOME_FLAGS = $(shell [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null || echo --ask-become-pass)

provision: venv
	$(BIN)/ansible-playbook site.yml $(BECOME_FLAGS) $(ARGS)

host-deps:
	bash tests/target_image/install-host-deps.sh

test-image: host-deps
	bash tests/target_image/build.sh

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(BIN)/actionlint .github/workflows/ci.yml

# Plain Python: the callback, the fake upstream. No LiteLLM, no network.
unit: venv
	$(PYTEST) -q -m "not integration" tests

# The real pinned LiteLLM (cached venv under .cache/) and the real Claude Code binary in
# front of the fake upstream; no Ansible.
integration: venv
	$(PYTEST) -q -m integration tests

# Each scenario's log is kept for `make bench` (first-converge and no-op timings).
molecule: venv test-image
	@set -e; mkdir -p bench/results/tmp; for s in $(MOLECULE_SCENARIOS); do \
	  CCQ_TARGET_IMAGE=$$(bash tests/target_image/build.sh --print-ref) $(BIN)/molecule test -s $$s 2>&1 \
	    | tee bench/results/tmp/molecule-$$s.log; \
	  test "$${PIPESTATUS[0]}" -eq 0; \
	done

test: lint unit integration molecule

# Benchmarks (issue 7): numbers, not pass/fail; see bench/README.md. matplotlib goes into
# .venv (requirements-bench.txt); bench/run.py builds the cached LiteLLM venv and
# claude-code-router (npm, .cache/) itself and stops every process it started.
BENCH_STAMP := $(VENV)/.bench-$(shell sha256sum requirements-bench.txt | cut -c1-12)

$(BENCH_STAMP): $(VENV_STAMP) requirements-bench.txt
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	@rm -f $(VENV)/.bench-*; touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The seed's two checks against the real Cerebras (needs CEREBRAS_API_KEY; never in `make test`).
smoke: venv
	bash tests/smoke/smoke.sh

clean:
	-for s in $(MOLECULE_SCENARIOS); do $(BIN)/molecule destroy -s $$s; done
	rm -rf .cache .pytest_cache .hypothesis
