# ccq: one command to provision, one to test.
#   make provision   this machine, as you (asks for the Cerebras key once if none is known)
#   make test        lint + unit + playbook + integration + molecule (exactly what .ci/run runs)
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
MOLECULE_SCENARIOS ?= default uninstall fleet
# The Debian releases ccq is tested on (tests/target_image/build.sh builds each once).
TARGET_SUITES := bookworm trixie

.PHONY: help venv provision test lint unit playbook integration molecule host-deps test-image bench smoke clean lock lock-litellm lock-claude-code record-patch-sources

# The durations are one fresh-clone `make test` on a 2-core machine (2026-12-08, 41 min in
# all; docs/testing.md has the slowest tests of each stage).
help:
	@echo "make provision    provision this machine (cc and ccq)"
	@echo "make test         every stage below, in order (41 min on 2 cores)"
	@echo "  make lint         yamllint, ansible-lint, actionlint, ruff, mypy (1.2 min, with the venv)"
	@echo "  make unit         in-process Python: the proxy and doctor packages, the fake upstream (17 s)"
	@echo "  make playbook     ansible-playbook against local stand-ins, a faked macOS (3.6 min)"
	@echo "  make integration  the pinned LiteLLM and Claude Code against the fake Cerebras (5.6 min)"
	@echo "  make molecule     systemd targets over SSH, three scenarios side by side (15 min)"
	@echo "make bench        benchmarks (numbers, not pass/fail; about 13 min)"
	@echo "make smoke        the blog recipe's checks against the real Cerebras (CEREBRAS_API_KEY)"

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
	@set -e; for suite in $(TARGET_SUITES); do CCQ_TARGET_SUITE=$$suite bash tests/target_image/build.sh; done

# ruff checks RUFF_PATHS (the tree); pyproject.toml says which rules and which paths it skips.
RUFF_PATHS ?= .
lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(BIN)/actionlint .github/workflows/ci.yml
	$(BIN)/ruff check $(RUFF_PATHS)
# The proxy's and doctor's packages, roles/litellm_proxy/files/ccq_proxy and
# roles/ccq_doctor/files/ccq_doctor: strict, found through pyproject.toml's mypy_path.
	$(BIN)/mypy -p ccq_proxy -p ccq_doctor

# Each test directory belongs to one target (tests/unit/test_test_layout.py checks it).
# In-process Python: the callback, the wire writer, the doctor's modules, the fake upstream.
unit: venv
	$(PYTEST) -q --durations=8 tests/unit tests/fake_cerebras

# ansible-playbook against this machine's stand-ins: input checks, the run summary, the
# example inventory, and site.yml on a fake macOS (tests/platforms).
playbook: venv
	$(PYTEST) -q --durations=8 tests/playbook tests/platforms

# Processes: the real pinned LiteLLM (cached venv under .cache/) and the real Claude Code
# binary in front of the fake upstream, and the built doctor against running stand-ins.
integration: venv
	$(PYTEST) -q --durations=8 tests/integration

# The scenarios side by side, each line prefixed with its scenario (scripts/molecule_side_by_side.sh).
molecule: venv test-image
	bash scripts/molecule_side_by_side.sh $(MOLECULE_SCENARIOS)

# The stages in order, each one's wall time printed at the end (and kept in STAGE_TIMES), so a
# slow stage shows before the 60-minute budget is gone; the first failing stage stops the run.
TEST_STAGES := lint unit playbook integration molecule
STAGE_TIMES := bench/results/tmp/test-stages.txt
MOLECULE_TIMES := bench/results/tmp/molecule-times.txt
test:
	@mkdir -p $(dir $(STAGE_TIMES)); : > $(STAGE_TIMES); rm -f $(MOLECULE_TIMES); status=0; \
	for stage in $(TEST_STAGES); do \
	  start=$$(date +%s); $(MAKE) --no-print-directory $$stage || status=$$?; \
	  printf '%-12s %5d s%s\n' "$$stage" "$$(( $$(date +%s) - start ))" "$$([ $$status -eq 0 ] || echo '  FAILED')" >> $(STAGE_TIMES); \
	  [ $$status -eq 0 ] || break; \
	done; \
	echo "make test: wall time per stage"; cat $(STAGE_TIMES); cat $(MOLECULE_TIMES) 2>/dev/null; exit $$status

# Benchmarks (issue 7): numbers, not pass/fail; see bench/README.md. matplotlib goes into
# .venv (requirements-bench.txt); bench/run.py builds the cached LiteLLM venv and
# claude-code-router (npm, .cache/) itself and stops every process it started.
BENCH_STAMP := $(VENV)/.bench-$(shell sha256sum requirements-bench.txt | cut -c1-12)

