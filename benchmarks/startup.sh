#!/usr/bin/env bash
# Start-up time of enchufe compared with the bare interpreter and with ncat.
#
#   bash benchmarks/startup.sh            # from the repository root
#   RUNS=50 bash benchmarks/startup.sh    # more runs per command (default 30)
#   bash benchmarks/startup.sh --json PATH  # also the measurements as JSON (benchmarks/_results.py)
#
# One hyperfine run compares:
#   python3 -c pass            the floor: an interpreter that does nothing
#   python3 -I -S -c pass      the same without site (no .pth files, no user site)
#   enchufe --version          the console script (the real one, not the pyenv shim)
#   python3 -m enchufe --version
#   enchufe --version under python3 -I -S (no site, no .pth files: enchufe's own cost)
#   python3 -c pass and python3 -m enchufe --version in a venv with no other .pth file
#   ncat --version
#   enchufe 127.0.0.1 PORT     a connect refused at once (closed loopback port; exit 1)
#   ncat 127.0.0.1 PORT        the same for ncat
# then prints the ratio enchufe / `python3 -c pass` (target: <= 1.5x) and the
# slowest imports of `python3 -X importtime -m enchufe --version`.
#
# "python3" is resolved to the real interpreter (sys.executable): under pyenv the
# python3 found on PATH is a bash shim that costs more than the interpreter itself
# and would make every Python command look alike.
set -euo pipefail
# Timing with PYTHONDONTWRITEBYTECODE set would measure compiling enchufe's source on
# every start, which an installed package never does.
unset PYTHONDONTWRITEBYTECODE
ROOT=$(cd "$(dirname "$0")/.." && pwd)

RESULTS_JSON=
if [ "${1:-}" = --json ] && [ -n "${2:-}" ]; then
    RESULTS_JSON=$2
elif [ $# -gt 0 ]; then
    echo "usage: [RUNS=N WARMUP=N TOP=N] bash benchmarks/startup.sh [--json PATH]" >&2
    exit 2
fi

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-5}
TOP=${TOP:-15}

if ! command -v hyperfine >/dev/null 2>&1; then
    echo "hyperfine not found; installing it with apt-get" >&2
    apt-get install -y hyperfine >&2 || { apt-get update >&2 && apt-get install -y hyperfine >&2; }
fi

PY=$(python3 -c 'import sys; print(sys.executable)')
ENCHUFE=$("$PY" -c 'import sys, os; print(os.path.join(os.path.dirname(sys.executable), "enchufe"))')
NCAT=$(command -v ncat || true)
[ -x "$ENCHUFE" ] || { echo "console script not found: $ENCHUFE (pip install -e .)" >&2; exit 2; }

# A loopback port with nothing listening: bind port 0, note the port, close.
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

# hyperfine -i ignores every non-zero exit, so check the expected statuses first.
expect() {
    local want=$1; shift
    local got=0
    "$@" >/dev/null 2>&1 </dev/null || got=$?
    if [ "$got" != "$want" ]; then
        echo "unexpected exit status $got (wanted $want): $*" >&2
        exit 2
    fi
}
# enchufe with neither site nor .pth files, to separate its own cost from the site's.
SRC=$("$PY" -c 'import enchufe, os; print(os.path.dirname(os.path.dirname(enchufe.__file__)))')
NOSITE="import sys; sys.path.insert(0, '$SRC'); from enchufe.cli.main import main; sys.exit(main(['--version']))"
# The same interpreter in a venv of our own with enchufe installed as a user gets it
# (pip install ., not editable): a clean site, without whatever .pth files the main
# site-packages has (a .pth that imports a package makes every start slower and
# pre-loads modules enchufe needs), and the real `enchufe` launcher script.
VENV=${TMPDIR:-/tmp}/enchufe-bench-venv
[ -x "$VENV/bin/pip" ] || { rm -rf "$VENV" && "$PY" -m venv "$VENV"; }
PIP_ROOT_USER_ACTION=ignore "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT"
VPY=$VENV/bin/python
VENCHUFE=$VENV/bin/enchufe
expect 0 "$ENCHUFE" --version
expect 0 "$VENCHUFE" --version
expect 1 "$VENCHUFE" 127.0.0.1 "$PORT"
expect 0 "$PY" -I -S -c "$NOSITE"
expect 0 "$PY" -m enchufe --version
expect 1 "$ENCHUFE" 127.0.0.1 "$PORT"

cmds=(
    "$PY -c pass"
    "$PY -I -S -c pass"
    "$ENCHUFE --version"
    "$PY -m enchufe --version"
    "$PY -I -S -c \"$NOSITE\""
    "$VPY -c pass"
    "$VENCHUFE --version"
    "$VENCHUFE 127.0.0.1 $PORT"
)
names=(
    "python3 -c pass"
    "python3 -I -S -c pass"
    "enchufe --version"
    "python3 -m enchufe --version"
    "enchufe --version, no site (-I -S)"
    "python3 -c pass, clean venv"
    "enchufe --version, clean venv"
    "enchufe 127.0.0.1 PORT (refused), clean venv"
)
if [ -n "$NCAT" ]; then
    expect 0 "$NCAT" --version
    expect 1 "$NCAT" 127.0.0.1 "$PORT"
    cmds+=("$NCAT --version")
    names+=("ncat --version")
