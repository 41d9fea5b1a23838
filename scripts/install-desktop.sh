#!/usr/bin/env bash
# Installs the desktop entry and icon of gender-classifier for the current user, so the app shows
# in the application menu and in a file manager's "Open with". Run it after
# `cargo install --path . --locked` (the entry starts `gender-classifier` from PATH).
#
#   scripts/install-desktop.sh             install into ${XDG_DATA_HOME:-~/.local/share}
#   scripts/install-desktop.sh --uninstall remove what it installed
#
# Nothing else is touched: the models are built into the binary, and the user's trained models
# live in the data folder the app makes on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
apps="$data/applications"
icons="$data/icons/hicolor"
entry="$apps/gender-classifier.desktop"
png="$icons/256x256/apps/gender-classifier.png"
svg="$icons/scalable/apps/gender-classifier.svg"

refresh() {
  if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$apps" || true; fi
  if command -v gtk-update-icon-cache >/dev/null 2>&1; then gtk-update-icon-cache -q -t "$icons" || true; fi
}

case "${1:-}" in
  --uninstall)
    rm -f "$entry" "$png" "$svg"
    refresh
    echo "removed the desktop entry and icon from $data"
    ;;
  "")
    if ! command -v gender-classifier >/dev/null 2>&1; then
      echo "note: gender-classifier is not on PATH yet; install it with: cargo install --path $here --locked" >&2
    fi
    install -Dm644 "$here/assets/gender-classifier.desktop" "$entry"
    install -Dm644 "$here/assets/icons/gender-classifier.png" "$png"
    install -Dm644 "$here/assets/icons/gender-classifier.svg" "$svg"
    refresh
    echo "installed $entry and the icon under $icons"
    ;;
  *)
    echo "usage: $0 [--uninstall]" >&2
    exit 2
    ;;
esac
