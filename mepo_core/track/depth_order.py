"""Depth order of the people in a frame (MEPO Algorithm 1) and metric translations that respect it.

Occlusion evidence comes from what the landmarker already gives, no extra model: where two people's boxes
overlap, the person in front keeps its landmarks visible there and the one behind loses them (MediaPipe's
per-landmark visibility). Two weaker cues break ties: the lower foot line in the image is nearer (people on one
floor, camera above the floor) and the fitted metric depth. ``relations`` -> ``depth_levels`` (Algorithm 1:
higher level = nearer, every occluder above everyone it occludes) -> ``enforce_order`` moves the translations
of conflicting pairs the least amount along their camera rays so that every occluder is nearer.
"""
from __future__ import annotations

import numpy as np

ANKLES = (27, 28)


def occlusion_relations(boxes: np.ndarray, body_2d: np.ndarray, depth: np.ndarray | None = None,
                        min_score: float = 0.03) -> list[tuple[int, int, float]]:
    """Pairs (behind, front, confidence) for people whose boxes overlap.

    boxes (P, 4) px, body_2d (P, 33, 3) px + visibility, depth (P,) fitted metric depth or None.
    """
    out = []
    P = len(boxes)
    # landmark boxes run through joint centres; limbs and clothes reach ~6 % of the height beyond them
    pad = 0.06 * (boxes[:, 3] - boxes[:, 1])[:, None] * np.array([-1, -1, 1, 1])
    boxes = boxes + pad
    for i in range(P):
        for j in range(i + 1, P):
            x0, y0 = np.maximum(boxes[i, :2], boxes[j, :2])
            x1, y1 = np.minimum(boxes[i, 2:], boxes[j, 2:])
            if x1 <= x0 or y1 <= y0:
                continue
            score = _front_score(i, j, (x0, y0, x1, y1), boxes, body_2d, depth)   # > 0: j is in front of i
            if abs(score) >= min_score:
                out.append((i, j, score) if score > 0 else (j, i, -score))
    return out


def _front_score(i, j, region, boxes, body_2d, depth) -> float:
    x0, y0, x1, y1 = region
    score, weight = 0.0, 0.0

    def inside(k):
        pts = body_2d[k]
        m = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        return pts[m, 2]
    vi, vj = inside(i), inside(j)
    if len(vi) and len(vj):
        # visibility contrast inside the overlap: the occluded person's landmarks there are hidden
        score += float(vj.mean() - vi.mean())
        weight += 1.0
    hi, hj = boxes[i, 3] - boxes[i, 1], boxes[j, 3] - boxes[j, 1]
    feet_seen = min(body_2d[i, ANKLES, 2].min(), body_2d[j, ANKLES, 2].min()) > 0.5
    if feet_seen:
        foot = (body_2d[j, ANKLES, 1].max() - body_2d[i, ANKLES, 1].max()) / max(hi, hj, 1.0)
        score += 0.3 * float(np.tanh(5.0 * foot))
        weight += 0.3
    if depth is not None and np.all(np.isfinite(depth[[i, j]])):
        score += 0.2 * float(np.tanh(5.0 * (depth[i] - depth[j]) / max(depth[i] + depth[j], 1e-3)))
        weight += 0.2
    return score / max(weight, 1e-6) if weight else 0.0


def depth_levels(num_people: int, relations) -> np.ndarray:
    """MEPO Algorithm 1: every level starts at 0; when p_i is occluded by p_j, p_j joins p_i's occluders and
    UPDATE_DEPTH lifts each occluder above p_i, recursively up the occluder chain. Cycles (contradictory
    evidence) are cut by visiting each person at most once per propagation. (The paper's line 6 reads
    ``if d_i < d_j``, which never fires with all levels 0; the intent, stated in its text, is to keep every
    occluder above the occluded, which is what this does.)"""
    d = np.zeros(num_people, np.int16)
    occluders: dict[int, list[int]] = {k: [] for k in range(num_people)}

    def update(i: int, visiting: set[int]) -> None:
        visiting = visiting | {i}
        for k in occluders[i]:
            if k in visiting:
                continue
            if d[k] <= d[i]:
                d[k] = d[i] + 1
            update(k, visiting)
    for rel in sorted(relations, key=lambda r: -r[2]):          # strongest evidence first
        i, j = rel[0], rel[1]
        if j not in occluders[i] and i not in occluders[j]:
            occluders[i].append(j)
            update(i, set())
    return d


def enforce_order(points: np.ndarray, relations, margin: float = 0.15, iterations: int = 10) -> np.ndarray:
    """Per-person scale factors s (P,) so that for every (behind, front) pair the front person's reference
    point is at least ``margin`` metres nearer. Scaling a point about the camera centre keeps its projection;
    each conflicting pair meets half way (the least total change), repeated so chains settle.

    points (P, 3): one reference point per person in camera space (the pelvis)."""
    z = points[:, 2].astype(np.float64).copy()
    z0 = z.copy()
    for _ in range(iterations):
        moved = False
        for behind, front, *_ in relations:
            gap = z[front] + margin - z[behind]
            if gap > 1e-6:
                z[behind] += 0.5 * gap
                z[front] -= 0.5 * gap
                moved = True
        if not moved:
            break
    z = np.maximum(z, 0.3)
    return (z / np.maximum(z0, 1e-6)).astype(np.float32)
