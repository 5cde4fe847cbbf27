"""Export tests: GLB (validator + pygltflib re-import), BVH (own parser), FBX (bpy re-import, skipped without
.venv-bpy), options, bad input, a long 3-person take. Round trips compare with joints3d in camera space."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import torch
from scipy.spatial.transform import Rotation

from mepo_core.errors import MepoError
from mepo_core.export import ExportOptions, export_take
from mepo_core.export.bvh import bvh_world_positions, read_bvh
from mepo_core.export.motion import export_points, mixamo_name
from mepo_core.export.scene import build_people, load_export_take
from mepo_core.io.npz import FORMAT_VERSION, write_npz
from mepo_core.records import SmplxParams

VALIDATOR_DIR = Path.home() / ".cache" / "mepo" / "gltf-validator"
MM = 1e-3


def _take(model, T=6, P=2, invalid=((2, 1),), fps=12.0, with_joints=True, seed=0):
    rng = np.random.default_rng(seed)
    sizes = dict(SmplxParams.SIZES, betas=10, expression=10)
    data = {k: (0.3 * rng.standard_normal((T, P, n))).astype(np.float32) for k, n in sizes.items()}
    data["global_orient"][..., 0] += np.pi                       # upright in the camera frame (y down)
    data["transl"] = (np.array([0.0, 0.2, 3.0]) + 0.5 * rng.standard_normal((T, P, 3))).astype(np.float32)
    valid = np.ones((T, P), bool)
    for t, p in invalid:
        valid[t, p] = False
    joints = np.zeros((T, P, 76, 3), np.float32)
    if with_joints:
        flat = {k: torch.as_tensor(v.reshape(T * P, -1)) for k, v in data.items()}
        with torch.no_grad():
            joints = model(flat)[1][:, :76].numpy().reshape(T, P, 76, 3)
    data.update(format_version=np.array(FORMAT_VERSION), body_model=np.array(model.name), fps=np.array(fps, np.float32),
                image_size=np.array([640, 480], np.int32), camera_K=np.eye(3, dtype=np.float32),
                frame_index=np.arange(T, dtype=np.int32), timestamps=np.arange(T) / fps,
                person_ids=np.arange(P, dtype=np.int32) + 3, valid=valid, joints3d=joints,
                joint_names=np.array(model.joint_names[:76]), keypoints2d=np.zeros((T, P, 76, 3), np.float32))
    return data


@pytest.fixture(scope="module")
def take_path(open_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "take.npz"
    write_npz(str(path), _take(open_model))
    return str(path)


def _expected(take_path, options, p):
    """What the exported joints of person p must be: joints3d in the export frame (camera space)."""
    with np.load(take_path) as z:
        j3d, valid = z["joints3d"][:, p, :55].astype(np.float64), z["valid"][:, p]
    return export_points(None, options, j3d, p, np.zeros(3)), valid


def _glb_world_joints(path):
    """Re-import through pygltflib: per root node (person) the (T, 55, 3) world joint positions and names."""
    gltf = pygltflib.GLTF2().load(path)
    blob = gltf.binary_blob()

    def read(i, width):
        acc = gltf.accessors[i]
        view = gltf.bufferViews[acc.bufferView]
        return np.frombuffer(blob, np.float32, acc.count * width, view.byteOffset).reshape(acc.count, width)

    anim = {}
    for ch in gltf.animations[0].channels:
        sampler = gltf.animations[0].samplers[ch.sampler]
        anim[(ch.target.node, ch.target.path)] = read(sampler.output, {"rotation": 4, "translation": 3, "scale": 3,
                                                                        "weights": 1}[ch.target.path])
    T = gltf.accessors[gltf.animations[0].samplers[0].input].count
    out = {}
    for root in gltf.scenes[0].nodes:
        names, positions = [], []

        def walk(n, rot, pos):
            node = gltf.nodes[n]
            t = anim.get((n, "translation"), np.tile(node.translation or [0, 0, 0], (T, 1)))
            q = anim.get((n, "rotation"), np.tile(node.rotation or [0, 0, 0, 1], (T, 1)))
            new_pos = pos + np.einsum("tij,tj->ti", rot, t)
            new_rot = rot @ Rotation.from_quat(q).as_matrix()
            if node.mesh is None:
                names.append(node.name)
                positions.append(new_pos)
            for c in node.children or []:
                if gltf.nodes[c].mesh is None:
                    walk(c, new_rot, new_pos)

        joint_root = [c for c in gltf.nodes[root].children if gltf.nodes[c].mesh is None][0]
        walk(joint_root, np.tile(np.eye(3), (T, 1, 1)), np.zeros((T, 3)))
        out[gltf.nodes[root].name] = (names, np.stack(positions, 1))
    return gltf, out


def _validator():
    """node + the Khronos glTF validator from npm in a cache dir; skip when they cannot be had."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (VALIDATOR_DIR / "node_modules" / "gltf-validator").is_dir():
        VALIDATOR_DIR.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "gltf-validator"],
                                  cwd=VALIDATOR_DIR, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"npm unavailable: {e}")
        if proc.returncode != 0:
            pytest.skip(f"npm could not install gltf-validator: {proc.stderr.decode()[-200:]}")
    script = VALIDATOR_DIR / "validate.js"
    script.write_text("const fs=require('fs');const v=require('gltf-validator');"
                      "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])),{maxIssues:100})"
                      ".then(r=>console.log(JSON.stringify(r.issues))).catch(e=>{console.error(e);process.exit(1);});")
    return node, script