$(BENCH_STAMP): $(VENV_STAMP) requirements-bench.txt
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	@rm -f $(VENV)/.bench-*; touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The two smoke checks of the blog recipe ccq started from (docs/provisioning.md), against the
# real Cerebras (needs CEREBRAS_API_KEY; never in `make test`).
smoke: venv
	bash tests/smoke/smoke.sh

# The committed locks: `make lock` regenerates each; review and commit what changes.
lock: lock-litellm lock-claude-code

# LiteLLM's lock (roles/litellm_proxy/lock/, named by litellm_proxy_lock_file): the whole tree
# of litellm[proxy] at ccq_litellm_version and openai within ccq_openai_version_spec, with every
# file's sha256, resolved once for every Python a target runs (--universal from Ubuntu 22.04's
# 3.10 up: Debian 12's 3.11, macOS' python@3.12, Debian 13's 3.13). Versions already in the lock
# are kept while they fit, so moving a pin moves only what it must (delete the lock to take the
# newest of everything). PyPI itself, so that a developer's pip or uv settings do not shape the
# lock. Then every locked version must have a wheel for each of those Pythons on Linux (glibc of
# Ubuntu 22.04, x86_64 and aarch64) and on macOS (Apple silicon, Intel): no target may need a
# compiler. litellm is the one sdist: PyPI has only the pure-Python sdist of 1.74.0.post2.
LITELLM_LOCK_PYTHONS := 3.10 3.11 3.12 3.13
LITELLM_LOCK_PLATFORMS := x86_64-manylinux_2_35 aarch64-manylinux_2_35 aarch64-apple-darwin x86_64-apple-darwin
LITELLM_LOCK_INDEX := --no-config --default-index https://pypi.org/simple
lock-litellm: venv
	@set -euo pipefail; \
	lock=$$($(BIN)/python scripts/locks.py litellm-lock-path); \
	$(BIN)/python scripts/locks.py litellm-lock-inputs \
	  | $(BIN)/uv pip compile - $(LITELLM_LOCK_INDEX) --universal \
	      --python-version $(firstword $(LITELLM_LOCK_PYTHONS)) --generate-hashes \
	      --custom-compile-command "make lock-litellm" --quiet --output-file "$$lock"; \
	for python in $(LITELLM_LOCK_PYTHONS); do for platform in $(LITELLM_LOCK_PLATFORMS); do \
	  $(BIN)/uv pip compile "$$lock" $(LITELLM_LOCK_INDEX) --no-deps \
	    --python-version "$$python" --python-platform "$$platform" --only-binary :all: --no-binary litellm \
	    --quiet --output-file /dev/null \
	    || { echo "$$lock: a version above has no wheel for Python $$python on $$platform: constrain it in litellm_lock_inputs (scripts/locks.py) and say why." >&2; exit 1; }; \
	done; done

# Claude Code's lock (roles/claude_code/files/claude-code-lock): ccq_claude_code_version, or
# CLAUDE_CODE_VERSION=x.y.z, with the registry's sha512 of it and of all eight platform packages
# (npm locks optional dependencies for every platform, not only this one). Registry and resolved
# URLs are given so that the developer's npmrc does not shape the lock.
CLAUDE_CODE_LOCK_DIR := roles/claude_code/files/claude-code-lock
lock-claude-code: venv
	spec=$$($(BIN)/python scripts/locks.py claude-code-spec $(CLAUDE_CODE_VERSION)) && \
	cd $(CLAUDE_CODE_LOCK_DIR) && rm -f package-lock.json && \
	npm install --package-lock-only --save-exact --ignore-scripts --no-audit --no-fund \
	  --registry=https://registry.npmjs.org/ --omit-lockfile-registry-resolved=false "$$spec"

# After a LiteLLM or openai pin moved and `make lock-litellm` (docs/upgrading.md): the pins and
# the source hashes ccq_proxy/litellm_patches.py (PATCHED_SOURCES) and ccq_proxy/stream_fastpath.py
# (FINGERPRINTS) check at start, re-recorded from the LiteLLM the lock installs; it prints which
# patched functions changed (their patches may no longer apply). ARGS=--check only reports.
record-patch-sources: venv
	$(BIN)/python scripts/record_patch_sources.py $(ARGS)

clean:
	-for s in $(MOLECULE_SCENARIOS); do $(BIN)/molecule destroy -s $$s; done
	rm -rf .cache .pytest_cache .hypothesis
