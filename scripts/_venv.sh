# Sourced by scripts/serve and scripts/test: make .venv with Python 3.11 and install Conclave.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  # Installs Debian packages that are missing; apt-get update only when something is.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "Conclave needs Python 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3.11-venv
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi

install_conclave() {
  # pip install -e ".$1" into .venv, only when pyproject.toml (the dependencies) or the native module changed
  # since the last install with these extras: the editable install needs nothing else
  # redone, and pip takes 10-30 s even when it has nothing to do.
  local extras="$1" stamp=".venv/.conclave-installed${1:+-test}"
  local want
  want="$(cat pyproject.toml setup.py sfu/transport/native/forward.c | sha256sum | cut -d' ' -f1) $extras"
  if [ -x .venv/bin/conclave ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  # gcc and the Python headers build the native forwarding module (setup.py); without
  # them the install still works and the workers forward in Python.
  apt_install gcc python3-dev
  echo "installing Conclave into .venv (pip install -e .$extras)"
  # pip's own failure fails the script (pipefail); grep finding nothing to show does not.
  .venv/bin/python -m pip install -q -e ".$extras" 2>&1 | { grep -v "^DEPRECATION: .*editable" || true; }
  echo "$want" > "$stamp"
}
