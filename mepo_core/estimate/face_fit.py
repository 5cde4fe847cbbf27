"""Fit SMPL-X ``expression``, ``jaw_pose`` and eye poses to MediaPipe face-mesh landmarks, all people at once.

Design
------
1. **Correspondence, once per body model** (``build_correspondence``, cached in ``cache_dir()/face_fit``):
   the model's head (vertices skinned mostly to head/jaw/eye joints) is rendered frontally with a small numpy
   z-buffer rasteriser (slightly open jaw so that the inner lips separate, skin-coloured Lambert shading), the
   shipped face-mesh tflite is run on the render through ``detect/face.py``, and each landmark of a fixed subset
   (``FIT_LANDMARKS``) is attached to the head triangle it falls on (triangle id + barycentrics, which stay valid in
   every pose and shape). Because the correspondence comes from the same detector the pipeline runs, its own bias on
   a neutral face is absorbed. A model on which no face is found (e.g. the random test stand-in) gets ``None`` and
   the estimator keeps its hand-tuned cues (``targets.face_cues``).
2. **Per frame** (``FaceFitter.fit``, numpy, batched over people): a weighted similarity Procrustes maps each
   person's ``face_3d`` (x, y px + relative z px) onto the model's rest head using rigid points only (eye corners,
   nose bridge, forehead, face-oval sides), so head pose and distance drop out. Then for a grid of jaw pitches the
   exact linear-blend-skinned jaw motion is applied to the rest points and a ridge-regularised linear least squares
   gives the expression (exactly linear in the expression directions at fixed jaw angle); the best grid angle is
   refined with a parabola and solved once more. Eye poses come from the iris centres in the aligned head frame
   relative to each eyeball's front point (eye joint + eyeball radius along +z).

Conventions (checked against the model): jaw_pose[0] > 0 opens the mouth (rotation about +x moves the chin down);
eye pose (pitch, yaw, 0): yaw > 0 turns the gaze towards the person's left (image right for a frontal face),
pitch > 0 looks down. ``leye_pose`` is the person's left eye (iris landmark 473), ``reye_pose`` the right (468).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1
HEAD, JAW, LEYE, REYE = 15, 22, 23, 24
RENDER_SIZE = 512
RENDER_JAW = 0.12          # rad; opens the lips a little so inner-lip landmarks land on the right lip
MIN_PRESENCE = 0.5

# MediaPipe face-mesh indices used by the fit.
RIGID = (33, 133, 362, 263,               # eye corners (person's right outer/inner, left inner/outer)
         168, 6, 197, 195,                # nose bridge
         10, 151, 109, 338, 67, 297,      # forehead / face-oval top
         127, 356, 234, 454)              # face-oval sides at eye level
LIPS = (61, 291, 0, 17, 37, 267, 84, 314, 40, 270, 91, 321, 185, 409, 146, 375,
        13, 14, 78, 308, 82, 312, 87, 317, 81, 311, 178, 402)
EYELIDS = (159, 158, 160, 145, 144, 153, 386, 385, 387, 374, 373, 380)
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
NOSE = (1, 4, 5, 2, 98, 327)
CHEEKS_CHIN = (152, 148, 377, 176, 400, 149, 378, 136, 365, 93, 323, 132, 361, 50, 280, 205, 425, 117, 346)
FIT_LANDMARKS = tuple(dict.fromkeys(RIGID + LIPS + EYELIDS + BROWS + NOSE + CHEEKS_CHIN))
IRIS = {"left": 473, "right": 468}       # the person's left / right iris centre

JAW_GRID = np.linspace(-0.1, 0.6, 29)    # rad
JAW_MAX = 0.6
Z_WEIGHT = 0.0                           # MediaPipe's relative depth is noisier than x, y
EXPRESSION_RIDGE = 4e-6                  # m^2 per unit-variance expression coefficient (prior ~ N(0, 1))
EXPRESSION_CLIP = 3.0
GAZE_MAX = 0.6


@dataclass
class FaceCorrespondence:
    """Landmark subset -> barycentric points on the model's head triangles."""
    landmarks: np.ndarray    # (L,) MediaPipe face-mesh indices
    vertex_ids: np.ndarray   # (L, 3) the three vertices of each landmark's triangle
    bary: np.ndarray         # (L, 3) barycentric weights
    presence: float = 1.0


