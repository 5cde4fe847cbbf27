#!/usr/bin/env bash
# Sets up MEPO Capture on a fresh Debian 12 machine with Python 3.11: system libraries (offscreen GL for the
# overlay renderer), a virtual environment in .venv, the package and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {  # installs the given Debian packages that are missing
  local missing=""
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
  [ -z "$missing" ] && return 0
  echo "setup: installing system packages:$missing"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}
# Offscreen OpenGL for the overlay renderer (EGL or OSMesa, software rendering works).
command -v dpkg >/dev/null && apt_install libegl1 libgl1 libgl1-mesa-dri libosmesa6 libglib2.0-0
# Qt's xcb platform for the desktop app (PyQt6), and Xvfb to run it (and its tests) in a real window without a screen.
command -v dpkg >/dev/null && apt_install libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
  libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libx11-xcb1 libfontconfig1 libdbus-1-3 \
  libglib2.0-0 xvfb
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; "$PY" -m venv .venv; }
fi
. .venv/bin/activate
pip install -q --upgrade pip
# torch first and pinned, so pip does not re-resolve it against the other packages.
python -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0"
pip install -q -e ".[dev]"
pip install -q --no-deps "pyrender==0.1.45"
# Blender's bpy for FBX export, in its own environment (~30 s, ~1 GB; MEPO_SKIP_BPY=1 skips it).
[ -n "${MEPO_SKIP_BPY:-}" ] || bash packaging/setup_bpy.sh
echo "setup: done ($(python -c 'import mepo_core, torch; print("torch", torch.__version__)'))"
