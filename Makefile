# certship: `make test` runs every check; `make build` builds the workspace.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

# Packaging and deployment: SAM CLI, cargo-lambda and zig in a virtualenv of their own
# (requirements-deploy.txt), so aws-sam-cli's pins never meet requirements.txt's.
DEPLOY_VENV := .venv-deploy
DEPLOY_VENV_STAMP := $(DEPLOY_VENV)/.installed
# sam runs cargo-lambda from PATH, and cargo-lambda runs zig as `python3 -m ziglang`: the deploy
# venv's bin goes first. No telemetry: the machine may reach nothing but package registries.
DEPLOY_ENV := PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0
SAM_TEMPLATE := cloudformation/template.yaml
# sam build and sam validate find cloudformation/samconfig.toml beside the template; sam deploy
# (which deploys .aws-sam/build/template.yaml) needs its absolute path.
SAM_CONFIG := $(CURDIR)/cloudformation/samconfig.toml
LAMBDA_TARGET := aarch64-unknown-linux-gnu
# The functions' bins, as the template names them (BuildProperties: Binary).
LAMBDA_BINS = $(shell sed -n 's/^ *Binary: *//p' $(SAM_TEMPLATE))

BENCH := target/debug/certship-bench

.PHONY: help demo bench bench-ci setup system-packages venv node-packages build test fmt-check clippy unused-deps shellcheck asl-validate cfn-lint diagrams unit-and-integration clean deploy-venv sam-validate lambda-target package deploy release-check

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# The first thing to run: the whole workflow on the local cloud, start to finish.
demo: system-packages venv ## deploy and renew a certificate on the local cloud, no AWS account
	cargo run --quiet --package certship-cli -- local demo

# Rust, rustfmt and clippy come with the machine (rust-toolchain.toml names them).
setup: system-packages venv node-packages ## install everything the build and tests need

system-packages: ## shellcheck, jq, strace, openssl, pebble (apt-get, as root)
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

# Every crate uses each dependency it declares (cargo-machete, pinned; installed on first use).
MACHETE_VERSION := 0.9.2
unused-deps:
	@cargo machete --version 2>/dev/null | grep -qx '$(MACHETE_VERSION)' || \
	  cargo install --quiet --locked cargo-machete --version $(MACHETE_VERSION)
	cargo machete

# The install document's own script, extracted exactly as the SSM agent runs it.
shellcheck:
	@mkdir -p target
	@cargo run --quiet --package certship-stack --bin document-script > target/install-certificate-linux.sh
	shellcheck --shell=bash target/install-certificate-linux.sh scripts/*.sh local/assets/systemctl diagrams/render.sh .ci/run

# The Step Functions definition, checked against the Amazon States Language.
asl-validate: node-packages
	npx --no-install asl-validator --json-path statemachine/certificate-deployment.asl.json --json-path statemachine/acme-issuance.asl.json

# The SAM template, with the SAM transform applied (cfn-lint does it offline).
cfn-lint: venv
	$(VENV)/bin/cfn-lint cloudformation/template.yaml

diagrams: ## render diagrams/*.dot to SVG and PNG (needs graphviz)
	diagrams/render.sh

unit-and-integration: venv
	cargo test --workspace

test: setup fmt-check clippy unused-deps shellcheck asl-validate cfn-lint unit-and-integration ## formatting, lints, unit and integration tests

# `--all-targets`, as `make test` builds: without it cargo resolves features without the
# dev-dependencies' and rebuilds the SDK crates, minutes in CI after `make test`.
# The bench runs the local cloud in a debug build (what it times is certship's path through the
# emulated services, not the emulator's speed); the cold start needs the release bootstraps.
bench: venv ## speed and cost from 1 to 1,000 hosts beside the seed's design (~40 min; table + target/bench/results.json)
	cargo build --release $(addprefix --bin ,$(LAMBDA_BINS))
	cargo build --workspace --all-targets
	$(BENCH) --bootstraps target/release $(BENCH_ARGS)

# CI keeps the bench working at 1 and 10 hosts, a small storm and the debug bootstraps' cold
# start; it asserts no timing.
bench-ci: venv
	cargo build --workspace --all-targets
	$(BENCH) --hosts 1,10 --storm-mappings 100 --storm-certificates 20 --bootstraps target/debug --cold-start-runs 3 --out target/bench/ci-results.json

clean: ## remove build output and the virtualenv
	cargo clean
	rm -rf $(VENV) node_modules .certship
	rm -rf $(DEPLOY_VENV) .aws-sam

# ---------------------------------------------------------------------------------------------
# Packaging and deployment (AWS SAM). `make test` needs none of it; CI runs `make package` after
# `make test`, so a release build that does not compile cannot land.
# ---------------------------------------------------------------------------------------------
deploy-venv: $(DEPLOY_VENV_STAMP) ## the deploy virtualenv (SAM CLI, cargo-lambda, zig; ~800 MB)

$(DEPLOY_VENV_STAMP): requirements-deploy.txt
	@test -x $(DEPLOY_VENV)/bin/python || python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	@touch $@

# The same cfn-lint as `make cfn-lint`, through SAM CLI (offline, no credentials).
sam-validate: deploy-venv ## sam validate --lint on the SAM template
	$(DEPLOY_ENV) sam validate --lint -t $(SAM_TEMPLATE)

# The Lambda functions run on Graviton (Architectures: [arm64]).
lambda-target:
	@rustup target add $(LAMBDA_TARGET) || { \
	  echo "make: cannot add the Rust target $(LAMBDA_TARGET): the arm64 bootstraps cannot be built here." >&2; \
	  echo "make: 'make release-check' checks the release build for x86-64 instead (nothing to deploy)." >&2; \
	  exit 1; }

# sam build runs `cargo lambda build --release --arm64 --bin BIN` in the workspace root for each
# function, one after the other, in the workspace's own target/ directory. Building the six bins
# in one cargo first is the same build (sam's six runs then find them fresh: seconds), but
# overlaps the single-threaded LTO links (with four functions: 11 minutes cold here instead of
# 18). The same build because without -p cargo resolves features for the whole workspace, and
# because every function's graph has crc-fast, whose cdylib sets how LTO builds the crates below
# it (functions/shared/Cargo.toml); otherwise sam rebuilds the AWS SDK crates for four of them.
package: sam-validate lambda-target ## release-build the arm64 bootstraps into .aws-sam/build, ready for sam deploy
	$(DEPLOY_ENV) cargo lambda build --release --arm64 $(addprefix --bin ,$(LAMBDA_BINS))
	$(DEPLOY_ENV) sam build -t $(SAM_TEMPLATE)

# The first deploy is guided (stack name, region, parameters) and saves the answers to
# cloudformation/samconfig.toml; once a region is saved there, later deploys just run.
deploy: package ## package, then sam deploy (--guided the first time); needs AWS credentials
	@if grep -Eq '^[[:space:]]*region[[:space:]]*=' $(SAM_CONFIG); then guided=; else guided=--guided; fi; \
	echo "sam deploy $$guided --config-file $(SAM_CONFIG)"; \
	$(DEPLOY_ENV) sam deploy $$guided --config-file $(SAM_CONFIG)

# Where the arm64 target cannot be added: the same release build for x86-64, as a compile check.
release-check: deploy-venv ## release-build the six functions for x86-64 (check only; the stack is arm64)
	$(DEPLOY_ENV) cargo lambda build --release --x86-64 $(addprefix --bin ,$(LAMBDA_BINS))