def model_key(body_model) -> str:
    """Hash of the geometry the correspondence depends on."""
    sm = body_model.smplx
    h = hashlib.sha1(f"face_fit-v{CACHE_VERSION}".encode())
    for t in (sm.v_template, sm.lbs_weights, sm.J_regressor):
        h.update(np.ascontiguousarray(t.detach().cpu().numpy(), np.float32).tobytes())
    h.update(np.ascontiguousarray(body_model.faces, np.int64).tobytes())
    return h.hexdigest()[:20]


def _cache_file(body_model) -> Path:
    return cache_dir() / "face_fit" / f"{model_key(body_model)}.npz"


def load_or_build_correspondence(body_model, use_cache: bool = True) -> FaceCorrespondence | None:
    """The cached correspondence of ``body_model``, building (and caching) it on first use; None if impossible.

    A failure is cached too (as an empty file entry), so a model without a detectable face costs the build once.
    """
    path = _cache_file(body_model)
    if use_cache and path.is_file():
        try:
            with np.load(path) as d:
                if int(d["ok"]) == 0:
                    return None
                return FaceCorrespondence(d["landmarks"], d["vertex_ids"], d["bary"], float(d["presence"]))
        except Exception:  # a corrupt cache entry is rebuilt
            log.warning("face_fit: ignoring unreadable cache %s", path)
    corr = build_correspondence(body_model)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            if corr is None:
                np.savez(tmp, ok=0)
            else:
                np.savez(tmp, ok=1, landmarks=corr.landmarks, vertex_ids=corr.vertex_ids, bary=corr.bary,
                         presence=corr.presence)
            tmp.replace(path)
        except OSError as exc:
            log.warning("face_fit: cannot write cache %s: %s", path, exc)
    return corr


# ----------------------------------------------------------------------------------------------- correspondence

def _head_vertices(weights: np.ndarray) -> np.ndarray:
    return weights[:, [HEAD, JAW, LEYE, REYE]].sum(1) > 0.5


def _rasterise(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, colors: np.ndarray, size: int):
    """Tiny z-buffer rasteriser: RGB uint8 image and (H, W) index into ``faces`` (-1 = background)."""
    img = np.full((size, size, 3), 0.15, np.float32)
    zbuf = np.full((size, size), np.inf, np.float32)
    fid = np.full((size, size), -1, np.int64)
    for k, f in enumerate(faces):
        p, z = xy[f], depth[f]
        x0, y0 = np.maximum(np.floor(p.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(p.max(0)).astype(int), size - 1)
        if x1 < x0 or y1 < y0:
            continue
        a, b, c = p
        den = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(den) < 1e-12:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        l0 = ((b[1] - c[1]) * (xs - c[0]) + (c[0] - b[0]) * (ys - c[1])) / den
        l1 = ((c[1] - a[1]) * (xs - c[0]) + (a[0] - c[0]) * (ys - c[1])) / den
        l2 = 1.0 - l0 - l1
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        if not inside.any():
            continue
        zz = l0 * z[0] + l1 * z[1] + l2 * z[2]
        zsub = zbuf[y0:y1 + 1, x0:x1 + 1]
        m = inside & (zz < zsub)
        zsub[m] = zz[m]
        col = l0[..., None] * colors[f[0]] + l1[..., None] * colors[f[1]] + l2[..., None] * colors[f[2]]
        img[y0:y1 + 1, x0:x1 + 1][m] = col[m]
        fid[y0:y1 + 1, x0:x1 + 1][m] = k
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), fid


