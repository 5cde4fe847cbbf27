"""Settings kept between runs (QSettings): model dir, smoothing preset, export formats, output folder."""
from __future__ import annotations

import os
from pathlib import Path

from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                             QLineEdit, QPushButton, QWidget)

SMOOTHING_PRESETS = ("off", "live", "light", "medium", "strong")   # as `mepo --smooth`
EXPORT_FORMATS = ("fbx", "glb", "bvh")


class AppSettings:
    """Typed access to a QSettings store (the user's by default; tests pass their own INI file)."""

    def __init__(self, store: QSettings | None = None):
        self.store = store if store is not None else QSettings("MEPO", "MEPO Capture")

    def _get(self, key: str, default: str) -> str:
        value = self.store.value(key, default)
        return default if value is None else str(value)

    @property
    def model_dir(self) -> str:
        return self._get("model_dir", "")

    @model_dir.setter
    def model_dir(self, value: str) -> None:
        self.store.setValue("model_dir", value or "")

    @property
    def smoothing(self) -> str:
        value = self._get("smoothing", "medium")
        return value if value in SMOOTHING_PRESETS else "medium"

    @smoothing.setter
    def smoothing(self, value: str) -> None:
        if value not in SMOOTHING_PRESETS:
            raise ValueError(f"unknown smoothing preset {value!r}")
        self.store.setValue("smoothing", value)

    @property
    def export_formats(self) -> list[str]:
        raw = self._get("export_formats", "")
        return [f for f in raw.split(",") if f in EXPORT_FORMATS]

    @export_formats.setter
    def export_formats(self, formats: list[str]) -> None:
        self.store.setValue("export_formats", ",".join(f for f in formats if f in EXPORT_FORMATS))

    @property
    def output_dir(self) -> str:
        return self._get("output_dir", str(Path.home() / "mepo_takes"))

    @output_dir.setter
    def output_dir(self, value: str) -> None:
        self.store.setValue("output_dir", value)

    def ensure_output_dir(self) -> str:
        os.makedirs(self.output_dir, exist_ok=True)
        return self.output_dir

    def sync(self) -> None:
        self.store.sync()


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        form = QFormLayout(self)
        self.model_dir = QLineEdit(settings.model_dir)
        self.model_dir.setPlaceholderText("empty: the shipped open body model")
        form.addRow("SMPL-X model folder", self._with_browse(self.model_dir))
        self.smoothing = QComboBox()
        self.smoothing.addItems(SMOOTHING_PRESETS)
        self.smoothing.setCurrentText(settings.smoothing)
        form.addRow("Smoothing", self.smoothing)
        self.formats = {}
        row = QHBoxLayout()
        for f in EXPORT_FORMATS:
            box = QCheckBox(f.upper())
            box.setChecked(f in settings.export_formats)
            self.formats[f] = box
            row.addWidget(box)
        holder = QWidget()
        holder.setLayout(row)
        form.addRow("Export formats", holder)
        self.output_dir = QLineEdit(settings.output_dir)
        form.addRow("Output folder", self._with_browse(self.output_dir))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        button = QPushButton("…")
        button.clicked.connect(lambda: edit.setText(QFileDialog.getExistingDirectory(self, "Choose folder",
                                                                                     edit.text()) or edit.text()))
        row.addWidget(button)
        return holder

    def accept(self) -> None:
        s = self.settings
        s.model_dir = self.model_dir.text().strip()
        s.smoothing = self.smoothing.currentText()
        s.export_formats = [f for f, box in self.formats.items() if box.isChecked()]
        s.output_dir = self.output_dir.text().strip() or s.output_dir
        s.sync()
        super().accept()
