"""The `mepo` command: capture (default), inspect, bench, model; no arguments opens the desktop app."""
from __future__ import annotations

import argparse
import os
import sys

VERBS = ("inspect", "bench", "model", "eval", "export", "train")


def _capture_parser() -> argparse.ArgumentParser:
    from .engine.backends import BACKENDS
    p = argparse.ArgumentParser(prog="mepo", description="Multi-person whole-body 3D capture (SMPL-X layout).",
                                epilog="verbs: mepo inspect TAKE.npz | mepo export TAKE.npz ... | mepo bench [tracking|nets|refiner|backends] | mepo eval h36m|mepo|refiner | "
                                       "mepo train mepo|refiner | "
                                       "mepo model build")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="input video file")
    src.add_argument("--image", help="input image file or folder of images")
    src.add_argument("--camera", type=int, help="camera index (live)")
    p.add_argument("--out", help="output take (.npz)")
    p.add_argument("--overlay", help="overlay output: .mp4 for videos, .png/.jpg for images")
    p.add_argument("--model-dir", help="directory with a real SMPL-X model (SMPLX_NEUTRAL.npz); default: open model")
    p.add_argument("--fov", type=float, help="horizontal field of view in degrees (default: EXIF or 60)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--no-hands", action="store_true", help="skip hand landmarks (faster)")
    p.add_argument("--no-face", action="store_true", help="skip face landmarks (faster)")
    p.add_argument("--refine-iters", type=int, default=2, help="refinement iterations per frame (0 = IK only)")
    p.add_argument("--estimator", choices=("fit", "mepo", "skeleton"), default="fit",
                   help="fit: IK + refinement (default); mepo: the learned MEPO networks (assets/nets); skeleton: "
                        "learned 3D skeleton + twist/shape + IK (assets/refiner/skeleton.pt; --refine-iters unused)")
    p.add_argument("--refiner", choices=("off", "on"), default="off",
                   help="on: relation-aware multi-person refiner after the estimator (assets/refiner)")
    p.add_argument("--refiner-weights", help="refiner weights (default: assets/refiner/refiner.pt, refiner_mepo.pt or "
                                             "refiner_skeleton.pt, the ones trained for the --estimator)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the landmark models")
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="litert",
                   help="inference engine for the detector/landmark models (mepo_core/engine): litert = LiteRT "
                        "XNNPACK (default); torch/compile/onnx/tensorrt = the torch ports; auto = TensorRT on an "
                        "NVIDIA GPU, else the fastest CPU backend measured on this machine")
    p.add_argument("--smooth", choices=("off", "live", "light", "medium", "strong"),
                   help="temporal smoothing: live = causal One-Euro (no look-ahead); light/medium/strong = offline "
                        "window both ways (default: medium for --video, live for --camera, off for --image)")
    p.add_argument("--gui", action="store_true", help="open the desktop app")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .export.cli import add_export_arguments
    add_export_arguments(p.add_argument_group("export after capture (needs --out)"))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .errors import MepoError
    try:
        if not argv or argv[0] == "--gui" or "--gui" in argv:
            return _run_app(argv)
        if argv[0] in VERBS:
            return _run_verb(argv[0], argv[1:])
        return _run_capture(_capture_parser().parse_args(argv))
    except MepoError as e:
        print(f"mepo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mepo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
    except Exception as e:  # BodyModelError and friends from other layers carry a one-line message too
        if type(e).__name__.endswith("Error") and type(e).__module__.startswith("mepo_core"):
            print(f"mepo: error: {e}", file=sys.stderr)
            return 2
        raise


def _run_capture(args) -> int:
    from .errors import MepoError
    from .sources import CameraSource, ImageSource, VideoSource
    if not (args.video or args.image or args.camera is not None):
        raise MepoError("give an input: --video FILE, --image FILE|DIR or --camera N (or no arguments for the app)")
    if not args.out and not args.overlay:
        raise MepoError("give --out TAKE.npz and/or --overlay FILE")
    if (args.fbx or args.glb or args.bvh) and not args.out:
        raise MepoError("--fbx/--glb/--bvh export the take: give --out TAKE.npz too")
    for path in (args.out, args.overlay):
        _check_writable(path)
    if args.video:
        source = VideoSource(args.video, fov_deg=args.fov, max_frames=args.max_frames)
    elif args.image:
        source = ImageSource(args.image, fov_deg=args.fov)
    else:
        source = CameraSource(args.camera, fov_deg=args.fov)
    from .pipeline import CapturePipeline
    from .capture import run_capture
    pipeline = CapturePipeline.create(model_dir=args.model_dir, still_image=bool(args.image), hands=not args.no_hands,
                                      face=not args.no_face, refine_iterations=args.refine_iters,
                                      with_vertices=bool(args.overlay), num_threads=args.threads,
                                      estimator=args.estimator, refiner=args.refiner == "on",
                                      refiner_weights=args.refiner_weights, backend=args.backend,
                                      smooth=args.smooth or ("medium" if args.video else "live" if args.camera is not None
                                                             else "off"))
    result = run_capture(source, pipeline, args.out, args.overlay, progress=not args.quiet)
    fps = result.frames / max(result.seconds, 1e-6)
    state = "interrupted; saved" if result.interrupted else "done"
    print(f"mepo: {state} {result.frames} frames, {result.people} people, {fps:.1f} fps"
          + (f" -> {result.out}" if result.out else "") + (f", overlay {result.overlay}" if result.overlay else ""),
          file=sys.stderr)
    if result.people == 0:
        print("mepo: error: no person found in the input", file=sys.stderr)
        return 3
    if result.out and (args.fbx or args.glb or args.bvh):
        from .export import export_take
        from .export.cli import options_from_args
        written = export_take(result.out, fbx=args.fbx, glb=args.glb, bvh_dir=args.bvh,
                              options=options_from_args(args), progress=not args.quiet)
        print("mepo: exported " + ", ".join(written), file=sys.stderr)
    return 130 if result.interrupted else 0


def _check_writable(path: str | None) -> None:
    from .errors import MepoError
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MepoError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise MepoError(f"output folder is not writable: {folder}")


def _run_verb(verb: str, argv: list[str]) -> int:
    if verb == "inspect":
        p = argparse.ArgumentParser(prog="mepo inspect", description="Summarise a take NPZ.")
        p.add_argument("take")
        args = p.parse_args(argv)
        from .io.npz import describe_take, load_take
        print(describe_take(load_take(args.take)))
        return 0
    if verb == "bench":
        if argv and argv[0] == "tracking":          # `mepo bench tracking`: IDs, jitter, lag, depth order
            from .track.bench import main as tracking_bench_main
            return tracking_bench_main(argv[1:])
        if argv and argv[0] == "refiner":           # `mepo bench refiner`: per-frame cost for 1, 3, 6 people
            from .refine.train import bench_main as refiner_bench_main
            return refiner_bench_main(argv[1:])
        if argv and argv[0] == "backends":          # `mepo bench backends`: the pipeline on each inference engine
            from .engine.bench import main as backends_bench_main
            return backends_bench_main(argv[1:])
        if argv and argv[0] == "nets":              # `mepo bench nets`: per-person cost of the MEPO networks
            from .train.mepo import bench_main as nets_bench_main
            return nets_bench_main(argv[1:])
        from .bench import main as bench_main
        return bench_main(argv)
    if verb == "export":
        from .export.cli import main as export_main
        return export_main(argv)
    if verb == "train" and argv and argv[0] == "refiner":     # `mepo train refiner --variant ...`
        from .refine.train import train_main as refiner_train_main
        return refiner_train_main(argv)
    if verb == "train":                              # `mepo train mepo --ablation ...`
        from .train.mepo import train_main
        return train_main(argv)
    if verb == "eval":
        from .evaluate import main as eval_main
        return eval_main(argv)
    if verb == "model":
        p = argparse.ArgumentParser(prog="mepo model", description="Build the open body model from anny.")
        p.add_argument("action", choices=["build"])
        p.add_argument("--out", help="output directory (default: the project's cache dir)")
        args = p.parse_args(argv)
        from .body.anny_builder import main as build_main
        return build_main(["--out", args.out] if args.out else [])
    return 2


def _run_app(argv: list[str]) -> int:
    from .errors import MepoError
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")):
        raise MepoError("no display for the desktop app: run it in a desktop session, or `xvfb-run -a mepo ...`; "
                        "for headless capture use `mepo --video IN --out TAKE.npz`")
    try:
        from app.main import main as app_main
    except ImportError as e:
        raise MepoError(f"the desktop app is not available ({e.name} missing): pip install 'mepo-capture[app]'") from None
    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
