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


# body capsules for the 2D silhouette test: (landmark a, landmark b, radius in metres), MediaPipe indices
CAPSULES = [(11, 12, 0.09), (11, 23, 0.12), (12, 24, 0.12), (23, 24, 0.12), (11, 13, 0.05), (13, 15, 0.045),
            (12, 14, 0.05), (14, 16, 0.045), (23, 25, 0.08), (25, 27, 0.06), (24, 26, 0.08), (26, 28, 0.06),
            (27, 31, 0.04), (28, 32, 0.04), (0, 0, 0.11)]
# distinct body points that vote (face points 1-10 and the duplicated hand/heel points would over-count)
VOTERS = np.array([0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28, 31, 32])
BODY_HEIGHT_M = 1.7


def silhouette_distance(points: np.ndarray, body_2d: np.ndarray, px_per_m: float) -> np.ndarray:
    """(N, 2) pixels -> (N,) signed distance (px, < 0 inside) to one person's capsule silhouette drawn from its
    2D landmarks (radii scaled by the person's pixels per metre)."""
    a = body_2d[[c[0] for c in CAPSULES], :2]
    b = body_2d[[c[1] for c in CAPSULES], :2]
    r = np.array([c[2] for c in CAPSULES]) * px_per_m
    ab = b - a
    t = np.clip(np.einsum("snc,sc->ns", points[None] - a[:, None], ab) / np.maximum((ab * ab).sum(-1), 1e-6), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.amin(np.linalg.norm(points[:, None] - closest, axis=-1) - r[None], axis=1)


def occlusion_relations(boxes: np.ndarray, body_2d: np.ndarray, depth: np.ndarray | None = None,
                        min_score: float = 0.03) -> list[tuple[int, int, float]]:
    """Pairs (behind, front, confidence) for people whose boxes overlap.

    boxes (P, 4) px, body_2d (P, 33, 3) px + visibility, depth (P,) fitted metric depth or None.

    Visibility evidence is attributed pairwise: a landmark of i that lies on j's silhouette (capsules around j's
    2D skeleton) and is visible says i is in front of j there; hidden, it says j is in front of i, shared with
    any third person whose silhouette covers the same point (who may be the one hiding it). Landmarks outside
    the other's silhouette say nothing about this pair. The foot line and the fitted depth are weaker cues.
    """
    out = []
    P = len(boxes)
    if P < 2:
        return out
    body_2d = np.asarray(body_2d, np.float64)
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    px_per_m = height / BODY_HEIGHT_M
    # landmark boxes run through joint centres; limbs and clothes reach ~6 % of the height beyond them
    pad = 0.06 * height[:, None] * np.array([-1, -1, 1, 1])
    padded = boxes + pad
    # inside[i, k, n]: voter n of person i lies on person k's silhouette
    inside = np.zeros((P, P, len(VOTERS)), bool)
    for i in range(P):
        pts = body_2d[i, VOTERS, :2]
        for k in range(P):
            if k != i:
                inside[i, k] = silhouette_distance(pts, body_2d[k], px_per_m[k]) < 0
    for i in range(P):
        for j in range(i + 1, P):
            x0, y0 = np.maximum(padded[i, :2], padded[j, :2])
            x1, y1 = np.minimum(padded[i, 2:], padded[j, 2:])
            if x1 <= x0 or y1 <= y0:
                continue
            score = _front_score(i, j, inside, boxes, body_2d, depth)   # > 0: j is in front of i
            if abs(score) >= min_score:
                out.append((i, j, score) if score > 0 else (j, i, -score))
    return out


def _votes(a: int, b: int, inside: np.ndarray, body_2d: np.ndarray) -> tuple[float, float]:
    """Evidence from a's landmarks on b's silhouette: (b in front of a, a in front of b)."""
    on = inside[a, b]
    if not on.any():
        return 0.0, 0.0
    vis = body_2d[a, VOTERS[on], 2]
    others = inside[a, :, :][:, on].sum(0) - 1                 # third people covering the same points
    hidden = np.clip(0.5 - vis, 0, None) * 2 / (1.0 + others)
    seen = np.clip(vis - 0.5, 0, None) * 2
    return float(hidden.sum()), float(seen.sum())


def _front_score(i, j, inside, boxes, body_2d, depth) -> float:
    """Signed confidence in [-1, 1] that j is in front of i."""
    hi, hj = boxes[i, 3] - boxes[i, 1], boxes[j, 3] - boxes[j, 1]
    j_front_1, i_front_1 = _votes(i, j, inside, body_2d)
    i_front_2, j_front_2 = _votes(j, i, inside, body_2d)
    front_j, front_i = j_front_1 + j_front_2, i_front_1 + i_front_2
    score = (front_j - front_i) / (front_j + front_i + 1.0)         # saturates with consistent votes
    weight = 1.0
    feet_seen = min(np.amin(body_2d[i, ANKLES, 2]), np.amin(body_2d[j, ANKLES, 2])) > 0.5
    if feet_seen:
        foot = (np.amax(body_2d[j, ANKLES, 1]) - np.amax(body_2d[i, ANKLES, 1])) / max(hi, hj, 1.0)
        score += 0.3 * float(np.tanh(5.0 * foot))
        weight += 0.3
    if depth is not None and np.all(np.isfinite(depth[[i, j]])):
        score += 0.2 * float(np.tanh(5.0 * (depth[i] - depth[j]) / max(depth[i] + depth[j], 1e-3)))
        weight += 0.2
    return score / weight


def depth_levels(num_people: int, relations) -> np.ndarray:
    """MEPO Algorithm 1: every level starts at 0; when p_i is occluded by p_j, p_j joins p_i's occluders and
    UPDATE_DEPTH lifts each occluder above p_i, recursively up the occluder chain. (The paper's line 6 reads
    ``if d_i < d_j``, which never fires with all levels 0; the intent, stated in its text, is to keep every
    occluder above the occluded, which is what this does.)

    Contradictory evidence (cycles) is resolved before the propagation: for up to 6 people the relations kept are
    those consistent with the front-to-back order that agrees with the most evidence (weighted by confidence);
    beyond that, relations are added strongest first and any that would close a cycle is dropped."""
    relations = _consistent(num_people, relations)
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


def _consistent(num_people: int, relations) -> list:
    """The subset of (behind, front, confidence) relations without cycles (see ``depth_levels``)."""
    relations = [r for r in relations if r[0] != r[1]]
    if len(relations) < 2:
        return relations
    involved = sorted({r[0] for r in relations} | {r[1] for r in relations})
    if len(involved) <= 6:
        from itertools import permutations
        pos = {k: n for n, k in enumerate(involved)}
        behind = np.array([pos[r[0]] for r in relations])
        front = np.array([pos[r[1]] for r in relations])
        conf = np.array([r[2] for r in relations], np.float64)
        best, best_rank = -1.0, None
        for perm in permutations(range(len(involved))):         # perm[k]: rank of person k, higher = nearer
            rank = np.array(perm)
            agree = float(conf[rank[front] > rank[behind]].sum())
            if agree > best + 1e-9:
                best, best_rank = agree, rank
        return [r for r, ok in zip(relations, best_rank[front] > best_rank[behind]) if ok]
    kept, reach = [], {k: {k} for k in range(num_people)}     # reach[a]: people nearer than or equal to a
    for r in sorted(relations, key=lambda r: -r[2]):
        b, f = r[0], r[1]
        if b in reach[f]:                                       # f is already behind b: would close a cycle
            continue
        kept.append(r)
        for a in range(num_people):
            if b in reach[a]:
                reach[a] |= reach[f]
    return kept


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
