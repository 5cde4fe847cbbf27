"""The main window: sources, the two views, live figures, recording, takes and settings."""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                             QMainWindow, QPushButton, QSlider, QSplitter, QVBoxLayout, QWidget)

from mepo_core.sources import list_cameras

from .settings import AppSettings, SettingsDialog
from .takes import TakesPanel, recover_unfinished
from .views import ImageView, OrbitView
from .worker import CaptureWorker, FrameResult, SourceInfo, SourceSpec

RESOLUTIONS = ("default", "640x480", "1280x720", "1920x1080")
FRAME_RATES = ("default", "15", "30", "60")
NO_CAMERA = "No camera found. Open a video file or an image folder (left panel)."


class MainWindow(QMainWindow):
    scriptFinished = pyqtSignal(int)       # exit code of a scripted run

    def __init__(self, settings: AppSettings, pipeline_factory, cameras=None, smoothing: str | None = None):
        super().__init__()
        self.setWindowTitle("MEPO Capture")
        self.resize(1400, 820)
        self.settings = settings
        self.worker = CaptureWorker(pipeline_factory, smoothing=smoothing or settings.smoothing)
        self.cameras = list_cameras() if cameras is None else list(cameras)
        self.recording_path: str | None = None
        self.last_result: FrameResult | None = None
        self.latency_ms = 0.0
        self.script: dict | None = None
        self._closing = False
        self._build()
        w = self.worker
        w.pipelineReady.connect(lambda: self.status("pipeline ready"))
        w.pipelineFailed.connect(lambda m: self._fail(f"pipeline failed: {m}"))
        w.sourceOpened.connect(self._source_opened)
        w.sourceFailed.connect(self._source_failed)
        w.sourceEnded.connect(self._source_ended)
        w.frameReady.connect(self._show_result)
        w.viewReady.connect(self.view3d.show_image)
        w.recordingStarted.connect(lambda p: self._set_recording(p))
        w.recordingSaved.connect(self._recording_saved)
        w.recordingFailed.connect(lambda m: (self._set_recording(None), self._fail(m, script_exit=False)))
        self.view3d.orbitChanged.connect(w.set_orbit)
        for path in recover_unfinished(self.settings.output_dir) if Path(self.settings.output_dir).is_dir() else []:
            self.status(f"recovered an unfinished recording: {path}")
        self.takes.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        left = QWidget()
        lv = QVBoxLayout(left)
        cam_box = QGroupBox("Camera")
        cf = QFormLayout(cam_box)
        self.camera_combo = QComboBox()
        for i in self.cameras:
            self.camera_combo.addItem(f"Camera {i} (/dev/video{i})", i)
        self.resolution_combo = QComboBox()
        self.resolution_combo.addItems(RESOLUTIONS)
        self.fps_combo = QComboBox()
        self.fps_combo.addItems(FRAME_RATES)
        self.camera_button = QPushButton("Open camera")
        self.camera_button.clicked.connect(self.open_selected_camera)
        self.camera_message = QLabel("" if self.cameras else NO_CAMERA)
        self.camera_message.setWordWrap(True)
        self.camera_message.setStyleSheet("color: #d9822b;")
        for widget in (self.camera_combo, self.resolution_combo, self.fps_combo, self.camera_button):
            widget.setEnabled(bool(self.cameras))
        cf.addRow("Device", self.camera_combo)
        cf.addRow("Resolution", self.resolution_combo)
        cf.addRow("FPS", self.fps_combo)
        cf.addRow(self.camera_button)
        cf.addRow(self.camera_message)
        lv.addWidget(cam_box)

        file_box = QGroupBox("Files")
        fv = QVBoxLayout(file_box)
        b = QPushButton("Open video…")
        b.clicked.connect(self._choose_video)
        fv.addWidget(b)
        b = QPushButton("Open image folder…")
        b.clicked.connect(self._choose_folder)
        fv.addWidget(b)
        self.every_frame = QCheckBox("Process every frame (no dropping)")
        self.every_frame.toggled.connect(lambda on: setattr(self.worker, "every_frame", on))
        fv.addWidget(self.every_frame)
        row = QHBoxLayout()
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._pause_toggled)
        row.addWidget(self.pause_button)
        self.position_label = QLabel("–")
        row.addWidget(self.position_label)
        fv.addLayout(row)
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setEnabled(False)
        self.seek_slider.sliderReleased.connect(lambda: self.worker.seek(self.seek_slider.value()))
        fv.addWidget(self.seek_slider)
        lv.addWidget(file_box)

        view_box = QGroupBox("Show")
        vv = QVBoxLayout(view_box)
        self.toggles = {}
        for name, default in (("mesh", True), ("skeleton", False), ("hands", False), ("face", False),
                              ("view3d", True)):
            box = QCheckBox("3D view" if name == "view3d" else name.capitalize())
            box.setChecked(default)
            box.toggled.connect(self._options_changed)
            vv.addWidget(box)
            self.toggles[name] = box
        lv.addWidget(view_box)
        self.takes = TakesPanel(self.settings)
        self.takes.replayRequested.connect(self.replay_take)
        self.takes.message.connect(self.status)
        lv.addWidget(self.takes, 1)

        self.overlay = ImageView("Starting…")
        self.view3d = OrbitView()
        views = QSplitter(Qt.Orientation.Horizontal)
        views.addWidget(self.overlay)
        views.addWidget(self.view3d)
        views.setSizes([700, 500])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(views)
        main.setSizes([300, 1100])
        self.setCentralWidget(main)

        tb = self.addToolBar("Capture")
        self.record_action = QAction("● Record", self)
        self.record_action.setCheckable(True)
        self.record_action.setShortcuts([QKeySequence("R"), QKeySequence("Ctrl+R")])
        self.record_action.setToolTip("Start / stop recording a take (R)")
        self.record_action.triggered.connect(self._record_clicked)
        tb.addAction(self.record_action)
        settings_action = QAction("Settings…", self)
        settings_action.triggered.connect(self.edit_settings)
        tb.addAction(settings_action)
        space_pause = QAction(self)
        space_pause.setShortcut(QKeySequence("Space"))
        space_pause.triggered.connect(self.pause_button.toggle)
        self.addAction(space_pause)

        sb = self.statusBar()
        self.fps_label, self.latency_label, self.people_label = QLabel("– fps"), QLabel("– ms"), QLabel("0 people")
        self.record_label = QLabel("")
        for label in (self.record_label, self.people_label, self.fps_label, self.latency_label):
            label.setMinimumWidth(90)
            sb.addPermanentWidget(label)

    # ------------------------------------------------------------------ sources
    def open_source(self, spec: SourceSpec, paused: bool = False) -> None:
        if self.recording_path is not None:
            self.stop_recording()
        self.pause_button.setChecked(paused)
        self.overlay.show_message(f"Opening {spec.label()}…")
        self.worker.open_source(spec, paused=paused)

    def open_selected_camera(self) -> None:
        if not self.cameras:
            self.overlay.show_message(NO_CAMERA)
            return
        res, fps = self.resolution_combo.currentText(), self.fps_combo.currentText()
        w, h = (int(x) for x in res.split("x")) if "x" in res else (None, None)
        self.open_source(SourceSpec("camera", index=self.camera_combo.currentData(), width=w, height=h,
                                    fps=float(fps) if fps != "default" else None))

    def open_camera_or_explain(self, index: int = 0) -> None:
        if index in self.cameras:
            self.camera_combo.setCurrentIndex(self.cameras.index(index))
            self.open_selected_camera()
        else:
            self.overlay.show_message(NO_CAMERA if not self.cameras else f"No camera {index}; pick one on the left.")

    def _choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", "Videos (*.mp4 *.avi *.mov *.mkv *.webm);;All (*)")
        if path:
            self.open_source(SourceSpec("video", path))

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open image folder")
        if path:
            self.open_source(SourceSpec("images", path))

    def replay_take(self, path: str) -> None:
        self.open_source(SourceSpec("take", path))

    def _source_opened(self, info: SourceInfo) -> None:
        self.overlay.show_message(f"{info.spec.label()}: waiting for the first frame…")
        seekable = info.spec.seekable and info.num_frames > 0
        self.seek_slider.setEnabled(seekable)
        self.pause_button.setEnabled(info.spec.seekable)
        self.seek_slider.setRange(0, max(info.num_frames - 1, 0))
        self.status(f"{info.spec.label()}  {info.width}x{info.height} @ {info.fps:.1f} fps")

    def _source_failed(self, message: str) -> None:
        self.overlay.show_message(message)
        self._fail(message)

    def _source_ended(self) -> None:
        self.status("end of source")
        if self.script is not None:
            self._script_step("ended")

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Play" if paused else "Pause")
        self.worker.set_paused(paused)

    def _options_changed(self) -> None:
        self.worker.set_options(replace(self.worker.options, **{k: b.isChecked() for k, b in self.toggles.items()}))
        self.view3d.setVisible(self.toggles["view3d"].isChecked())

    # ------------------------------------------------------------------ frames
    def _show_result(self, r: FrameResult) -> None:
        self.last_result = r
        self.latency_ms = 1000.0 * (time.monotonic() - r.grabbed_at)
        if r.overlay is not None:
            self.overlay.show_image(r.overlay)
        if r.view3d is not None:
            self.view3d.show_image(r.view3d)
        self.fps_label.setText(f"{r.fps:.1f} fps")
        self.latency_label.setText(f"{self.latency_ms:.0f} ms")
        self.people_label.setText(f"{r.people} {'person' if r.people == 1 else 'people'}")
        if self.recording_path is not None:
            self.record_label.setText(f"● REC {r.recording_frames}")
        info = self.worker.source_info
        if info is not None and info.num_frames:
            self.position_label.setText(f"{r.index + 1}/{info.num_frames}")
            if not self.seek_slider.isSliderDown():
                self.seek_slider.setValue(r.index)
        if self.script is not None:
            self.script["frames"] += 1

    # ------------------------------------------------------------------ recording
    def _record_clicked(self, checked: bool) -> None:
        if checked:
            self.start_recording()
        else:
            self.stop_recording()

    def start_recording(self, path: str | None = None) -> str:
        if path is None:
            folder = Path(self.settings.ensure_output_dir())
            path = str(folder / f"take_{datetime.now():%Y%m%d_%H%M%S}.npz")
        self.recording_path = path
        self.record_action.setChecked(True)
        self.worker.start_recording(path)
        return path

    def stop_recording(self) -> None:
        self.worker.stop_recording()

    def _set_recording(self, path: str | None) -> None:
        self.recording_path = path
        self.record_action.setChecked(path is not None)
        self.record_label.setText("● REC" if path else "")
        self.record_label.setStyleSheet("color: #e04040; font-weight: bold;" if path else "")

    def _recording_saved(self, path: str, frames: int) -> None:
        if path == self.recording_path:
            self._set_recording(None)
        self.status(f"saved {frames} frames to {path}")
        self.takes.refresh()
        if self.script is not None:
            self._script_step("saved")

    # ------------------------------------------------------------------ settings
    def edit_settings(self) -> None:
        if SettingsDialog(self.settings, self).exec():
            self.worker.smoothing = self.settings.smoothing        # applies from the next source opened
            self.takes.refresh()
            self.status("settings saved (a new model folder is used from the next start)")

    # ------------------------------------------------------------------ scripted use
    def run_script(self, spec: SourceSpec, record: str | None, screenshot: str | None, quit_after: bool) -> None:
        """Process every frame of ``spec``, record it, save a screenshot and optionally quit (exit code 0)."""
        self.script = {"record": record, "screenshot": screenshot, "quit": quit_after, "frames": 0}
        self.every_frame.setChecked(True)
        if record:
            self.start_recording(record)
        self.worker.open_source(spec)

    def _script_step(self, event: str) -> None:
        s = self.script
        if event == "ended" and s["record"] and self.recording_path is not None:
            self.stop_recording()              # continues at "saved"
            return
        QTimer.singleShot(200, self._script_finish)    # let the last frame reach the screen

    def _script_finish(self) -> None:
        s = self.script
        if s["screenshot"]:
            if not self.grab().save(s["screenshot"]):
                print(f"mepo: error: cannot write screenshot {s['screenshot']}", flush=True)
                self.scriptFinished.emit(2)
                return
        if s["quit"]:
            self.scriptFinished.emit(0)

    def _fail(self, message: str, script_exit: bool = True) -> None:
        self.status(message)
        if self.script is not None and script_exit:
            print(f"mepo: error: {message}", flush=True)
            self.scriptFinished.emit(2)

    def status(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def closeEvent(self, event) -> None:
        self.worker.shutdown()
        super().closeEvent(event)
