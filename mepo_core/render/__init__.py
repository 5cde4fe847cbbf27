"""Mesh overlays and video output. pyrender (and GL) load only when an ``OverlayRenderer`` is created."""
from .overlay import MeshItem, OverlayRenderer, draw_keypoints, palette
from .video_writer import VideoWriter, write_image

__all__ = ["MeshItem", "OverlayRenderer", "draw_keypoints", "palette", "VideoWriter", "write_image"]
