#!/usr/bin/env bash
# Installs the Debian packages the tests need (shellcheck, jq, strace, openssl, and pebble, the
# local ACME CA: /usr/bin/pebble and pebble-challtestsrv) when any is missing. As root it runs
# apt-get; otherwise it says what to install and fails.
set -euo pipefail

# Each package's command has the package's name.
packages=(shellcheck jq strace openssl pebble)
missing=()
for package in "${packages[@]}"; do
  command -v "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  printf 'missing: %s\ninstall them with: sudo apt-get install -y %s\n' "${missing[*]}" "${missing[*]}" >&2
  exit 1
fi
printf 'installing %s\n' "${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
