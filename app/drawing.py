"""What the viewport shows, drawn as images (no Qt, no GL widget: works offscreen and under Xvfb alike).

``ViewportPainter`` draws, for one processed frame, the overlay (meshes over the camera image, 2D skeleton, hands,
face) and the free 3D view (the same meshes seen from an orbiting virtual camera, with a ground grid and the real
camera's frustum). Meshes go through ``mepo_core.render.OverlayRenderer``: all people in one scene, so the z-buffer
orders them. It owns GL contexts: create, use and close it in one thread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from mepo_core.body.skeleton import SMPLX_PARENTS
from mepo_core.records import Camera, FrameRecord
from mepo_core.render.overlay import MeshItem, OverlayRenderer, _CV_TO_GL, _vertex_normals, draw_keypoints, palette

BODY_EDGES = [(int(SMPLX_PARENTS[j]), j) for j in range(1, 22)]
HAND_EDGES = [(int(SMPLX_PARENTS[j]), j) for j in range(25, 55)]
BACKGROUND = np.array([38, 40, 46], np.uint8)


@dataclass(frozen=True)
class ViewOptions:
    mesh: bool = True
    skeleton: bool = False
    hands: bool = False
    face: bool = False
    view3d: bool = True
    overlay_side: int = 640          # long side of the overlay image sent to the UI (the mesh is rendered at it)
    view_size: tuple[int, int] = (480, 360)


@dataclass(frozen=True)
class OrbitCamera:
    """Virtual camera orbiting the scene centre (between the real camera and the people), plus the user's pan
    ``offset`` (metres, real-camera space: x right, y down, z forward), turn and ``zoom``."""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.6                 # radians about the vertical axis
    pitch: float = 0.35              # radians, positive looks down
    zoom: float = 1.0                # distance factor
    fov_deg: float = 55.0

    def pose(self, centre=(0.0, 0.0, 2.0), distance: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
        """(R, eye): a real-camera-space point p is at R @ (p - eye) in the virtual camera (OpenCV axes)."""
        f = np.array([math.sin(self.yaw) * math.cos(self.pitch), math.sin(self.pitch),
                      math.cos(self.yaw) * math.cos(self.pitch)])
        eye = np.asarray(centre, float) + np.asarray(self.offset) - self.zoom * distance * f
        right = np.cross([0.0, 1.0, 0.0], f)
        right /= max(np.linalg.norm(right), 1e-9)
        down = np.cross(f, right)
        return np.stack([right, down, f]), eye

    def orbit(self, dx: float, dy: float) -> "OrbitCamera":
        return replace(self, yaw=self.yaw + dx, pitch=float(np.clip(self.pitch + dy, -1.45, 1.45)))

    def pan(self, dx: float, dy: float, distance: float = 5.0) -> "OrbitCamera":
        R, _ = self.pose()
        step = self.zoom * distance * np.asarray(dx * R[0] + dy * R[1])
        return replace(self, offset=tuple(float(v) for v in np.asarray(self.offset) - step))

    def zoomed(self, factor: float) -> "OrbitCamera":
        return replace(self, zoom=float(np.clip(self.zoom * factor, 0.05, 20.0)))


@dataclass
class SceneState:
    """What the 3D view needs from the last frame (kept so the view can be redrawn when only the orbit changes)."""
    camera: Camera
    meshes: list[MeshItem] = field(default_factory=list)
    skeletons: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)   # (joints (J,3), rgb)
    floor_y: float = 1.0
    centre: tuple = (0.0, 0.0, 2.0)  # what the orbit turns around: halfway between the camera and the people
    distance: float = 5.0


class LiveRenderer(OverlayRenderer):
    """``OverlayRenderer`` for the viewport: one pyrender scene (camera, lights, materials) kept across frames, only
    the mesh nodes replaced, and no 4x multisampling (with Mesa's software rasteriser it doubles the cost of a frame;
    the display scales the image anyway)."""

    def __init__(self, camera: Camera, alpha: float = 0.8, max_side: int = 1920):
        super().__init__(camera, alpha, max_side)
        self._scene = None
        self._scene_size = None
        self._nodes: list = []
        self._materials: dict = {}

    def render_layer(self, meshes, width, height):
        pr = self._pyrender
        if self._scene is None or self._scene_size != (width, height):
            self._scene = pr.Scene(bg_color=np.zeros(4), ambient_light=np.full(3, 0.35))
            self._scene.add(self._gl_camera(width, height), pose=_CV_TO_GL)
            for light, pose in self._lights:
                self._scene.add(light, pose=_CV_TO_GL @ pose)
            self._scene_size, self._nodes = (width, height), []
        for node in self._nodes:        # the renderer frees their GL buffers at the next render
            self._scene.remove_node(node)
        self._nodes = []
        for item in meshes:
            if len(item.vertices) == 0 or len(item.faces) == 0:
                continue
            key = tuple(np.round(np.asarray(item.color, float)[:3], 4))
            material = self._materials.get(key)
            if material is None:
                material = self._materials[key] = pr.MetallicRoughnessMaterial(
                    baseColorFactor=(*key, 1.0), metallicFactor=0.0, roughnessFactor=0.6)
            primitive = pr.Primitive(positions=np.asarray(item.vertices, np.float32),
                                     indices=np.asarray(item.faces, np.uint32),
                                     normals=_vertex_normals(item.vertices, item.faces), material=material)
            self._nodes.append(self._scene.add(pr.Mesh([primitive])))
        import pyrender.renderer as gl
        multisample = gl.glRenderbufferStorageMultisample
        gl.glRenderbufferStorageMultisample = lambda target, samples, fmt, w, h: multisample(target, 0, fmt, w, h)
        try:
            return self._offscreen(width, height).render(self._scene)
        finally:
            gl.glRenderbufferStorageMultisample = multisample


class ViewportPainter:
    def __init__(self):
        self._overlay: OverlayRenderer | None = None
        self._orbit: OverlayRenderer | None = None
        self.floor_y: float | None = None
        self.centre: np.ndarray | None = None

    def close(self) -> None:
        for r in (self._overlay, self._orbit):
            if r is not None:
                r.close()
        self._overlay = self._orbit = None

    def reset(self) -> None:
        self.floor_y = self.centre = None

    # ------------------------------------------------------------------ overlay
    def overlay(self, frame: FrameRecord, meshes: list[MeshItem], opts: ViewOptions) -> np.ndarray:
        """The frame (downscaled to ``opts.overlay_side``) with meshes, skeletons, hands and face drawn over it."""
        h, w = frame.image.shape[:2]
        s = min(1.0, opts.overlay_side / max(w, h))
        image = frame.image if s == 1.0 else cv2.resize(frame.image, (round(w * s), round(h * s)),
                                                        interpolation=cv2.INTER_AREA)
        if opts.mesh and meshes:
            if self._overlay is None or self._overlay.camera != frame.camera:
                if self._overlay is not None:
                    self._overlay.close()
                self._overlay = LiveRenderer(frame.camera)      # renders at the image's size, intrinsics rescaled
            image = self._overlay.render(image, meshes)
        elif not image.flags.writeable or image is frame.image:
            image = image.copy()
        sx, sy = image.shape[1] / w, image.shape[0] / h
        radius = max(2, round(max(image.shape[:2]) / 200))
        for person in frame.people:
            color = palette(person.track_id)
            kp = person.keypoints2d
            if kp is not None and (opts.skeleton or opts.hands):
                kp = kp * np.array([sx, sy, 1.0], np.float32)
                if opts.skeleton:
                    draw_keypoints(image, kp, BODY_EDGES, color, min_conf=0.0, radius=radius)
                if opts.hands:
                    draw_keypoints(image, kp, HAND_EDGES, color, min_conf=0.0, radius=max(1, radius // 2))
            lm = person.landmarks
            if opts.face and lm is not None and lm.face_2d is not None:
                pts = lm.face_2d[lm.face_2d[:, 2] > 0.0, :2] * np.array([sx, sy])
                rgb = tuple(int(255 * c) for c in color)
                for x, y in np.round(pts).astype(int):
                    cv2.circle(image, (x, y), 1, rgb, -1)
        return image

    # ------------------------------------------------------------------ 3D view
    def scene_state(self, frame: FrameRecord, meshes: list[MeshItem], opts: ViewOptions) -> SceneState:
        skeletons = [(p.joints3d, palette(p.track_id)) for p in frame.people if p.joints3d is not None]
        lowest = [float(np.max(m.vertices[:, 1])) for m in meshes if len(m.vertices)]
        lowest += [float(np.max(j[:55, 1])) for j, _ in skeletons]
        if lowest:      # the ground follows the lowest point seen, smoothed so it does not jitter
            y = max(lowest)
            self.floor_y = y if self.floor_y is None else 0.9 * self.floor_y + 0.1 * y
        if skeletons:   # follow the people's centroid slowly, so the view does not shake with them
            c = 0.5 * np.mean([j[0] for j, _ in skeletons], axis=0)
            self.centre = c if self.centre is None else 0.9 * self.centre + 0.1 * c
        centre = self.centre if self.centre is not None else np.array([0.0, 0.0, 2.0])
        return SceneState(frame.camera, meshes if opts.mesh else [], skeletons,
                          self.floor_y if self.floor_y is not None else 1.0, tuple(centre),
                          max(3.0, 2.2 * float(np.linalg.norm(centre))))

    def view3d(self, state: SceneState, orbit: OrbitCamera, opts: ViewOptions) -> np.ndarray:
        width, height = opts.view_size
        vcam = Camera.from_fov(width, height, orbit.fov_deg)
        R, eye = orbit.pose(state.centre, state.distance)
        image = np.empty((height, width, 3), np.uint8)
        image[:] = BACKGROUND
        _draw_ground(image, vcam, R, eye, state.floor_y)
        if state.meshes:
            if self._orbit is None or self._orbit.camera != vcam:
                if self._orbit is not None:
                    self._orbit.close()
                self._orbit = LiveRenderer(vcam, alpha=1.0)
            moved = [MeshItem((m.vertices - eye) @ R.T, m.faces, m.color) for m in state.meshes]
            image = self._orbit.render(image, moved)
        if opts.skeleton or opts.hands or not state.meshes:
            for joints, color in state.skeletons:
                edges = (BODY_EDGES if (opts.skeleton or not state.meshes) else []) + (HAND_EDGES if opts.hands else [])
                _draw_segments(image, vcam, R, eye, [(joints[a], joints[b]) for a, b in edges], color, 2)
        _draw_frustum(image, vcam, R, eye, state.camera)
        return image


def _project_segment(vcam: Camera, R, eye, a, b, near: float = 0.05):
    """Clip the segment a-b (real-camera space) to the virtual camera's near plane and project it, or None."""
    pa, pb = R @ (np.asarray(a, float) - eye), R @ (np.asarray(b, float) - eye)
    if pa[2] < near and pb[2] < near:
        return None
    if pa[2] < near or pb[2] < near:
        t = (near - pa[2]) / (pb[2] - pa[2])
        cut = pa + t * (pb - pa)
        pa, pb = (cut, pb) if pa[2] < near else (pa, cut)
    uv = vcam.project(np.stack([pa, pb]))
    if not np.isfinite(uv).all() or np.abs(uv).max() > 1e5:
        return None
    return np.round(uv).astype(int)


