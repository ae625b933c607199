#!/usr/bin/env bash
# Set up AMT Studio on a fresh Debian or Ubuntu machine and then run one thing:
#   packaging/setup.sh studio   -> install what is missing, then start the studio
#   packaging/setup.sh test     -> install what is missing, then run the whole test suite
#   packaging/setup.sh install  -> install only
#   packaging/setup.sh env      -> say which Python environment the others use, and why; change nothing
# Idempotent: a second run installs nothing new and goes straight to the command.
#
# Where the Python packages go: into a project environment, `.venv` in the checkout, made with the standard
# library's `venv` (nothing to bootstrap; uv would need its own installer first). A distribution's Python refuses
# `pip install` into itself (PEP 668, "externally-managed-environment": Debian 12, Ubuntu 24.04), and a project
# environment is the one way that works on every Python, so every user and CI take this same path. Inside an
# already active virtual environment (VIRTUAL_ENV set, or PYTHON naming a venv's python) that one is used instead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
what="${1:-install}"
shift || true
case "$what" in
  studio | test | install | env) ;;
  *) echo "setup: unknown command '$what'; use one of: studio, test, install, env" >&2; exit 2 ;;
esac

if [ -z "${PYTHON:-}" ] && [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
fi
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: no Python at '$PYTHON'; install python3 (3.11 or newer) or set PYTHON=/path/to/python3" >&2
  exit 2
fi

# The environment: (kind, reason). `kind` is "venv" (PYTHON is a virtual environment's own python) or "project".
read -r kind reason < <("$PYTHON" - <<'PY'
import os, sys, sysconfig
if sys.version_info < (3, 11):
    print("old", f"Python {sys.version.split()[0]} is older than 3.11")
elif sys.prefix != sys.base_prefix:
    print("venv", f"{sys.prefix} is a virtual environment")
elif os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")):
    print("project", f"{sys.executable} is externally managed (PEP 668)")
else:
    print("project", f"{sys.executable} is shared; the project keeps its own packages")
PY
)
if [ "$kind" = old ]; then
  echo "setup: $reason; install python3.11 and run again with PYTHON=/usr/bin/python3.11" >&2
  exit 2
fi
if [ "$kind" = venv ]; then
  env_dir="$("$PYTHON" -c 'import sys; print(sys.prefix)')"
else
  env_dir="$here/.venv"
fi
echo "setup: Python environment $env_dir ($reason)"
[ "$what" = env ] && exit 0

system_packages=(
  libusb-1.0-0 libgomp1 libegl1 libgl1 libvulkan1 mesa-vulkan-drivers
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libdbus-1-3 libfontconfig1 xvfb xauth
)
# Debian and Ubuntu ship `venv` without `ensurepip`: python3-venv (python3.X-venv) brings it.
if [ "$kind" = project ] && [ ! -x "$env_dir/bin/python" ] && ! "$PYTHON" -c "import ensurepip" 2>/dev/null; then
  system_packages+=("python$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv")
fi

missing=()
for pkg in "${system_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system libraries: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$env_dir/bin/python" ]; then
  echo "setup: creating the project environment $env_dir"
  "$PYTHON" -m venv "$env_dir"
fi
py="$env_dir/bin/python"

# The project and its Python dependencies (torch comes with its CUDA libraries from PyPI; it runs on the CPU too).
# Installed again when pyproject.toml or setup.py changed since the last install (a pull that adds a dependency).
stamp="$env_dir/.amt-installed"
wanted="$(cat pyproject.toml setup.py | "$py" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] \
   || ! "$py" -c "import amt_core, amt_assets, torch, timm, open3d, PySide6, pyqtgraph, smplx, trimesh, pytest, pytestqt, hypothesis, matplotlib, importlinter" 2>/dev/null; then
  echo "setup: installing Python packages into $env_dir (the first time takes several minutes)"
  "$py" -m pip install --disable-pip-version-check -q -e ".[dev]"
  echo "$wanted" > "$stamp"
fi

export VIRTUAL_ENV="$env_dir"
export PATH="$env_dir/bin:$PATH"
case "$what" in
  studio) exec "$env_dir/bin/amt-studio" "$@" ;;
  test) exec "$py" -m pytest "$@" ;;
  install) echo "setup: done; the commands are in $env_dir/bin (amt-core, amt-studio)" ;;
esac
