"""`mepo export TAKE.npz --fbx F --glb F --bvh DIR`: write a take to animation formats."""
from __future__ import annotations

import argparse
import sys


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Output and option flags shared by `mepo export` and capture (`mepo --video ... --fbx ...`)."""
    p.add_argument("--fbx", help="FBX output (needs .venv-bpy: packaging/setup_bpy.sh)")
    p.add_argument("--glb", help="GLB (glTF 2.0 binary) output")
    p.add_argument("--bvh", help="folder for BVH files, one per person")
    p.add_argument("--up", choices=["y", "z"], default="y", help="up axis: y (Unity, Unreal, glTF; default), z (Blender)")
    p.add_argument("--units", choices=["m", "cm"], default="m",
                   help="FBX/BVH units: m or cm (Unreal's unit); an FBX states its unit either way (glTF: metres)")
    p.add_argument("--skeleton-names", choices=["smplx", "mixamo"], default="smplx",
                   help="bone names: smplx, or mixamo (mixamorig:Hips, ...) for Unity Humanoid / Unreal retargeting")
    p.add_argument("--camera-space", action="store_true",
                   help="keep camera coordinates (axes turned to the up axis) instead of feet on the ground at frame 0")
    p.add_argument("--skeleton-only", action="store_true", help="no mesh, only the skeleton (for retargeting)")
    p.add_argument("--fixed-shape", action="store_true",
                   help="one bone length per person (rotation-only joints); default follows the take's per-frame shape")


def options_from_args(args):
    from . import ExportOptions
    return ExportOptions(up=args.up, units=args.units, skeleton_names=args.skeleton_names,
                         camera_space=args.camera_space, skeleton_only=args.skeleton_only,
                         fixed_shape=args.fixed_shape, model_dir=getattr(args, "model_dir", None))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mepo export", description="Export a take NPZ to FBX, GLB and/or BVH.")
    p.add_argument("take", help="take NPZ written by mepo --out")
    add_export_arguments(p)
    p.add_argument("--model-dir", help="the SMPL-X model directory when the take was captured with --model-dir")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    from . import export_take
    written = export_take(args.take, fbx=args.fbx, glb=args.glb, bvh_dir=args.bvh, options=options_from_args(args),
                          progress=not args.quiet)
    print("mepo: exported " + ", ".join(written), file=sys.stderr)
    return 0