def _draw_segments(image, vcam, R, eye, segments, color, thickness=1):
    rgb = tuple(int(255 * c) for c in color)
    for a, b in segments:
        uv = _project_segment(vcam, R, eye, a, b)
        if uv is not None:
            cv2.line(image, tuple(uv[0]), tuple(uv[1]), rgb, thickness, cv2.LINE_AA)


def _draw_ground(image, vcam, R, eye, floor_y: float, half: float = 5.0, depth: float = 12.0, step: float = 0.5):
    segments = [((x, floor_y, 0.0), (x, floor_y, depth)) for x in np.arange(-half, half + 1e-6, step)]
    segments += [((-half, floor_y, z), (half, floor_y, z)) for z in np.arange(0.0, depth + 1e-6, step)]
    _draw_segments(image, vcam, R, eye, segments, (0.33, 0.35, 0.4), 1)


def _draw_frustum(image, vcam, R, eye, cam: Camera, depth: float = 0.8):
    corners = [((u - cam.cx) / cam.fx * depth, (v - cam.cy) / cam.fy * depth, depth)
               for u, v in ((0, 0), (cam.width, 0), (cam.width, cam.height), (0, cam.height))]
    segments = [((0.0, 0.0, 0.0), c) for c in corners] + [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    _draw_segments(image, vcam, R, eye, segments, (1.0, 0.85, 0.2), 2)
