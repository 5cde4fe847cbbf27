"""`mepo` / `mepo --gui [--video F | --image DIR | --camera N] [--record T.npz --max-frames N --screenshot S.png --quit]`."""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    from mepo_core.engine.backends import BACKENDS
    p = argparse.ArgumentParser(prog="mepo --gui", description="MEPO Capture desktop app.")
    p.add_argument("--gui", action="store_true", help=argparse.SUPPRESS)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="open this video file")
    src.add_argument("--image", help="open this image folder (or image)")
    src.add_argument("--camera", type=int, help="open this camera index (default: 0 when no file is given)")
    p.add_argument("--model-dir", help="SMPL-X model folder (default: the one in Settings, else the open model)")
    p.add_argument("--fov", type=float, help="horizontal field of view in degrees")
    p.add_argument("--max-frames", type=int, help="stop the video after this many frames")
    p.add_argument("--smooth", help="smoothing preset (default: Settings; scripted runs: as `mepo --video/--image`)")
    p.add_argument("--backend", default="litert", choices=("auto", *BACKENDS),
                   help="inference engine for the landmark models (as `mepo --backend`)")
    p.add_argument("--record", metavar="TAKE.npz", help="record the whole input to this take (every frame processed)")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window when the input ends")
    p.add_argument("--quit", action="store_true", help="exit when the input ends (after --record/--screenshot)")
    return p.parse_args(argv)


def use_pyqt_plugins() -> None:
    """opencv-python (pulled in by mediapipe) points Qt at its own, incompatible Qt plugins when cv2 is imported;
    import it first and drop those settings so PyQt6 loads its own platform plugins (xcb, offscreen)."""
    import os

    import cv2
    cv2_dir = os.path.dirname(cv2.__file__)
    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        if os.environ.get(var, "").startswith(cv2_dir):
            del os.environ[var]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_pyqt_plugins()
    from PyQt6.QtWidgets import QApplication

    from .settings import AppSettings
    from .window import MainWindow
    from .worker import SourceSpec

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MEPO Capture")
    settings = AppSettings()
    model_dir = args.model_dir or settings.model_dir or None
    scripted = bool(args.record or args.screenshot or args.quit)
    # Scripted runs use the CLI's default preset, so their takes equal what `mepo --video ... --out` writes.
    smoothing = args.smooth or (("off" if args.image else "medium") if scripted else settings.smoothing)

    def pipeline_factory(smooth: str):
        from mepo_core.pipeline import CapturePipeline
        return CapturePipeline.create(model_dir=model_dir, still_image=bool(args.image), with_vertices=False,
                                      backend=args.backend, smooth=smooth)

    window = MainWindow(settings, pipeline_factory, smoothing=smoothing)
    exit_code = {"value": 0}

    def finish(code: int) -> None:
        exit_code["value"] = code
        window.close()
        app.exit(code)

    window.scriptFinished.connect(finish)
    window.show()
    spec = None
    if args.video:
        spec = SourceSpec("video", args.video, max_frames=args.max_frames, fov_deg=args.fov)
    elif args.image:
        spec = SourceSpec("images", args.image, fov_deg=args.fov)
    if spec is None and scripted:
        print("mepo: error: --record/--screenshot/--quit need --video or --image", file=sys.stderr)
        return 2
    if spec is not None and scripted:
        window.run_script(spec, args.record, args.screenshot, args.quit)
    elif spec is not None:
        window.open_source(spec)
    else:
        window.open_camera_or_explain(args.camera or 0)
    code = app.exec()
    return exit_code["value"] or code