def test_glb_validates_and_round_trips(take_path, tmp_path):
    options = ExportOptions(camera_space=True)
    out = tmp_path / "take.glb"
    export_take(take_path, glb=str(out), options=options, progress=False)
    node, script = _validator()
    report = json.loads(subprocess.run([node, str(script), str(out)], capture_output=True, check=True,
                                       text=True).stdout)
    assert report["numErrors"] == 0, report["messages"]
    gltf, people = _glb_world_joints(str(out))
    assert sorted(people) == ["person_3", "person_4"] and len(gltf.skins) == 2
    assert len(gltf.meshes[0].primitives[0].targets) == 10                 # expression morph targets
    for p, name in enumerate(sorted(people)):
        names, pos = people[name]
        expected, valid = _expected(take_path, options, p)
        idx = [options.joint_names().index(n) for n in names]
        assert len(idx) == 55
        assert np.abs(pos - expected[:, idx])[valid].max() < MM


def test_bvh_round_trip_and_options(take_path, tmp_path):
    for options in (ExportOptions(camera_space=True),
                    ExportOptions(camera_space=True, up="z", units="cm", skeleton_names="mixamo")):
        out = tmp_path / f"bvh_{options.up}"
        written = export_take(take_path, bvh_dir=str(out), options=options, progress=False)
        assert [Path(w).name for w in written] == ["take_person_3.bvh", "take_person_4.bvh"]
        for p, path in enumerate(written):
            bvh = read_bvh(path)
            assert abs(bvh["frame_time"] - 1 / 12) < 1e-6
            pos = bvh_world_positions(bvh)
            expected, valid = _expected(take_path, options, p)
            idx = [options.joint_names().index(n) for n in bvh["names"]]
            scale = 100.0 if options.units == "cm" else 1.0
            assert np.abs(pos - expected[:, idx])[valid].max() / scale < MM
    assert bvh["names"][0] == "mixamorig:Hips" and "mixamorig:LeftHandIndex1" in bvh["names"]


def test_ground_plane_and_up_axis(take_path, tmp_path):
    """Default export: feet on the ground at the first frame (lowest foot keypoint at height 0)."""
    for up, axis in (("y", 1), ("z", 2)):
        export_take(take_path, bvh_dir=str(tmp_path / up), options=ExportOptions(up=up), progress=False)
        pos = bvh_world_positions(read_bvh(str(tmp_path / up / "take_person_3.bvh")))
        assert pos[0, :, axis].min() > -0.2 and 0.5 < pos[0, 0, axis] < 1.5   # pelvis above the ground


def test_mixamo_names():
    assert mixamo_name("left_hip") == "mixamorig:LeftUpLeg" and mixamo_name("right_thumb3") == "mixamorig:RightHandThumb3"
    assert len(set(ExportOptions(skeleton_names="mixamo").joint_names())) == 55