def render_head(body_model, jaw: float = RENDER_JAW, size: int = RENDER_SIZE, expression: np.ndarray | None = None):
    """Frontal render of the model's head (zero shape, given jaw pitch and optional expression (E,)).

    Returns (image, face_id_buffer, head_faces (F, 3), pixel xy of all vertices (V, 2)).
    """
    import torch
    sm = body_model.smplx
    weights = sm.lbs_weights.detach().cpu().numpy()
    with torch.no_grad():
        params = {"jaw_pose": np.array([[jaw, 0, 0]], np.float32)}
        if expression is not None:
            params["expression"] = np.asarray(expression, np.float32)[None]
        verts, _ = body_model.forward(params)
    v = verts[0].cpu().numpy().astype(np.float64)
    head = _head_vertices(weights)
    faces = body_model.faces
    head_faces = faces[head[faces].all(1)]
    if len(head_faces) < 100:
        raise ValueError("model has no head surface")
    hv = v[head]
    centre = 0.5 * (hv.min(0) + hv.max(0))
    extent = float(np.ptp(hv[:, :2], axis=0).max())
    dist = 4.0 * extent                                  # mild perspective
    focal = 0.75 * size * dist / extent                  # head fills ~75% of the image
    P = v - centre
    depth = dist - P[:, 2]                               # model +z faces the camera
    xy = np.stack([focal * P[:, 0] / depth, -focal * P[:, 1] / depth], 1) + size / 2
    # Lambert shading, eyes lighter (no textures)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
    light = np.array([0.2, 0.4, 1.0]) / np.linalg.norm([0.2, 0.4, 1.0])
    shade = 0.25 + 0.75 * np.clip(vn @ light, 0, 1)
    colors = shade[:, None] * np.array([0.85, 0.66, 0.55])
    eyes = weights[:, [LEYE, REYE]].sum(1) > 0.5
    colors[eyes] = shade[eyes, None] * 0.9
    image, fid = _rasterise(xy, depth, head_faces, colors, size)
    return image, fid, head_faces, xy


def build_correspondence(body_model, landmarker=None) -> FaceCorrespondence | None:
    """Render the head, run the face mesh on it, attach landmarks to triangles. None if no plausible face."""
    try:
        from ..detect.face import FaceLandmarker, face_roi_from_mesh
        from ..detect.roi import roi_from_box, transform_roi
        image, fid, head_faces, xy = render_head(body_model)
    except ValueError as exc:          # no head surface (e.g. the random test stand-in)
        log.info("face_fit: %s", exc)
        return None
    try:
        if landmarker is None:
            landmarker = FaceLandmarker(num_threads=2, iris=False)
        ys, xs = np.nonzero(fid >= 0)
        if len(xs) < 500:
            return None
        mesh, presence = landmarker._mesh(image, transform_roi(roi_from_box(xs.min(), ys.min(), xs.max(), ys.max())))
        mesh, presence = landmarker._mesh(image, face_roi_from_mesh(mesh))
    except Exception as exc:  # no detector / tflite runtime / degenerate model: fall back to cues
        log.warning("face_fit: cannot build a face correspondence: %s: %s", type(exc).__name__, exc)
        return None
    if presence < MIN_PRESENCE:
        log.info("face_fit: no face found on the model's head render (presence %.2f)", presence)
        return None
    # Sanity: the detected eye centres must sit on the model's eyes.
    weights = body_model.smplx.lbs_weights.detach().cpu().numpy()
    eye_px = [xy[weights[:, j] > 0.5].mean(0) if (weights[:, j] > 0.5).any() else None for j in (LEYE, REYE)]
    if eye_px[0] is None or eye_px[1] is None:
        return None
    det = [(mesh[362, :2] + mesh[263, :2]) / 2, (mesh[33, :2] + mesh[133, :2]) / 2]
    eye_dist = np.linalg.norm(eye_px[0] - eye_px[1])
    if max(np.linalg.norm(det[0] - eye_px[0]), np.linalg.norm(det[1] - eye_px[1])) > 0.3 * eye_dist:
        log.info("face_fit: face found on the head render does not match the model's eyes")
        return None
    lms, vids, barys = [], [], []
    size = fid.shape[0]
    for lm in FIT_LANDMARKS:
        px = mesh[lm, :2]
        ix, iy = int(np.clip(px[0], 0, size - 1)), int(np.clip(px[1], 0, size - 1))
        k = fid[iy, ix]
        if k < 0:
            continue
        tri = head_faces[k]
        a, b, c = xy[tri]
        T = np.array([[a[0] - c[0], b[0] - c[0]], [a[1] - c[1], b[1] - c[1]]])
        l01 = np.linalg.solve(T, px - c)
        bary = np.clip(np.array([l01[0], l01[1], 1 - l01.sum()]), 0, 1)
        lms.append(lm)
        vids.append(tri)
        barys.append(bary / bary.sum())
    rigid_found = sum(lm in RIGID for lm in lms)
    if rigid_found < 8 or len(lms) < 0.8 * len(FIT_LANDMARKS):
        return None
    return FaceCorrespondence(np.array(lms, np.int64), np.array(vids, np.int64), np.array(barys, np.float64),
                              float(presence))


