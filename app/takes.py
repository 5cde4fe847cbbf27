"""The takes list: the NPZ takes of the output folder, to rename, replay, export or delete."""
from __future__ import annotations

import os
from pathlib import Path

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QListWidget, QListWidgetItem, QMessageBox,
                             QPushButton, QVBoxLayout, QWidget)

from mepo_core.io.take_journal import recover_take, unfinished_takes



def export_take(path: str, formats: list[str], out_dir: str, model_dir: str | None = None) -> list[str]:
    """Export a take to the chosen formats next to each other in ``out_dir`` (through ``mepo_core.export``)."""
    from mepo_core.export import ExportOptions, export_take as core_export
    stem = Path(out_dir) / Path(path).stem
    return core_export(path, fbx=f"{stem}.fbx" if "fbx" in formats else None,
                       glb=f"{stem}.glb" if "glb" in formats else None,
                       bvh_dir=f"{stem}_bvh" if "bvh" in formats else None,
                       options=ExportOptions(model_dir=model_dir or None), progress=False)


def recover_unfinished(folder: str) -> list[str]:
    """Turn recordings left behind by a crash into takes; empty ones are removed. Returns the recovered paths."""
    out = []
    for parts in unfinished_takes(folder):
        try:
            out.append(recover_take(parts))
        except Exception:
            if not any(parts.glob("chunk_*.npz")):
                import shutil
                shutil.rmtree(parts, ignore_errors=True)
    return out


class TakesPanel(QWidget):
    replayRequested = pyqtSignal(str)
    message = pyqtSignal(str)

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.settings = settings
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Takes"))
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(lambda item: self.replayRequested.emit(item.data(256)))
        layout.addWidget(self.list)
        row = QHBoxLayout()
        self.buttons = {}
        for name, slot in (("Replay", self.replay), ("Rename", self.rename), ("Export", self.export),
                           ("Delete", self.delete), ("Refresh", self.refresh)):
            b = QPushButton(name)
            b.clicked.connect(slot)
            row.addWidget(b)
            self.buttons[name] = b
        layout.addLayout(row)

    def folder(self) -> str:
        return self.settings.output_dir

    def refresh(self) -> None:
        self.list.clear()
        folder = Path(self.folder())
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.npz"), key=os.path.getmtime, reverse=True):
            item = QListWidgetItem(path.name)
            item.setData(256, str(path))
            self.list.addItem(item)

    def selected(self) -> str | None:
        item = self.list.currentItem()
        return item.data(256) if item is not None else None

    def replay(self) -> None:
        if self.selected():
            self.replayRequested.emit(self.selected())

    def rename(self, _=None, new_name: str | None = None) -> None:
        path = self.selected()
        if not path:
            return
        if new_name is None:
            new_name, ok = QInputDialog.getText(self, "Rename take", "New name:", text=Path(path).stem)
            if not ok:
                return
        new_name = new_name.strip()
        if not new_name or "/" in new_name or "\\" in new_name:
            self.message.emit("invalid take name")
            return
        target = Path(path).with_name(new_name if new_name.endswith(".npz") else new_name + ".npz")
        if target.exists():
            self.message.emit(f"{target.name} already exists")
            return
        os.rename(path, target)
        self.refresh()

    def delete(self, _=None, confirm: bool = True) -> None:
        path = self.selected()
        if not path:
            return
        if confirm and QMessageBox.question(self, "Delete take", f"Delete {Path(path).name}?") != \
                QMessageBox.StandardButton.Yes:
            return
        os.remove(path)
        self.refresh()

    def export(self) -> None:
        path = self.selected()
        formats = self.settings.export_formats
        if not path or not formats:
            self.message.emit("choose export formats in Settings first" if path else "select a take")
            return
        try:
            written = export_take(path, formats, self.folder(), self.settings.model_dir)
        except Exception as e:  # export errors are the user's to read, not a crash
            self.message.emit(f"export of {Path(path).name} failed: {e}")
            return
        self.message.emit("exported " + ", ".join(Path(w).name for w in written))
