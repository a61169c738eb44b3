#!/usr/bin/env bash
# Install everything the checks need (on a fresh Debian machine too), then run them all:
# ruff, mypy --strict, and the test suite on every Python from 3.11 to 3.13 found here.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # bytecode caching makes pytest's start-up much faster here

# Debian packages: the real peers the interoperability tests talk to.
declare -A package_of=([ncat]=ncat [socat]=socat [nc.openbsd]=netcat-openbsd [openssl]=openssl [curl]=curl)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export PIP_ROOT_USER_ACTION=ignore
python=${PYTHON:-python3}
"$python" -m pip install -q --disable-pip-version-check -e '.[dev]'
"$python" -m ruff check src tests benchmarks
"$python" -m ruff format --check src tests benchmarks
"$python" -m mypy
"$python" -m pytest

# The other supported Pythons, when pyenv has them: the library and command tests.
if command -v pyenv >/dev/null 2>&1; then
    for minor in 3.12 3.13; do
        version=$(pyenv versions --bare | grep -E "^${minor}\.[0-9]+$" | tail -n 1 || true)
        [ -n "$version" ] || continue
        venv=".venv-$minor"
        [ -x "$venv/bin/python" ] || "$(pyenv root)/versions/$version/bin/python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
        "$venv/bin/python" -m pytest -q -m "not interop and not slow"
    done
fi
