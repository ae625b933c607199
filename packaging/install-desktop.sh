#!/usr/bin/env bash
# Put AMT Studio in the desktop's application menu for the current user (no root needed):
#   packaging/install-desktop.sh            install the menu entry and icons
#   packaging/install-desktop.sh --remove   take them out again
# The entry runs `amt-studio`; when that is not on PATH (e.g. a virtual environment), the entry gets the full path
# of the `amt-studio` found now, or of this checkout's `python -m amt_studio`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
apps="$data/applications"
icons="$data/icons/hicolor"

if [ "${1:-}" = "--remove" ]; then
  rm -f "$apps/amt-studio.desktop" "$icons/scalable/apps/amt-studio.svg"
  for size in 48 128 256; do rm -f "$icons/${size}x${size}/apps/amt-studio.png"; done
  echo "removed AMT Studio from $apps"
  exit 0
fi

exec_line="amt-studio %f"
if command -v amt-studio >/dev/null 2>&1; then
  exec_line="$(command -v amt-studio) %f"
else
  python="${PYTHON:-$(command -v python3)}"
  exec_line="env PYTHONPATH=$(dirname "$here") $python -m amt_studio %f"
fi

mkdir -p "$apps" "$icons/scalable/apps"
install -m 0644 "$here/icons/amt-studio.svg" "$icons/scalable/apps/amt-studio.svg"
for size in 48 128 256; do
  mkdir -p "$icons/${size}x${size}/apps"
  install -m 0644 "$here/icons/amt-studio-$size.png" "$icons/${size}x${size}/apps/amt-studio.png"
done
sed -e "s|^Exec=.*|Exec=$exec_line|" -e "/^TryExec=/d" "$here/amt-studio.desktop" > "$apps/amt-studio.desktop"
chmod 0644 "$apps/amt-studio.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons" || true
echo "installed AMT Studio in $apps (menu entry runs: $exec_line)"
