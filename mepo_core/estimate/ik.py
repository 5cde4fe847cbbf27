"""Twist-swing inverse kinematics: 3D joint targets -> SMPL-X local rotations, batched over people.

Follows Eq. 1-4 of the multi-person IK/refinement paper: each bone's rotation is a swing that takes the
template bone t_k onto the target bone p_k (Eq. 1-2) times a twist about t_k (Eq. 3), R = R_sw R_tw (Eq. 4).
The paper regresses the twist's cos/sin with a network; here the twist comes in closed form from the next bone
(the bend plane of elbow/knee must contain the hinge axis), and multi-child joints (pelvis, torso, head, wrist)
are solved by aligning two-vector frames. Joints with no evidence keep the identity rotation.
"""
from __future__ import annotations

import math

import torch

from ..body.skeleton import SMPLX_PARENTS
from .rotations import align_frames, fraction_of_rotation, normalize, rodrigues_cos_sin, swing
from .joint_map import finger_chains

PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = range(10)
NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, JAW = range(12, 23)
NOSE, R_EYE, L_EYE, R_EAR, L_EAR, L_BIG_TOE, L_SMALL_TOE, L_HEEL, R_BIG_TOE, R_SMALL_TOE, R_HEEL = range(55, 66)
L_INDEX1, L_MIDDLE1, L_PINKY1 = 25, 28, 31
R_INDEX1, R_MIDDLE1, R_PINKY1 = 40, 43, 46

FORWARD = torch.tensor([0.0, 0.0, 1.0])  # SMPL-X body frame: x left, y up, z forward


def twist_to_hinge(t: torch.Tensor, R_sw: torch.Tensor, hinge_rest: torch.Tensor, bend_normal: torch.Tensor,
                   weight: torch.Tensor) -> torch.Tensor:
    """Twist about template bone ``t`` so the child's hinge axis lines up with the observed bend normal.

    t, hinge_rest, bend_normal (B, 3) in the parent frame; R_sw (B, 3, 3); weight (B,) in [0, 1] fades the twist
    out when the limb is nearly straight (no bend plane). Returns R_tw (B, 3, 3) as in Eq. 3 (cos/sin form).
    """
    tn = normalize(t)
    m = (R_sw.transpose(-1, -2) @ bend_normal[..., None])[..., 0]
    m = normalize(m - (m * tn).sum(-1, keepdim=True) * tn)
    a = normalize(hinge_rest - (hinge_rest * tn).sum(-1, keepdim=True) * tn)
    phi = torch.atan2((torch.cross(a, m, dim=-1) * tn).sum(-1), (a * m).sum(-1))
    phi = phi.clamp(-0.6 * math.pi, 0.6 * math.pi) * weight   # a near-180 twist means a hyper-extended reading
    return rodrigues_cos_sin(tn, torch.cos(phi), torch.sin(phi))


def _given_twist(R_sw, t, R_closed, twist):
    """Where an explicit twist (cos, sin) is given (B, 2; (0, 0) = not given), R = R_sw R_tw(t, phi) (Eq. 3-4)."""
    if twist is None:
        return R_closed
    has = (twist.abs().sum(-1) > 0)[:, None, None]
    cs = twist / twist.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.where(has, R_sw @ rodrigues_cos_sin(normalize(t), cs[:, 0], cs[:, 1]), R_closed)


def limb(G_parent, J, T, a: int, b: int, c: int, bend_dir: torch.Tensor, twist: torch.Tensor | None = None):
    """Two-bone limb a->b->c (shoulder-elbow-wrist or hip-knee-ankle).

    twist: optional (B, 55, 2) cos/sin of the twist about each joint's template bone (Eq. 3), used for a and b
    where given (not (0, 0)); otherwise a's twist comes from the bend plane and b is swing only.
    Returns local rotations of a and b (B, 3, 3) and the global rotation of b.
    """
    Gt = G_parent.transpose(-1, -2)
    v = (Gt @ (T[:, b] - T[:, a])[..., None])[..., 0]
    f = (Gt @ (T[:, c] - T[:, b])[..., None])[..., 0]
    t = J[:, b] - J[:, a]
    R_sw = swing(t, v)
    cross = torch.cross(normalize(v), normalize(f), dim=-1)
    bend = cross.norm(dim=-1)
    hinge = torch.cross(normalize(t), bend_dir.expand_as(t), dim=-1)
    weight = ((bend - 0.1) / 0.25).clamp(0, 1)
    R_a = R_sw @ twist_to_hinge(t, R_sw, hinge, normalize(cross), weight)
    R_a = _given_twist(R_sw, t, R_a, None if twist is None else twist[:, a])
    G_a = G_parent @ R_a
    v2 = (G_a.transpose(-1, -2) @ (T[:, c] - T[:, b])[..., None])[..., 0]
    R_b = swing(J[:, c] - J[:, b], v2)
    R_b = _given_twist(R_b, J[:, c] - J[:, b], R_b, None if twist is None else twist[:, b])
    return R_a, R_b, G_a @ R_b


