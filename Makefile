# certship: `make test` runs every check; `make build` builds the workspace.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed

.PHONY: help setup venv build test fmt-check clippy unit-and-integration clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: venv ## install everything the build and tests need (Python venv, Rust components)
	rustup component add rustfmt clippy >/dev/null

venv: $(VENV_STAMP) ## the project's Python virtualenv (moto server, AWS CLI)

$(VENV_STAMP): requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

build: ## build every crate
	cargo build --workspace --all-targets

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

unit-and-integration: venv
	cargo test --workspace

test: setup fmt-check clippy unit-and-integration ## formatting, lints, unit and integration tests

clean: ## remove build output and the virtualenv
	cargo clean
	rm -rf $(VENV) .certship
