"""Pick a headless OpenGL platform for pyrender and import it safely.

PyOpenGL reads ``PYOPENGL_PLATFORM`` once, when ``OpenGL`` is first imported, so the choice has to be made before
anything imports ``pyrender`` or ``OpenGL``. Everything in MEPO that needs pyrender goes through ``import_pyrender()``.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import ModuleType
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

ENV_VAR = "PYOPENGL_PLATFORM"
CANDIDATES = ("egl", "osmesa")   # EGL first: it uses a GPU when there is one, and Mesa's llvmpipe when not

# Creating a context can abort the whole process (not just raise) when a driver is missing or broken,
# so each candidate is tried in a child process.
_PROBE = """
import numpy as np
if not hasattr(np, "infty"):
    np.infty = np.inf
import pyrender
r = pyrender.OffscreenRenderer(8, 8)
scene = pyrender.Scene()
scene.add(pyrender.PerspectiveCamera(yfov=1.0))
r.render(scene)
r.delete()
"""

_chosen: Optional[str] = None


def _platform_works(platform: str, timeout_s: float = 60.0) -> bool:
    env = dict(os.environ, **{ENV_VAR: platform})
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    if done.returncode != 0:
        log.debug("GL platform %s failed: %s", platform, done.stderr.decode(errors="replace")[-500:])
    return done.returncode == 0


def choose_platform() -> str:
    """Set ``PYOPENGL_PLATFORM`` (unless the user already did) and return it.

    The probe runs at most once per process; an existing environment variable is always respected.
    """
    global _chosen
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    if _chosen is None:
        if "OpenGL" in sys.modules:
            log.warning("OpenGL was imported before choose_platform(); PyOpenGL's own platform choice stands")
        for platform in CANDIDATES:
            if _platform_works(platform):
                _chosen = platform
                break
        else:
            raise RuntimeError(
                "No headless OpenGL platform works (tried EGL and OSMesa). On Debian/Ubuntu install "
                "`libegl1 libgl1 libgl1-mesa-dri libosmesa6`; OSMesa also needs PyOpenGL>=3.1.10.")
        log.info("Using OpenGL platform %s", _chosen)
    os.environ[ENV_VAR] = _chosen
    return _chosen


def import_pyrender() -> ModuleType:
    """Choose the GL platform, make numpy 2 acceptable to pyrender, and return the ``pyrender`` module."""
    choose_platform()
    # pyrender 0.1.45 (the latest release) still uses ``np.infty``, which numpy 2 removed; bounds, centroids and
    # shadows fail without it. This is the one place MEPO restores the alias.
    if not hasattr(np, "infty"):
        np.infty = np.inf
    import pyrender
    return pyrender


def delete_offscreen(renderer) -> None:
    """Free a ``pyrender.OffscreenRenderer`` without breaking other live GL contexts of this process.

    pyrender's EGL ``delete_context()`` calls ``eglTerminate`` on the display, which is shared process-wide, so closing
    one renderer would kill every other EGL renderer (EGL_BAD_DISPLAY on their next frame). Destroy only our context.
    """
    platform = renderer._platform
    if getattr(platform, "_egl_display", None) is not None:
        from OpenGL.EGL import eglDestroyContext

        def destroy_own_context():
            eglDestroyContext(platform._egl_display, platform._egl_context)
            platform._egl_context = platform._egl_display = None
        platform.delete_context = destroy_own_context
    renderer.delete()
