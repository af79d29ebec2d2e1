#!/usr/bin/env bash
# The Python environment ovbench's Python side (torch engine, reference checks) runs in.
#
#   scripts/pyenv.sh [REQUIREMENTS.txt ...]    # prints the interpreter's path on stdout
#
# One virtual environment, cached outside the checkout so clones and CI reruns on the same
# machine share it: $OVBENCH_PYENV, else ${XDG_CACHE_HOME:-~/.cache}/ovbench/pyenv. Each
# requirements file is installed once (pinned versions; a stamp of its SHA-256 marks it done)
# under a lock, so concurrent callers never install into the same venv at once.
# OVBENCH_PYTHON=/path/to/python uses that interpreter as it is and installs nothing (a GPU
# machine's own PyTorch, which has no network).
set -euo pipefail
if [ -n "${OVBENCH_PYTHON:-}" ]; then
  command -v "$OVBENCH_PYTHON" >/dev/null || { echo "pyenv.sh: OVBENCH_PYTHON=$OVBENCH_PYTHON is not an interpreter" >&2; exit 2; }
  command -v "$OVBENCH_PYTHON"
  exit 0
fi
ENV_DIR="${OVBENCH_PYENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ovbench/pyenv}"
mkdir -p "$(dirname "$ENV_DIR")"
exec 9>"$ENV_DIR.lock"
flock 9
if [ ! -x "$ENV_DIR/bin/python" ]; then
  echo "pyenv.sh: creating $ENV_DIR" >&2
  python3 -m venv "$ENV_DIR"
  "$ENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
fi
for req in "$@"; do
  [ -f "$req" ] || { echo "pyenv.sh: no requirements file $req" >&2; exit 2; }
  sum=$(sha256sum "$req" | cut -c1-16)
  stamp="$ENV_DIR/.installed-$(basename "$(dirname "$req")")-$(basename "$req" .txt)-$sum"
  if [ ! -e "$stamp" ]; then
    echo "pyenv.sh: installing $req into $ENV_DIR (first use; torch's wheels are several GB)" >&2
    start=$(date +%s)
    "$ENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    echo "pyenv.sh: $req installed in $(( $(date +%s) - start )) s" >&2
    touch "$stamp"
  fi
done
echo "$ENV_DIR/bin/python"
