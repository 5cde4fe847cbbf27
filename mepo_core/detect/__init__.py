"""Multi-person whole-body landmarks from MediaPipe's shipped .tflite models (see ``landmarker``)."""
from .landmarker import WholeBodyLandmarker

__all__ = ["WholeBodyLandmarker"]
