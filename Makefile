# certship: `make test` runs every check; `make build` builds the workspace.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed

.PHONY: help setup system-packages venv build test fmt-check clippy shellcheck unit-and-integration clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Rust, rustfmt and clippy come with the machine (rust-toolchain.toml names them).
setup: system-packages venv ## install everything the build and tests need

system-packages: ## shellcheck, jq, strace, openssl (apt-get, as root)
	@scripts/install-system-packages.sh

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

# The install document's own script, extracted exactly as the SSM agent runs it.
shellcheck: venv
	@mkdir -p target
	@$(PYTHON) -c 'import yaml; d = yaml.safe_load(open("ssm-documents/install-certificate-linux.yaml")); \
	  print("\n".join(d["mainSteps"][0]["inputs"]["runCommand"]))' > target/install-certificate-linux.sh
	shellcheck --shell=bash target/install-certificate-linux.sh scripts/*.sh .ci/run

unit-and-integration: venv
	cargo test --workspace

test: setup fmt-check clippy shellcheck unit-and-integration ## formatting, lints, unit and integration tests

clean: ## remove build output and the virtualenv
	cargo clean
	rm -rf $(VENV) .certship