# ---------------------------------------------------------------------------------------------------------- fit

@dataclass
class FaceFit:
    """Per-person results, (B, ...) arrays; ``valid[i]`` False means "no fit, keep the cues"."""
    expression: np.ndarray   # (B, E)
    jaw_pose: np.ndarray     # (B, 3)
    leye_pose: np.ndarray    # (B, 3)
    reye_pose: np.ndarray    # (B, 3)
    residual: np.ndarray     # (B,) RMS residual of the fitted points, metres in the head frame
    valid: np.ndarray        # (B,) bool


def _rot_x(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    R = np.zeros(theta.shape + (3, 3))
    R[..., 0, 0] = 1
    R[..., 1, 1], R[..., 1, 2], R[..., 2, 1], R[..., 2, 2] = c, -s, s, c
    return R


def similarity_procrustes(src: np.ndarray, dst: np.ndarray, w: np.ndarray):
    """Batched weighted similarity: s, R (B,3,3), t with dst ~ s R src + t. src, dst (B, N, 3), w (B, N)."""
    wn = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    ms = np.einsum("bn,bnc->bc", wn, src)
    md = np.einsum("bn,bnc->bc", wn, dst)
    a, b = src - ms[:, None], dst - md[:, None]
    H = np.einsum("bn,bni,bnj->bij", wn, a, b)
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.einsum("bji,bkj->bik", Vt, U)))
    D = np.ones_like(S)
    D[:, 2] = d
    R = np.einsum("bji,bj,bkj->bik", Vt, D, U)            # V diag(D) U^T
    var = np.einsum("bn,bnc->b", wn, a * a)
    s = (S * D).sum(1) / np.maximum(var, 1e-12)
    t = md - s[:, None] * np.einsum("bij,bj->bi", R, ms)
    return s, R, t


def backproject(face_3d: np.ndarray, metres_per_px: np.ndarray, camera) -> np.ndarray:
    """(B, N, 3) px landmarks (x, y, relative z) -> metric camera-space points, the face centre at depth f * scale."""
    z0 = camera.fx * metres_per_px                                             # (B,) depth of the face
    zc = face_3d[..., 2] - face_3d[..., 2].mean(1, keepdims=True)
    Z = z0[:, None] + zc * metres_per_px[:, None]
    return np.stack([(face_3d[..., 0] - camera.cx) * Z / camera.fx, (face_3d[..., 1] - camera.cy) * Z / camera.fy,
                     Z], -1)


