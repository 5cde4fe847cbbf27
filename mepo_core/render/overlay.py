"""Draw body meshes over video frames.

All people of a frame go into one pyrender scene, so the z-buffer decides who occludes whom.
The renderer knows nothing of the pipeline: it takes an image, a ``Camera`` and coloured meshes.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ..records import Camera
from .gl_platform import delete_offscreen, import_pyrender

# pyrender's camera looks down -z with y up; ours (OpenCV) looks down +z with y down. Rotating the camera 180 degrees
# about x maps one onto the other, so vertices stay in OpenCV camera space untouched.
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class MeshItem:
    """One mesh to draw: (V, 3) camera-space metres (OpenCV axes), (F, 3) triangle indices, RGB colour in 0..1."""
    vertices: np.ndarray
    faces: np.ndarray
    color: Sequence[float] = (0.6, 0.6, 0.6)


def palette(track_id: int) -> np.ndarray:
    """Stable, distinct RGB colour (3,) float in 0..1 for a track ID; negative (untracked) IDs are grey.

    Hues step by the golden ratio, so consecutive IDs land far apart on the colour wheel and no table runs out.
    """
    if track_id < 0:
        return np.array([0.7, 0.7, 0.7])
    hue = (0.08 + track_id * 0.618033988749895) % 1.0
    value = 0.95 if track_id % 2 == 0 else 0.8      # alternate brightness to separate IDs with close hues
    return np.array(colorsys.hsv_to_rgb(hue, 0.65, value))


def _lights(pyrender) -> list:
    """A key light from the camera's upper left and a fill light along the view direction (camera-space poses)."""
    def aimed(direction):
        # Directional lights shine along their node's -z; build a rotation whose -z is ``direction`` (GL axes).
        z = -np.asarray(direction, float) / np.linalg.norm(direction)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
        return pose
    return [(pyrender.DirectionalLight(color=np.ones(3), intensity=3.0), aimed([0.5, -0.6, -1.0])),
            (pyrender.DirectionalLight(color=np.ones(3), intensity=1.5), aimed([0.0, 0.0, -1.0]))]


