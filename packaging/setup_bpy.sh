#!/usr/bin/env bash
# Sets up .venv-bpy: Blender's bpy module in its own virtual environment, used by `mepo export --fbx`.
# bpy 5.0.x needs Python 3.11 and numpy<2, which clashes with the main environment (numpy 2), so the exporter
# runs Blender-side scripts in a subprocess with this environment's python. ~1 GB installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=""
# X11 client libraries bpy's shared object links against (no display is needed).
for pkg in libx11-6 libxrender1 libxfixes3 libxi6 libxext6 libsm6 libice6 libxkbcommon0; do
  command -v dpkg >/dev/null && { dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; }
done
if [ -n "$missing" ]; then
  echo "setup_bpy: installing system packages:$missing"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if .venv-bpy/bin/python -c 'import bpy, numpy, sys; sys.exit(bpy.app.version[:2] != (5, 0) or numpy.__version__ >= "2")' \
    2>/dev/null; then
  echo "setup_bpy: already set up"; exit 0
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup_bpy: bpy 5.0 needs Python 3.11 ($PY is $("$PY" -V 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv-bpy/bin/python ] || "$PY" -m venv .venv-bpy
.venv-bpy/bin/python -m pip install -q --upgrade pip
.venv-bpy/bin/python -m pip install -q "bpy==5.0.*" "numpy<2"
echo "setup_bpy: done ($(.venv-bpy/bin/python -c 'import bpy; print("bpy", bpy.app.version_string)'))"