fi
cmds+=("$ENCHUFE 127.0.0.1 $PORT")
names+=("enchufe 127.0.0.1 PORT (refused)")
if [ -n "$NCAT" ]; then
    cmds+=("$NCAT 127.0.0.1 $PORT")
    names+=("ncat 127.0.0.1 PORT (refused)")
fi

args=()
for i in "${!cmds[@]}"; do
    args+=(-n "${names[$i]}" "${cmds[$i]}")
done

JSON=$(mktemp /tmp/enchufe-startup.XXXXXX.json)
trap 'rm -f "$JSON"' EXIT

echo "interpreter: $PY ($("$PY" -V 2>&1)); console script: $ENCHUFE; closed port: $PORT"
echo "$(date +%F), $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# -N: no intermediate shell; -i: the refused connects exit 1 on purpose. Its progress and
# per-command lines go to stderr: stdout is the Markdown (benchmarks/suite.py keeps it).
hyperfine -N -i --warmup "$WARMUP" --runs "$RUNS" --export-json "$JSON" "${args[@]}" >&2

echo
echo "## Start-up summary (mean of $RUNS runs)"
echo
"$PY" - "$JSON" <<'EOF'
import json
import sys

results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results["python3 -c pass"]["mean"]
print("| command | mean ms | ± ms | min ms | × python3 -c pass |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, r in results.items():
    print(f"| `{name}` | {r['mean'] * 1e3:.1f} | {r['stddev'] * 1e3:.1f} | {r['min'] * 1e3:.1f} | {r['mean'] / base:.2f} |")
ratio = results["enchufe --version"]["mean"] / base
verdict = "meets" if ratio <= 1.5 else "MISSES"
print()
print(f"enchufe --version / python3 -c pass = {ratio:.2f}x ({verdict} the 1.5x target)")
own = results["enchufe --version, no site (-I -S)"]["mean"]
bare = results["python3 -I -S -c pass"]["mean"]
print(f"without site: enchufe / python3 -I -S -c pass = {own / bare:.2f}x; enchufe's own imports and work: {(own - bare) * 1e3:.1f} ms")
print(f"site and .pth files cost {(base - bare) * 1e3:.1f} ms of every interpreter start here")
venv_base = results["python3 -c pass, clean venv"]["mean"]
venv_version = results["enchufe --version, clean venv"]["mean"]
venv_refused = results["enchufe 127.0.0.1 PORT (refused), clean venv"]["mean"]
print(f"clean venv: enchufe --version / python3 -c pass = {venv_version / venv_base:.2f}x")
print(f"clean venv: refused connect / python3 -c pass = {venv_refused / venv_base:.2f}x")
EOF
if [ -n "$RESULTS_JSON" ]; then
    "$PY" - "$JSON" "$RESULTS_JSON" "$ROOT/benchmarks" <<'EOF'
import json
import sys

sys.path.insert(0, sys.argv[3])
from _results import Results

# Each hyperfine command as (case, tool): the tool is what starts, the case what it does.
CASES = {
    "python3 -c pass": ("--version", "python3 -c pass"),
    "enchufe --version": ("--version", "enchufe"),
    "python3 -m enchufe --version": ("--version", "python3 -m enchufe"),
    "ncat --version": ("--version", "ncat"),
    "python3 -I -S -c pass": ("--version, no site", "python3 -c pass"),
    "enchufe --version, no site (-I -S)": ("--version, no site", "enchufe"),
    "python3 -c pass, clean venv": ("--version, clean venv", "python3 -c pass"),
    "enchufe --version, clean venv": ("--version, clean venv", "enchufe"),
    "enchufe 127.0.0.1 PORT (refused)": ("refused connect", "enchufe"),
    "ncat 127.0.0.1 PORT (refused)": ("refused connect", "ncat"),
    "enchufe 127.0.0.1 PORT (refused), clean venv": ("refused connect, clean venv", "enchufe"),
}
results = Results("startup", reference="python3 -c pass")
for run in json.load(open(sys.argv[1]))["results"]:
    case, tool = CASES[run["command"]]
    times = [1000 * t for t in run["times"]]
    results.add(case, tool, "start-up time (mean)", "ms", times, value=1000 * run["mean"], better="lower")
results.write(sys.argv[2])
EOF
fi

importtime() {
    local py=$1 label=$2
    echo
    echo "## Slowest imports, $label: python3 -X importtime -m enchufe --version (top $TOP by cumulative µs)"
    echo
    # Warm the bytecode cache, then keep the import lines of one run.
    "$py" -m enchufe --version >/dev/null 2>&1
    local lines
    lines=$("$py" -X importtime -m enchufe --version 2>&1 >/dev/null | grep '^import time: *[0-9]')
    echo '```'
    echo "$lines" \
        | awk -F'|' '{ gsub(/^import time: */, "", $1); printf "%10d %10d  %s\n", $2, $1, $3 }' \
        | sort -rn | head -n "$TOP" \
        | awk 'BEGIN { printf "%10s %10s  %s\n", "cumul µs", "self µs", "module" } { print }'
    echo '```'
    echo
    echo "modules imported: $(echo "$lines" | wc -l), of which enchufe's: $(echo "$lines" | grep -c '| *enchufe' || true)"
}
importtime "$PY" "this interpreter's site-packages"
importtime "$VPY" "clean venv"