def solve_ik(J: torch.Tensor, T: torch.Tensor, conf: torch.Tensor, twist: torch.Tensor | None = None) -> torch.Tensor:
    """Local rotations from 3D joint targets.

    J (B, 76, 3) rest joints (T-pose, incl. extra joints) of each person's shape;
    T (B, 76, 3) target joint positions in camera-aligned axes (any origin); conf (B, 76) in [0, 1].
    twist: optional (B, 55, 2) twist as (cos, sin) per joint (Eq. 3) for shoulders, elbows, hips and knees,
    e.g. from a regressor: the twist of a straight limb is not observable from joint positions; rows of (0, 0)
    (and ``None``, the default) keep the closed-form bend-plane twist.
    Returns (B, 55, 3, 3) local rotation matrices (global_orient at joint 0).
    """
    B = J.shape[0]
    eye = torch.eye(3).expand(B, 55, 3, 3).clone()
    R = list(eye.unbind(1))
    mid = lambda X, i, j: 0.5 * (X[:, i] + X[:, j])

    # Pelvis and torso: frames from the hip line / shoulder line and the trunk axis.
    # rest and target trunk axes both run from the hip midpoint (the rest one used to start at the pelvis joint,
    # which tilted the pelvis frame by ~1 degree: the IK round trip in tests/test_refiner.py caught it)
    trunk_rest = mid(J, L_SHOULDER, R_SHOULDER) - mid(J, L_HIP, R_HIP)
    trunk = mid(T, L_SHOULDER, R_SHOULDER) - mid(T, L_HIP, R_HIP)
    G0 = align_frames(J[:, L_HIP] - J[:, R_HIP], trunk_rest, T[:, L_HIP] - T[:, R_HIP], trunk)
    G_torso = align_frames(J[:, L_SHOULDER] - J[:, R_SHOULDER], trunk_rest, T[:, L_SHOULDER] - T[:, R_SHOULDER], trunk)
    spine_step = fraction_of_rotation(G0.transpose(-1, -2) @ G_torso, 1.0 / 3.0)
    # Where the spine, neck and collar joints themselves are targets (a 3D skeleton, mocap; not MediaPipe), the
    # chain is solved exactly: pelvis from the hip line and the pelvis->spine1 bone, spine3 from its three
    # children, spine1/2 = the equal-thirds rotation corrected by the swing onto their observed bones (so their
    # twist stays the thirds' share), collars swing onto the shoulders. Otherwise: equal thirds, collars at rest.
    spine_ok = (conf[:, [SPINE1, SPINE2, SPINE3, NECK, L_COLLAR, R_COLLAR]].amin(-1) > 0.3)[:, None, None]
    G0_sp = align_frames(J[:, L_HIP] - J[:, R_HIP], J[:, SPINE1] - J[:, PELVIS],
                         T[:, L_HIP] - T[:, R_HIP], T[:, SPINE1] - T[:, PELVIS])
    G3_sp = align_frames(J[:, L_COLLAR] - J[:, R_COLLAR], J[:, NECK] - J[:, SPINE3],
                         T[:, L_COLLAR] - T[:, R_COLLAR], T[:, NECK] - T[:, SPINE3])
    Q = fraction_of_rotation(G0_sp.transpose(-1, -2) @ G3_sp, 1.0 / 3.0)
    G, R_sp = G0_sp, []
    for j, child in ((SPINE1, SPINE2), (SPINE2, SPINE3)):
        v = (G.transpose(-1, -2) @ (T[:, child] - T[:, j])[..., None])[..., 0]
        R_j = swing((Q @ (J[:, child] - J[:, j])[..., None])[..., 0], v) @ Q
        R_sp.append(R_j)
        G = G @ R_j
    R_sp.append(G.transpose(-1, -2) @ G3_sp)
    G0 = torch.where(spine_ok, G0_sp, G0)
    R[PELVIS] = G0
    for j, R_j in zip((SPINE1, SPINE2, SPINE3), R_sp):
        R[j] = torch.where(spine_ok, R_j, spine_step)
    G_spine3 = torch.where(spine_ok, G3_sp, G0 @ spine_step @ spine_step @ spine_step)
    G_collar = {}
    for col, sh in ((L_COLLAR, L_SHOULDER), (R_COLLAR, R_SHOULDER)):
        v = (G_spine3.transpose(-1, -2) @ (T[:, sh] - T[:, col])[..., None])[..., 0]
        R[col] = torch.where(spine_ok, swing(J[:, sh] - J[:, col], v), R[col])
        G_collar[sh] = G_spine3 @ R[col]

    # Head from ears and nose, split between neck and head; with the head joint a target too, the neck is the
    # half split corrected by the swing onto the observed neck->head bone and the head takes the rest.
    face_ok = (conf[:, [NOSE, L_EAR, R_EAR]].amin(-1) > 0.3)[:, None, None]
    ear_rest, ear = mid(J, L_EAR, R_EAR), mid(T, L_EAR, R_EAR)
    G_head = align_frames(J[:, L_EAR] - J[:, R_EAR], J[:, NOSE] - ear_rest, T[:, L_EAR] - T[:, R_EAR], T[:, NOSE] - ear)
    half = fraction_of_rotation(G_spine3.transpose(-1, -2) @ G_head, 0.5)
    v = (G_spine3.transpose(-1, -2) @ (T[:, HEAD] - T[:, NECK])[..., None])[..., 0]
    neck_exact = swing((half @ (J[:, HEAD] - J[:, NECK])[..., None])[..., 0], v) @ half
    head_ok = (conf[:, [NECK, HEAD]].amin(-1) > 0.3)[:, None, None] & face_ok
    R[NECK] = torch.where(head_ok, neck_exact, torch.where(face_ok, half, R[NECK]))
    R[HEAD] = torch.where(head_ok, (G_spine3 @ neck_exact).transpose(-1, -2) @ G_head,
                          torch.where(face_ok, half, R[HEAD]))

    # Arms and legs.
    for sh, el, wr in ((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST)):
        R[sh], R[el], _ = limb(G_collar[sh], J, T, sh, el, wr, FORWARD, twist)
    G_knees = {}
    for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
        R[hip], R[knee], G_knees[knee] = limb(G0, J, T, hip, knee, ankle, -FORWARD, twist)
    for knee, ankle, toe, heel in ((L_KNEE, L_ANKLE, L_BIG_TOE, L_HEEL), (R_KNEE, R_ANKLE, R_BIG_TOE, R_HEEL)):
        ok = (torch.minimum(conf[:, toe], conf[:, heel]) > 0.3)[:, None, None]
        G_foot = align_frames(J[:, toe] - J[:, heel], J[:, toe] - J[:, ankle], T[:, toe] - T[:, heel], T[:, toe] - T[:, ankle])
        R[ankle] = torch.where(ok, G_knees[knee].transpose(-1, -2) @ G_foot, R[ankle])

    # Wrists from the knuckle line and the palm axis.
    G = _globals(R)
    G_wrist = {}
    for wrist, elbow, idx, midd, pinky in ((L_WRIST, L_ELBOW, L_INDEX1, L_MIDDLE1, L_PINKY1),
                                           (R_WRIST, R_ELBOW, R_INDEX1, R_MIDDLE1, R_PINKY1)):
        ok = (conf[:, [idx, pinky]].amin(-1) > 0.2)[:, None, None]
        G_w = align_frames(J[:, midd] - J[:, wrist], J[:, idx] - J[:, pinky],
                           T[:, midd] - T[:, wrist], T[:, idx] - T[:, pinky])
        R[wrist] = torch.where(ok, G[elbow].transpose(-1, -2) @ G_w, R[wrist])
        G_wrist[wrist] = G[elbow] @ R[wrist]
    # Fingers: all ten chains at once, one knuckle level at a time (swing only).
    chains = torch.tensor(finger_chains("left") + finger_chains("right"))           # (10, 4)
    G_par = torch.stack([G_wrist[L_WRIST]] * 5 + [G_wrist[R_WRIST]] * 5, 1)      # (B, 10, 3, 3)
    for level in range(3):
        j, child = chains[:, level], chains[:, level + 1]
        v = (G_par.transpose(-1, -2) @ (T[:, child] - T[:, j])[..., None])[..., 0]
        ok = (torch.minimum(conf[:, j], conf[:, child]) > 0.2)[..., None, None]
        R_level = torch.where(ok, swing(J[:, child] - J[:, j], v), torch.eye(3).expand_as(G_par))
        for n, joint in enumerate(j.tolist()):
            R[joint] = R_level[:, n]
        G_par = G_par @ R_level
    return torch.stack(R, 1)


def _globals(R: list[torch.Tensor]) -> list[torch.Tensor]:
    G = [R[0]]
    for k in range(1, 55):
        G.append(G[SMPLX_PARENTS[k]] @ R[k])
    return G
