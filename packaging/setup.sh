#!/usr/bin/env bash
# Set up AMT Studio on a fresh Debian machine (Python 3.11, root) and then run one thing:
#   packaging/setup.sh studio   -> install what is missing, then start the studio
#   packaging/setup.sh test     -> install what is missing, then run the whole test suite
#   packaging/setup.sh install  -> install only
# Idempotent: a second run installs nothing new and goes straight to the command.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
what="${1:-install}"
shift || true

PYTHON="${PYTHON:-python3}"

system_packages=(
  libusb-1.0-0 libgomp1 libegl1 libgl1 libvulkan1 mesa-vulkan-drivers
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libdbus-1-3 libfontconfig1 xvfb xauth
)

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

# The project and its Python dependencies (torch comes with its CUDA libraries from PyPI; it runs on the CPU too).
if ! "$PYTHON" -c "import amt_core, torch, timm, open3d, PySide6, pyqtgraph, smplx, trimesh, pytest, pytestqt, hypothesis, matplotlib" 2>/dev/null \
   || ! "$PYTHON" -m pip show amt-studio >/dev/null 2>&1; then
  echo "setup: installing Python packages (the first time takes several minutes)"
  "$PYTHON" -m pip install --disable-pip-version-check -q -e ".[dev]"
fi

case "$what" in
  studio) exec amt-studio "$@" ;;
  test) exec "$PYTHON" -m pytest "$@" ;;
  install) echo "setup: done" ;;
  *) echo "setup: unknown command '$what'; use one of: studio, test, install" >&2; exit 2 ;;
esac