@pytest.mark.parametrize("broken", ["version", "missing", "no_valid"])
def test_bad_input_is_one_line_error_and_writes_nothing(open_model, tmp_path, broken, capsys):
    data = _take(open_model, T=3, with_joints=False)
    if broken == "version":
        data["format_version"] = np.array(FORMAT_VERSION + 1)
    elif broken == "missing":
        del data["joints3d"]
    else:
        data["valid"][:] = False
    path = tmp_path / "bad.npz"
    write_npz(str(path), data)
    with pytest.raises(MepoError):
        export_take(str(path), glb=str(tmp_path / "x.glb"), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_cli_error_exit(tmp_path, capsys):
    from mepo_core.cli import main
    assert main(["export", str(tmp_path / "none.npz"), "--glb", str(tmp_path / "x.glb")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


LONG_TAKE = """
import resource, sys, time, numpy as np
from mepo_core.body.model import load_body_model
from mepo_core.io.npz import write_npz
sys.path.insert(0, {tests!r})
from test_export import _take
T, P = 18000, 3                                     # 10 minutes at 30 fps, 3 people
small = _take(load_body_model(), T=2, P=P, invalid=(), fps=30.0)
data = {{k: (np.repeat(v[:1], T, axis=0) if v.ndim >= 2 and v.shape[:2] == (2, P) else v) for k, v in small.items()}}
data.update(frame_index=np.arange(T, dtype=np.int32), timestamps=np.arange(T) / 30.0)
data["global_orient"] = data["global_orient"] + 0.01 * np.sin(np.arange(T))[:, None, None].astype(np.float32)
write_npz({take!r}, data)
del data, small
start = time.perf_counter()
from mepo_core.export import export_take, ExportOptions
export_take({take!r}, glb={glb!r}, bvh_dir={bvh!r}, options=ExportOptions(skeleton_only=True), progress=False)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_long_three_person_take(tmp_path):
    """A 10-minute 3-person take exports GLB + BVH in bounded memory (measured in a fresh process)."""
    code = LONG_TAKE.format(tests=str(Path(__file__).parent), take=str(tmp_path / "long.npz"),
                            glb=str(tmp_path / "long.glb"), bvh=str(tmp_path / "bvh"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds, peak_mb = map(float, proc.stdout.split()[-2:])
    print(f"long take: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 2000
    assert len(list((tmp_path / "bvh").iterdir())) == 3 and (tmp_path / "long.glb").stat().st_size > 1e6


def _bpy_or_skip():
    from mepo_core.export.fbx import bpy_python
    try:
        return bpy_python()
    except MepoError as e:
        pytest.skip(str(e))


FBX_CASES = {   # every case: camera space, both people, all frames, joints within 1 mm after Blender's re-import
    "skeleton": ExportOptions(camera_space=True, skeleton_only=True),
    "skeleton_z_mixamo": ExportOptions(camera_space=True, skeleton_only=True, up="z", skeleton_names="mixamo"),
    "mesh": ExportOptions(camera_space=True),
    "mesh_cm_mixamo": ExportOptions(camera_space=True, units="cm", skeleton_names="mixamo"),
    "mesh_z_cm": ExportOptions(camera_space=True, up="z", units="cm"),
}


@pytest.mark.parametrize("case", list(FBX_CASES))
def test_fbx_round_trip(take_path, tmp_path, case):
    """Export, re-import with Blender's FBX importer (its defaults: the file's axes and unit honoured) and compare
    world joints with joints3d; check the file's unit/axes header and that no node carries a scale or axis turn."""
    _bpy_or_skip()
    from mepo_core.export.fbx import read_fbx
    options = FBX_CASES[case]
    out = tmp_path / f"{case}.fbx"
    export_take(take_path, fbx=str(out), options=options, progress=False)
    result = read_fbx(str(out))
    assert sorted(result["armatures"]) == ["person_3", "person_4"]
    blender = dataclasses.replace(options, up="z", units="m")      # Blender re-imports into Z-up metres
    people = build_people(load_export_take(take_path), blender)
    for p, name in enumerate(["person_3", "person_4"]):
        expected, valid = _expected(take_path, blender, p)
        bones = [str(b) for b in result[f"{name}/bones"]]
        assert sorted(bones) == sorted(options.joint_names())
        idx = [options.joint_names().index(b) for b in bones]
        assert np.abs(result[f"{name}/positions"] - expected[:, idx])[valid].max() < MM
        # the imported armature's rest pose is the body model's rest skeleton (bind pose, or for a skeleton-only
        # file the nodes' default transforms), not some frame's pose
        assert np.abs(result[f"{name}/rest_heads"] - people[p].motion.rest_positions[idx]).max() < MM
    # file unit: numbers in metres (UnitScaleFactor 100 cm) or centimetres (1); axes as asked
    assert result["unit_scale_factor"] == pytest.approx(100.0 if options.units == "m" else 1.0, rel=1e-6)
    assert int(result["up_axis"]) == (1 if options.up == "y" else 2)
    assert result["max_node_scale"] < 1 + 1e-4 and result["min_node_scale"] > 1 - 1e-4   # no 100x node scales
    assert result["max_root_rotation_deg"] < 1e-3                                        # no -90 deg root turn
    if options.skeleton_only:
        assert list(result["person_3/children"]) == []
    else:
        assert list(result["person_3/children"]) == ["person_3_body"]
        assert "expression_9" in list(result["person_3/shape_keys"])
        height = float(result["raw_mesh_extent"])                # rest mesh height in the file's own numbers
        assert (1.0 < height < 2.5) if options.units == "m" else (100.0 < height < 250.0)


@pytest.mark.parametrize("options", [ExportOptions(camera_space=True),
                                     ExportOptions(camera_space=True, up="z", units="cm", skeleton_names="mixamo")],
                         ids=["y_m", "z_cm_mixamo"])
def test_bvh_through_blenders_importer(take_path, tmp_path, options):
    """Blender's own BVH importer (position channels on non-root joints included) reads our BVH to within 1 mm."""
    _bpy_or_skip()
    from mepo_core.export.fbx import read_bvh_in_blender
    written = export_take(take_path, bvh_dir=str(tmp_path), options=options, progress=False)
    result = read_bvh_in_blender(written[0], units=options.units, up=options.up)
    expected, valid = _expected(take_path, dataclasses.replace(options, up="z", units="m"), 0)
    idx = [options.joint_names().index(str(b)) for b in result["bones"]]
    assert result["positions"].shape == expected.shape
    assert np.abs(result["positions"] - expected[:, idx])[valid].max() < MM


def test_fbx_render_two_people(take_path, tmp_path):
    """Default export (Y-up, feet on the ground): Blender re-imports it and renders both skinned bodies in frame."""
    _bpy_or_skip()
    from PIL import Image
    from mepo_core.export.fbx import read_fbx
    out, png = tmp_path / "take.fbx", tmp_path / "render.png"
    export_take(take_path, fbx=str(out), options=ExportOptions(), progress=False)
    result = read_fbx(str(out), render_png=str(png))
    assert (result["render_uv_min"] > 0.02).all() and (result["render_uv_max"] < 0.98).all()   # bodies fully visible
    pixels = np.asarray(Image.open(png).convert("RGB"), np.float32)
    assert pixels.shape == (720, 960, 3) and pixels.std() > 20
    for name in ("person_3", "person_4"):
        assert abs(result[f"{name}/positions"][0, :, 2].min()) < 0.2    # feet near the floor (Z-up after import)


def test_finger_rotations_include_the_models_mean_hand_pose(standin_model_dir, tmp_path):
    """A real SMPL-X stores finger rotations minus a mean hand pose; exported bones must carry the rotation smplx
    applies (mean added), or skinned hands bend wrong. The stand-in has a non-zero mean, the open model a zero one."""
    from mepo_core.body.model import load_body_model
    from mepo_core.estimate.kinematics import SkeletonFK
    model = load_body_model(standin_model_dir)
    path = tmp_path / "standin_take.npz"
    write_npz(str(path), _take(model, with_joints=False))
    options = ExportOptions(camera_space=True, skeleton_only=True, model_dir=str(standin_model_dir))
    take = load_export_take(str(path))
    person = build_people(take, options)[0]
    chunk = next(person.motion.chunks())
    A = options.basis
    frames = np.flatnonzero(take["valid"][:, person.motion.p])[:len(chunk.rotations)]
    params = {k: torch.as_tensor(take[k][frames, person.motion.p]) for k in SmplxParams.KEYS}
    expected = SkeletonFK(model).local_rotmats(params).numpy()
    got = A.T @ chunk.rotations[:len(frames)] @ A
    np.testing.assert_allclose(got[:, 25:55], expected[:, 25:55], atol=1e-4)
    assert np.abs(expected[:, 25:55] - np.eye(3)).max() > 0.05          # the mean made a difference here
