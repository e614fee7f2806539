# certship: `make test` runs every check; `make build` builds the workspace.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help demo setup system-packages venv node-packages build test fmt-check clippy shellcheck asl-validate cfn-lint diagrams unit-and-integration clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# The first thing to run: the whole workflow on the local cloud, start to finish.
demo: system-packages venv ## deploy and renew a certificate on the local cloud, no AWS account
	cargo run --quiet --package certship-cli -- local demo

# Rust, rustfmt and clippy come with the machine (rust-toolchain.toml names them).
setup: system-packages venv node-packages ## install everything the build and tests need

system-packages: ## shellcheck, jq, strace, openssl (apt-get, as root)
	@scripts/install-system-packages.sh

venv: $(VENV_STAMP) ## the project's Python virtualenv (moto server, AWS CLI)

$(VENV_STAMP): requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

node-packages: $(NODE_STAMP) ## npm packages for the checks (asl-validator)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
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
	shellcheck --shell=bash target/install-certificate-linux.sh scripts/*.sh cli/assets/systemctl diagrams/render.sh .ci/run

# The Step Functions definition, checked against the Amazon States Language.
asl-validate: node-packages
	npx --no-install asl-validator --json-path statemachine/certificate-deployment.asl.json

# The SAM template, with the SAM transform applied (cfn-lint does it offline).
cfn-lint: venv
	$(VENV)/bin/cfn-lint cloudformation/template.yaml

diagrams: ## render diagrams/*.dot to SVG and PNG (needs graphviz)
	diagrams/render.sh

unit-and-integration: venv
	cargo test --workspace

test: setup fmt-check clippy shellcheck asl-validate cfn-lint unit-and-integration ## formatting, lints, unit and integration tests

clean: ## remove build output and the virtualenv
	cargo clean
	rm -rf $(VENV) node_modules .certship
