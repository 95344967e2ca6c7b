#!/usr/bin/env bash
# Install the Debian packages that provide the given commands, when they are missing:
#   scripts/system-packages.sh COMMAND:PACKAGE ...
# As root it runs apt-get; otherwise it names the packages and fails, so that a test
# run never stops half-way on a missing browser. `make test` and .ci/run use it.
set -euo pipefail
missing=()
for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
else
    echo "missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
