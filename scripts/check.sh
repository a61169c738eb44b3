#!/usr/bin/env bash
# Install everything the checks need (on a fresh Debian machine too), then run them all:
# ruff, mypy --strict, and the test suite on every Python from 3.11 to 3.13 found here.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # bytecode caching makes pytest's start-up much faster here

python=${PYTHON:-python3}

# Debian packages: the real peers the interoperability tests talk to (hyperfine: benchmarks/startup.sh), and venv for
# Debian's own Python (its pip refuses to install outside a virtual environment).
declare -A package_of=([ncat]=ncat [socat]=socat [iperf3]=iperf3 [nc.openbsd]=netcat-openbsd [openssl]=openssl [curl]=curl [ping]=iputils-ping [nft]=nftables [haproxy]=haproxy)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
"$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The dev tools, lupa (for --lua-exec), pyOpenSSL (for DTLS) and enchufe itself (editable) go into .venv,
# never into $python.
export PIP_ROOT_USER_ACTION=ignore
[ -x .venv/bin/python ] || "$python" -m venv .venv
venv_python=.venv/bin/python
"$venv_python" -m pip install -q --disable-pip-version-check -e '.[dev,lua,dtls]'
"$venv_python" -m ruff check src tests benchmarks fuzz scripts
"$venv_python" -m ruff format --check src tests benchmarks fuzz scripts
"$venv_python" -m mypy
"$venv_python" -m pytest

# The other supported Pythons, when pyenv has them: the library and command tests.
if command -v pyenv >/dev/null 2>&1; then
    for minor in 3.12 3.13; do
        version=$(pyenv versions --bare | grep -E "^${minor}\.[0-9]+$" | tail -n 1 || true)
        [ -n "$version" ] || continue
        venv=".venv-$minor"
        [ -x "$venv/bin/python" ] || "$(pyenv root)/versions/$version/bin/python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev,lua,dtls]'
        "$venv/bin/python" -m pytest -q -m "not interop and not slow"
    done
fi