class OverlayRenderer:
    """Render coloured meshes seen through ``camera`` and alpha-blend them over frames.

    Frames larger than ``max_side`` on their long side are rendered at a reduced size and the result is scaled up,
    which keeps huge photos within GL limits and fast. Not thread-safe: use one renderer per thread.
    """

    def __init__(self, camera: Camera, alpha: float = 0.8, max_side: int = 1920):
        self.camera = camera
        self.alpha = float(alpha)
        self.max_side = int(max_side)
        self._pyrender = import_pyrender()
        self._renderer = None
        self._lights = _lights(self._pyrender)

    def render_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) that a (width, height) frame is rendered at."""
        scale = min(1.0, self.max_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _gl_camera(self, width: int, height: int):
        """IntrinsicsCamera for a render of (width, height) pixels, rescaled from the camera's own size."""
        sx, sy = width / self.camera.width, height / self.camera.height
        # OpenCV puts pixel centres at integers, GL at +0.5: a scaled principal point is (c + 0.5) * s - 0.5,
        # and pyrender wants it in GL's convention, i.e. +0.5 again.
        return self._pyrender.IntrinsicsCamera(
            fx=self.camera.fx * sx, fy=self.camera.fy * sy,
            cx=(self.camera.cx + 0.5) * sx, cy=(self.camera.cy + 0.5) * sy, znear=0.05, zfar=1000.0)

    def _offscreen(self, width: int, height: int):
        """The renderer, kept across frames. On a size change pyrender resizes its framebuffer (EGL) or recreates
        its context (OSMesa, fixed-size buffers) at the next render."""
        if self._renderer is None:
            self._renderer = self._pyrender.OffscreenRenderer(width, height)
        self._renderer.viewport_width, self._renderer.viewport_height = width, height
        return self._renderer

    def render_layer(self, meshes: Sequence[MeshItem], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Render ``meshes`` alone at (width, height): (H, W, 3) uint8 colour and (H, W) depth in metres, 0 = empty."""
        pr = self._pyrender
        scene = pr.Scene(bg_color=np.zeros(4), ambient_light=np.full(3, 0.35))
        for item in meshes:
            if len(item.vertices) == 0 or len(item.faces) == 0:
                continue
            material = pr.MetallicRoughnessMaterial(
                baseColorFactor=(*np.asarray(item.color, float)[:3], 1.0), metallicFactor=0.0, roughnessFactor=0.6)
            primitive = pr.Primitive(
                positions=np.asarray(item.vertices, np.float32), indices=np.asarray(item.faces, np.uint32),
                normals=_vertex_normals(item.vertices, item.faces), material=material)
            scene.add(pr.Mesh([primitive]))
        scene.add(self._gl_camera(width, height), pose=_CV_TO_GL)
        for light, pose in self._lights:
            scene.add(light, pose=_CV_TO_GL @ pose)
        color, depth = self._offscreen(width, height).render(scene)
        return color, depth

    def render(self, image: np.ndarray, meshes: Sequence[MeshItem]) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame with ``meshes`` blended over it; the input is not modified."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        out = image.copy()
        if not meshes:
            return out
        height, width = image.shape[:2]
        rw, rh = self.render_size(width, height)
        color, depth = self.render_layer(meshes, rw, rh)
        # OSMesa gives RGB only, so coverage comes from the depth buffer on every platform.
        weight = (depth > 0).astype(np.float32)
        if (rw, rh) != (width, height):
            color = cv2.resize(color, (width, height), interpolation=cv2.INTER_LINEAR)
            weight = cv2.resize(weight, (width, height), interpolation=cv2.INTER_LINEAR)  # soft, antialiased edge
        covered = weight > 0
        rows, cols = np.flatnonzero(covered.any(1)), np.flatnonzero(covered.any(0))
        if len(rows) == 0:
            return out
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]     # blend only where something was drawn
        w = (self.alpha * weight[box])[..., None]
        out[box] = (w * color[box] + (1.0 - w) * image[box] + 0.5).astype(np.uint8)
        return out

    def close(self) -> None:
        """Free the GL context; the renderer makes a new one if used again."""
        if self._renderer is not None:
            delete_offscreen(self._renderer)
            self._renderer = None

    def __enter__(self) -> "OverlayRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals of a triangle mesh."""
    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces, np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])   # length = 2 * area
    normals = np.zeros_like(v)
    for k in range(3):
        normals += np.stack([np.bincount(f[:, k], face_n[:, i], len(v)) for i in range(3)], axis=1)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def draw_keypoints(image: np.ndarray, kps: np.ndarray, edges: Sequence[tuple[int, int]],
                   color: Sequence[float] = (0.0, 1.0, 0.0), min_conf: float = 0.3,
                   radius: Optional[int] = None) -> np.ndarray:
    """Draw a 2D skeleton in place on an RGB uint8 ``image`` and return it.

    ``kps`` is (N, 3): x, y pixels and a confidence; points below ``min_conf`` (or not finite) and the edges touching
    them are skipped. ``color`` is RGB in 0..1. Line width and dot size follow the image size unless ``radius`` is set.
    """
    rgb = tuple(int(round(255 * c)) for c in color[:3])
    if radius is None:
        radius = max(2, round(max(image.shape[:2]) / 250))
    thickness = max(1, radius // 2)
    kps = np.asarray(kps, float)
    ok = np.isfinite(kps).all(axis=1) & (kps[:, 2] >= min_conf)
    pts = np.round(np.nan_to_num(kps[:, :2])).astype(int)
    for a, b in edges:
        if ok[a] and ok[b]:
            cv2.line(image, tuple(pts[a]), tuple(pts[b]), rgb, thickness, cv2.LINE_AA)
    for i in np.flatnonzero(ok):
        cv2.circle(image, tuple(pts[i]), radius, rgb, -1, cv2.LINE_AA)
    return image
