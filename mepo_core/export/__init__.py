"""Export a take NPZ to FBX (through Blender's bpy in its own environment), GLB and BVH.

``export_take(take_path, fbx=..., glb=..., bvh_dir=..., options=ExportOptions(...))``: every output is written
to a temporary name beside it and renamed into place, so a failed export leaves nothing half-written.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import MepoError
from .motion import ExportOptions
from .scene import build_people, load_export_take

__all__ = ["ExportOptions", "export_take"]


@contextmanager
def atomic_path(target: str | Path, suffix: str):
    """Yield a temp path in ``target``'s folder; on success it is renamed to ``target``, on failure removed."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise MepoError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=folder)
    except OSError as e:
        raise MepoError(f"cannot write to {folder}: {e.strerror}") from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_take(take_path: str, fbx: str | None = None, glb: str | None = None, bvh_dir: str | None = None,
                options: ExportOptions | None = None, progress: bool = True) -> list[str]:
    """Write the requested formats; returns the written paths. MepoError for unusable input or outputs."""
    from tqdm import tqdm
    options = options or ExportOptions()
    if not (fbx or glb or bvh_dir):
        raise MepoError("give at least one output: --fbx FILE, --glb FILE or --bvh DIR")
    if bvh_dir and not os.path.isdir(bvh_dir):
        if os.path.exists(bvh_dir):
            raise MepoError(f"--bvh wants a folder: {bvh_dir}")
        os.makedirs(bvh_dir)
    if fbx:
        from .fbx import bpy_python
        bpy_python()                       # fail before any work when Blender's environment is missing
    take = load_export_take(take_path)
    people = build_people(take, options)
    fps = float(take["fps"])
    names = options.joint_names()
    T = take["valid"].shape[0]
    total = T * len(people) * (bool(glb) + bool(bvh_dir) + bool(fbx))
    written = []
    with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True, file=sys.stderr,
              desc="export") as bar:
        if glb:
            from .glb import write_glb
            with atomic_path(glb, ".tmp.glb") as tmp:
                write_glb(tmp, people, names, fps, progress=bar.update)
            written.append(str(glb))
        if bvh_dir:
            from .bvh import write_bvh
            for person in people:
                target = Path(bvh_dir) / f"{Path(take_path).stem}_{person.motion.name}.bvh"
                with atomic_path(target, ".tmp.bvh") as tmp:
                    write_bvh(tmp, person, names, fps, progress=bar.update)
                written.append(str(target))
        if fbx:
            from .fbx import write_fbx
            with atomic_path(fbx, ".tmp.fbx") as tmp:
                write_fbx(tmp, take, people, options, progress=bar.update)
            written.append(str(fbx))
    return written
