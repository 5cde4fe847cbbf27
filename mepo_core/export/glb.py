"""GLB (glTF 2.0 binary) writer: per person a root node named by ID holding the 55-joint skeleton and a skinned
mesh (expression as morph targets); one animation with every person's channels, one key per frame.

glTF is metres and Y-up by definition, so ``--units`` does not apply and ``--up z`` is honoured only for
viewers that want it (the file then is not Y-up). Frames where a person is not seen hold the previous pose and
scale the person's root node to zero (STEP), so they vanish.
"""
from __future__ import annotations

import numpy as np
import pygltflib as gl
from scipy.spatial.transform import Rotation

from ..body.skeleton import SMPLX_PARENTS
from .motion import NUM_JOINTS
from .scene import Person

_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
_COMPONENTS = {np.dtype(np.float32): gl.FLOAT, np.dtype(np.uint32): gl.UNSIGNED_INT, np.dtype(np.uint8): gl.UNSIGNED_BYTE}


class _Builder:
    def __init__(self):
        self.gltf = gl.GLTF2(asset=gl.Asset(generator="mepo-capture export"), scene=0, scenes=[gl.Scene(nodes=[])],
                             buffers=[gl.Buffer(byteLength=0)])
        self.blob = bytearray()

    def accessor(self, array: np.ndarray, width: int, target: int | None = None, minmax: bool = False) -> int:
        """Append ``array`` (flattened to rows of ``width`` components) and return its accessor index."""
        array = np.ascontiguousarray(array)
        rows = array.reshape(-1, width)
        while len(self.blob) % 4:
            self.blob.append(0)
        view = gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=array.nbytes, target=target)
        self.blob += array.tobytes()
        self.gltf.bufferViews.append(view)
        acc = gl.Accessor(bufferView=len(self.gltf.bufferViews) - 1, componentType=_COMPONENTS[array.dtype],
                          count=len(rows), type=_TYPES[width])
        if minmax:
            acc.min, acc.max = rows.min(axis=0).tolist(), rows.max(axis=0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def node(self, **kwargs) -> int:
        self.gltf.nodes.append(gl.Node(**kwargs))
        return len(self.gltf.nodes) - 1

    def finish(self) -> gl.GLTF2:
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf.buffers[0].byteLength = len(self.blob)
        self.gltf.set_binary_blob(bytes(self.blob))
        return self.gltf


def _continuous(quats: np.ndarray) -> np.ndarray:
    """(T, 4) quaternions with signs flipped so that neighbours are on the same hemisphere (clean slerp)."""
    dots = np.einsum("ti,ti->t", quats[1:], quats[:-1])
    signs = np.concatenate([[1.0], np.cumprod(np.where(dots < 0, -1.0, 1.0))])
    return quats * signs[:, None]


def _add_mesh(b: _Builder, person: Person, joint_nodes: list[int], name: str) -> int:
    mesh = person.mesh
    motion = person.motion
    normals = np.zeros_like(mesh.vertices, dtype=np.float64)
    tri = mesh.vertices[mesh.faces.astype(np.int64)].astype(np.float64)
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    for k in range(3):
        np.add.at(normals, mesh.faces[:, k], face_n)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    attrs = gl.Attributes(POSITION=b.accessor(mesh.vertices, 3, gl.ARRAY_BUFFER, minmax=True),
                          NORMAL=b.accessor(normals.astype(np.float32), 3, gl.ARRAY_BUFFER),
                          JOINTS_0=b.accessor(mesh.joints[:, :4].copy(), 4, gl.ARRAY_BUFFER),
                          WEIGHTS_0=b.accessor(mesh.weights[:, :4].copy(), 4, gl.ARRAY_BUFFER),
                          JOINTS_1=b.accessor(mesh.joints[:, 4:].copy(), 4, gl.ARRAY_BUFFER),
                          WEIGHTS_1=b.accessor(mesh.weights[:, 4:].copy(), 4, gl.ARRAY_BUFFER))
    targets = [{"POSITION": b.accessor(d, 3, gl.ARRAY_BUFFER, minmax=True)} for d in mesh.expression]
    prim = gl.Primitive(attributes=attrs, indices=b.accessor(mesh.faces.reshape(-1), 1, gl.ELEMENT_ARRAY_BUFFER),
                        targets=targets, mode=gl.TRIANGLES)
    b.gltf.meshes.append(gl.Mesh(name=f"{name}_body", primitives=[prim], weights=[0.0] * len(targets),
                                 extras={"targetNames": [f"expression_{k}" for k in range(len(targets))]}))
    ibm = np.tile(np.eye(4, dtype=np.float32), (NUM_JOINTS, 1, 1))
    ibm[:, :3, 3] = -motion.rest_positions
    # glTF matrices are column-major: store the transpose of each row-major matrix.
    b.gltf.skins.append(gl.Skin(name=f"{name}_skin", joints=joint_nodes, skeleton=joint_nodes[0],
                                inverseBindMatrices=b.accessor(ibm.transpose(0, 2, 1).copy(), 16)))
    return b.node(name=f"{name}_body", mesh=len(b.gltf.meshes) - 1, skin=len(b.gltf.skins) - 1)


def write_glb(path: str, people: list[Person], joint_names: list[str], fps: float, progress=None) -> None:
    """Write all people to ``path`` (the caller handles the temp name); ``progress(n)`` is called per chunk."""
    b = _Builder()
    T = people[0].motion.num_frames
    times = b.accessor((np.arange(T) / fps).astype(np.float32), 1, minmax=True)
    animation = gl.Animation(name="take", channels=[], samplers=[])

    def animate(node: int, path_: str, values: np.ndarray, width: int, interpolation: str = "LINEAR") -> None:
        animation.samplers.append(gl.AnimationSampler(input=times, output=b.accessor(values, width),
                                                      interpolation=interpolation))
        animation.channels.append(gl.AnimationChannel(sampler=len(animation.samplers) - 1,
                                                      target=gl.AnimationChannelTarget(node=node, path=path_)))

    for person in people:
        motion = person.motion
        joint_nodes = [b.node(name=joint_names[j], translation=motion.rest_offsets[j].tolist(), children=[])
                       for j in range(NUM_JOINTS)]
        for j in range(1, NUM_JOINTS):
            b.gltf.nodes[joint_nodes[SMPLX_PARENTS[j]]].children.append(joint_nodes[j])
        for n in joint_nodes:
            if not b.gltf.nodes[n].children:
                b.gltf.nodes[n].children = None
        root_children = [joint_nodes[0]]
        body = None
        if person.mesh is not None:
            body = _add_mesh(b, person, joint_nodes, motion.name)
            root_children.append(body)
        root = b.node(name=motion.name, children=root_children, extras={"person_id": motion.person_id})
        b.gltf.scenes[0].nodes.append(root)
        quats = np.empty((T, NUM_JOINTS, 4), np.float32)
        trans = np.empty((T, int(motion.animated_offsets.sum()), 3), np.float32)
        weights = np.empty((T, 0 if person.mesh is None else len(person.mesh.expression)), np.float32)
        for chunk in motion.chunks():
            sl = slice(chunk.start, chunk.start + len(chunk.rotations))
            quats[sl] = Rotation.from_matrix(chunk.rotations.reshape(-1, 3, 3)).as_quat().reshape(-1, NUM_JOINTS, 4)
            trans[sl] = chunk.translations[:, motion.animated_offsets]
            weights[sl] = chunk.expression[:, :weights.shape[1]]
            if progress:
                progress(len(chunk.rotations))
        for j in range(NUM_JOINTS):
            animate(joint_nodes[j], "rotation", _continuous(quats[:, j].astype(np.float64)).astype(np.float32), 4)
        del quats
        for k, j in enumerate(np.flatnonzero(motion.animated_offsets)):
            animate(joint_nodes[j], "translation", trans[:, k].copy(), 3)
        del trans
        if body is not None and weights.shape[1]:
            animate(body, "weights", weights.reshape(-1).copy(), 1)
        if not motion.valid.all():
            scale = np.repeat(motion.valid.astype(np.float32)[:, None], 3, axis=1)
            animate(root, "scale", scale, 3, "STEP")
    b.gltf.animations.append(animation)
    b.finish().save_binary(path)