class FaceFitter:
    """Batched expression / jaw / eye fit for one body model. ``FaceFitter.create(body_model)`` returns None when
    the model has no usable face correspondence."""

    def __init__(self, body_model, corr: FaceCorrespondence, ridge: float = EXPRESSION_RIDGE):
        sm = body_model.smplx
        self.corr = corr
        self.ridge = ridge
        bary, vids = corr.bary, corr.vertex_ids

        def at(arr):  # (V, ...) -> (L, ...) barycentric interpolation
            return np.einsum("lk,lk...->l...", bary, arr[vids])

        v_template = sm.v_template.detach().cpu().numpy().astype(np.float64)
        self.x0 = at(v_template)                                                   # (L, 3)
        self.shape_dirs = at(sm.shapedirs.detach().cpu().numpy().astype(np.float64))  # (L, 3, nb)
        self.expr_dirs = at(sm.expr_dirs.detach().cpu().numpy().astype(np.float64))   # (L, 3, E)
        weights = sm.lbs_weights.detach().cpu().numpy().astype(np.float64)
        self.w_jaw = at(weights[:, JAW])                                           # (L,)
        self.body_model = body_model
        self.num_expression = self.expr_dirs.shape[-1]
        L = len(corr.landmarks)
        self.rigid = np.isin(corr.landmarks, RIGID)
        self.axis_w = np.tile([1.0, 1.0, Z_WEIGHT], (L, 1))                          # (L, 3)
        # Eyeballs: centre (= eye joint) and the radius to the front-most eye vertex.
        self.eye_radius, self.eye_rest_angles = {}, {}
        j_rest = body_model.rest_joints(np.zeros((1, body_model.num_betas), np.float32))[0].numpy()
        for side, j in (("left", LEYE), ("right", REYE)):
            m = weights[:, j] > 0.5
            front = v_template[m][np.argmax(v_template[m][:, 2])] if m.any() else j_rest[j] + [0, 0, 0.012]
            d = front - j_rest[j]
            r = float(max(np.linalg.norm(d), 0.008))
            self.eye_radius[side] = r
            # (pitch, yaw) of the eyeball's front point at rest, subtracted from the observed ones
            self.eye_rest_angles[side] = np.array([np.arcsin(np.clip(-d[1] / r, -1, 1)),
                                                   np.arcsin(np.clip(d[0] / r, -1, 1))])
        # Precompute per-grid-angle jaw-blended expression bases and their ridge normal matrices.
        Rg = _rot_x(JAW_GRID)                                                       # (G, 3, 3)
        self._grid_dR = Rg - np.eye(3)
        self._w_flat = self.axis_w.reshape(-1)
        self._grid_blend = self._blend(Rg)                                          # (G, L, 3, 3)
        A = np.einsum("glij,ljk->glik", self._grid_blend, self.expr_dirs)          # (G, L, 3, E)
        Aw = A * self.axis_w[None, :, :, None]
        self._grid_A = A
        self._grid_AtW = Aw.reshape(len(JAW_GRID), L * 3, -1).transpose(0, 2, 1)   # (G, E, 3L)
        N = np.einsum("gek,gkf->gef", self._grid_AtW, A.reshape(len(JAW_GRID), L * 3, -1))
        self._grid_Ninv = np.linalg.inv(N + ridge * np.eye(self.num_expression))    # (G, E, E)

    @classmethod
    def create(cls, body_model, use_cache: bool = True) -> "FaceFitter | None":
        corr = load_or_build_correspondence(body_model, use_cache=use_cache)
        return None if corr is None else cls(body_model, corr)

    def _blend(self, R: np.ndarray) -> np.ndarray:
        """Per-point LBS matrix for a jaw rotation: I + w_jaw (R - I). R (..., 3, 3) -> (..., L, 3, 3)."""
        eye = np.eye(3)
        return eye + self.w_jaw[:, None, None] * (R[..., None, :, :] - eye)

    def rest_points(self, betas: np.ndarray | None, B: int):
        """Neutral rest points (B, L, 3) and jaw / eye joints (B, 3) for the given shapes."""
        import torch
        nb = self.shape_dirs.shape[-1]
        if betas is None:
            betas = np.zeros((B, nb))
        betas = np.asarray(betas, np.float64)[:, :nb]
        x = self.x0 + np.einsum("lcb,nb->nlc", self.shape_dirs, betas)
        J = self.body_model.rest_joints(torch.as_tensor(betas, dtype=torch.float32)).numpy().astype(np.float64)
        return x, J[:, JAW], J[:, LEYE], J[:, REYE]

    def head_frame(self, face_3d: np.ndarray, rest: np.ndarray, camera=None):
        """Face-mesh landmarks -> the fit subset in the model's head frame (similarity-aligned on the rigid points
        to ``rest`` (B, L, 3), so head pose and distance drop out). Shared by the fit and the learned face branch
        (``nets/face.py``). face_3d (B, 478, 3) px (x, y, relative z). Returns Y (B, L, 3) metres, the
        (back-projected when a camera is given) face_3d, and the similarity (s, R, t) that maps it to the head frame."""
        face_3d = np.asarray(face_3d, np.float64)
        B, L = face_3d.shape[0], len(self.corr.landmarks)
        w_rigid = np.broadcast_to(self.rigid.astype(np.float64), (B, L))
        s, R, t = similarity_procrustes(face_3d[:, self.corr.landmarks], rest, w_rigid)
        if camera is not None:
            face_3d = backproject(face_3d, s, camera)
        obs = face_3d[:, self.corr.landmarks]                                      # (B, L, 3)
        if camera is not None:
            s, R, t = similarity_procrustes(obs, rest, w_rigid)
        Y = s[:, None, None] * (obs @ R.transpose(0, 2, 1)) + t[:, None]
        return Y, face_3d, (s, R, t)

    def fit(self, face_3d: np.ndarray, conf: np.ndarray | None = None, betas: np.ndarray | None = None,
            camera=None) -> FaceFit:
        """face_3d (B, 478, 3) px (x, y, relative z); conf (B,) or (B, 478) face confidence; betas (B, nb).

        camera: a ``records.Camera`` (or anything with fx, fy, cx, cy); with it the landmarks are back-projected
        to undo perspective (a face 0.1 m deep at 2 m is otherwise distorted by ~5%); without it, weak perspective.
        """
        B = np.asarray(face_3d).shape[0]
        L = len(self.corr.landmarks)
        G = len(JAW_GRID)
        x, j_jaw, j_leye, j_reye = self.rest_points(betas, B)
        Y, face_3d, (s, R, t) = self.head_frame(face_3d, x, camera)
        # jaw motion of the neutral points for every grid angle (exact LBS): w (R_g - I) (x - J)
        rel = x - j_jaw[:, None]                                                    # (B, L, 3)
        moved = self.w_jaw[:, None] * (rel[:, None] @ self._grid_dR.transpose(0, 2, 1)[None])  # (B, G, L, 3)
        r0 = (Y[:, None] - x[:, None] - moved).reshape(B, G, L * 3)
        # ridge LS per grid angle via normal equations: cost = r0' W r0 - b' (N + lambda)^-1 b
        b = (self._grid_AtW[None] @ r0[..., None])[..., 0]                         # (B, G, E)
        e = (self._grid_Ninv[None] @ b[..., None])[..., 0]
        cost = (r0 * r0 * self._w_flat).sum(2) - (b * e).sum(2)                   # (B, G)
        k = np.clip(np.argmin(cost, 1), 1, G - 2)
        c0, c1, c2 = (cost[np.arange(B), k + d] for d in (-1, 0, 1))
        den = c0 - 2 * c1 + c2
        step = np.where(den > 1e-18, 0.5 * (c0 - c2) / np.where(den > 1e-18, den, 1.0), 0.0)
        theta = JAW_GRID[k] + np.clip(step, -1, 1) * (JAW_GRID[1] - JAW_GRID[0])
        theta = np.clip(theta, JAW_GRID[0], JAW_MAX)
        # final solve at the refined angle
        dR = _rot_x(theta) - np.eye(3)                                              # (B, 3, 3)
        A = self.expr_dirs[None] + self.w_jaw[None, :, None, None] * (dR[:, None] @ self.expr_dirs[None])
        A = A.reshape(B, L * 3, -1)                                                 # (B, 3L, E)
        Aw = A * self._w_flat[None, :, None]
        N = Aw.transpose(0, 2, 1) @ A + self.ridge * np.eye(self.num_expression)
        mv = self.w_jaw[:, None] * (rel @ dR.transpose(0, 2, 1))
        rr = (Y - x - mv).reshape(B, L * 3)
        expr = np.linalg.solve(N, Aw.transpose(0, 2, 1) @ rr[..., None])[..., 0]
        res = rr - (A @ expr[..., None])[..., 0]
        rms = np.sqrt((res ** 2).mean(1))
        expr = np.clip(expr, -EXPRESSION_CLIP, EXPRESSION_CLIP)
        jaw = np.zeros((B, 3))
        jaw[:, 0] = theta
        # eyes: iris centre in the head frame relative to the eyeball's front point
        eyes = {}
        for side, j_eye in (("left", j_leye), ("right", j_reye)):
            if face_3d.shape[1] <= IRIS[side]:
                eyes[side] = np.zeros((B, 3))
                continue
            iris = s[:, None] * np.einsum("bij,bj->bi", R, face_3d[:, IRIS[side]]) + t
            d = (iris - j_eye) / self.eye_radius[side]
            pose = np.zeros((B, 3))
            pose[:, 0] = np.arcsin(np.clip(-d[:, 1], -1, 1))     # pitch: iris below the centre -> look down
            pose[:, 1] = np.arcsin(np.clip(d[:, 0], -1, 1))      # yaw: iris towards +x (person's left)
            pose[:, :2] -= self.eye_rest_angles[side]
            eyes[side] = np.clip(pose, -GAZE_MAX, GAZE_MAX)
        valid = np.isfinite(expr).all(1) & np.isfinite(theta) & (s > 0)
        if conf is not None:
            c = np.asarray(conf, np.float64)
            valid &= (c if c.ndim == 1 else c[:, self.corr.landmarks].mean(1)) > 0.3
        return FaceFit(expr.astype(np.float32), jaw.astype(np.float32), eyes["left"].astype(np.float32),
                       eyes["right"].astype(np.float32), rms.astype(np.float32), valid)
