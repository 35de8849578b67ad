#!/usr/bin/env bash
# `make run`: start the workstation on the bundled chest CT.  Without a display (a server, CI) the
# window is rendered offscreen to build/medview-screenshot.png instead, and the path is printed.
set -euo pipefail
VENV=${VENV:-.venv}
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ] || [ -n "${QT_QPA_PLATFORM:-}" ]; then
  exec "$VENV/bin/medview" "$@"
fi
mkdir -p build
echo "medview: no display found; rendering the workstation offscreen to build/medview-screenshot.png"
QT_QPA_PLATFORM=offscreen exec "$VENV/bin/medview" --screenshot build/medview-screenshot.png "$@"
