"""Image views: the overlay, and the 3D view that turns mouse drags into orbit / pan / zoom requests."""
from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QImage, QPixmap
from PyQt6.QtWidgets import QLabel, QSizePolicy

from .drawing import OrbitCamera


def to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageView(QLabel):
    """Shows the latest image scaled to fit, or a message when there is none."""

    def __init__(self, message: str = "", parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(240, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background: #26282e; color: #e0e0e0; font-size: 14px;")
        self.setWordWrap(True)
        self._pixmap: QPixmap | None = None
        self.show_message(message)

    def show_message(self, text: str) -> None:
        self._pixmap = None
        self.setPixmap(QPixmap())
        self.setText(text)

    def show_image(self, rgb: np.ndarray) -> None:
        self._pixmap = QPixmap.fromImage(to_qimage(rgb))
        self._rescale()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def _rescale(self) -> None:
        if self._pixmap is not None:
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()


class OrbitView(ImageView):
    """Left drag: orbit; right or middle drag (or shift + left): pan; wheel: zoom; double click: reset."""

    orbitChanged = pyqtSignal(object)      # OrbitCamera

    def __init__(self, parent=None):
        super().__init__("3D view", parent)
        self.orbit = OrbitCamera()
        self._last: QPointF | None = None
        self.setToolTip("Drag: orbit · right/middle drag: pan · wheel: zoom · double click: reset")

    def set_orbit(self, orbit: OrbitCamera) -> None:
        self.orbit = orbit
        self.orbitChanged.emit(orbit)

    def mousePressEvent(self, event) -> None:
        self._last = event.position()

    def mouseReleaseEvent(self, event) -> None:
        self._last = None

    def mouseMoveEvent(self, event) -> None:
        if self._last is None:
            return
        d = event.position() - self._last
        self._last = event.position()
        scale = 1.0 / max(self.height(), 1)
        pan = event.buttons() & (Qt.MouseButton.RightButton | Qt.MouseButton.MiddleButton) or (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if pan:
            self.set_orbit(self.orbit.pan(d.x() * scale, d.y() * scale))
        else:
            self.set_orbit(self.orbit.orbit(-3.0 * d.x() * scale, 3.0 * d.y() * scale))

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        self.set_orbit(self.orbit.zoomed(0.85 ** steps))

    def mouseDoubleClickEvent(self, event) -> None:
        self.set_orbit(OrbitCamera())
