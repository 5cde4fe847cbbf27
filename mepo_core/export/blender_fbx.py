"""Runs inside Blender's Python (``.venv-bpy``; bpy needs numpy<2, so never imported by mepo_core itself).

    python blender_fbx.py export SCENE.npz OUT.fbx        # build armatures/meshes/actions, write FBX
    python blender_fbx.py import IN.fbx OUT.npz [RENDER.png]  # re-import: joint world positions per frame (+ render)

SCENE.npz (written by ``fbx.py``; Blender frame: Z-up, metres): ``fps``, ``up``, ``scale``, ``people`` (names) and
per person ``{name}/joint_names, heads (55,3), orient (55,3,3), lengths, parents, loc (T,55,3), quat (T,55,4 wxyz)``
and optionally ``verts, faces, skin_joints, skin_weights, expr_dirs (E,V,3), expr (T,E)``.
"""
import sys

import bpy
import mathutils
import numpy as np


def _fcurves(obj, action, data_path, count, group=""):
    if hasattr(action, "fcurve_ensure_for_datablock"):          # Blender >= 4.4 (slotted actions)
        return [action.fcurve_ensure_for_datablock(obj, data_path, index=i, group_name=group) for i in range(count)]
    return [action.fcurves.new(data_path, index=i, action_group=group) for i in range(count)]


def _key(fcurves, values):
    """values: (T, len(fcurves)) keyed on frames 0..T-1."""
    frames = np.arange(len(values), dtype=np.float32)
    for i, fc in enumerate(fcurves):
        fc.keyframe_points.add(len(values))
        fc.keyframe_points.foreach_set("co", np.stack([frames, values[:, i].astype(np.float32)], 1).ravel())
        fc.keyframe_points.foreach_set("interpolation", np.full(len(values), 1, np.int32))  # LINEAR
        fc.update()


def _build_person(data, name, scene):
    g = lambda k: data[f"{name}/{k}"]
    names = [str(n) for n in g("joint_names")]
    parents = g("parents")
    arm = bpy.data.armatures.new(f"{name}_armature")
    obj = bpy.data.objects.new(name, arm)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bones = []
    for j, bone_name in enumerate(names):
        eb = arm.edit_bones.new(bone_name)
        eb.head = (0.0, 0.0, 0.0)
        eb.tail = (0.0, float(g("lengths")[j]), 0.0)
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = g("orient")[j], g("heads")[j]
        eb.matrix = mathutils.Matrix([list(r) for r in m])   # rows (a plain nested list would be columns)
        if parents[j] >= 0:
            eb.parent = bones[parents[j]]
        eb.use_connect = False
        bones.append(eb)
    bpy.ops.object.mode_set(mode="OBJECT")
    obj.animation_data_create()
    action = bpy.data.actions.new(f"{name}_take")
    obj.animation_data.action = action
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    loc, quat = g("loc"), g("quat")
    for j, bone_name in enumerate(names):
        path = f'pose.bones["{bone_name}"]'
        _key(_fcurves(obj, action, path + ".location", 3, bone_name), loc[:, j])
        _key(_fcurves(obj, action, path + ".rotation_quaternion", 4, bone_name), quat[:, j])
    if f"{name}/verts" in data:
        _build_mesh(data, name, obj, names, scene)
    return obj


def _build_mesh(data, name, arm_obj, names, scene):
    g = lambda k: data[f"{name}/{k}"]
    verts, faces = g("verts"), g("faces")
    mesh = bpy.data.meshes.new(f"{name}_body")
    mesh.from_pydata(verts.tolist(), [], faces.tolist())
    obj = bpy.data.objects.new(f"{name}_body", mesh)
    scene.collection.objects.link(obj)
    obj.parent = arm_obj
    groups = [obj.vertex_groups.new(name=n) for n in names]
    joints, weights = g("skin_joints"), g("skin_weights")
    for v in range(len(verts)):
        for j, w in zip(joints[v], weights[v]):
            if w > 0:
                groups[j].add([v], float(w), "REPLACE")
    mod = obj.modifiers.new("armature", "ARMATURE")
    mod.object = arm_obj
    dirs, expr = g("expr_dirs"), g("expr")
    if len(dirs):
        obj.shape_key_add(name="Basis", from_mix=False)
        keys = mesh.shape_keys
        keys.animation_data_create()
        action = bpy.data.actions.new(f"{name}_expression")
        keys.animation_data.action = action
        for k in range(len(dirs)):
            sk = obj.shape_key_add(name=f"expression_{k}", from_mix=False)
            sk.slider_min, sk.slider_max = -10.0, 10.0
            sk.data.foreach_set("co", (verts + dirs[k]).astype(np.float32).ravel())
            _key(_fcurves(keys, action, f'key_blocks["expression_{k}"].value', 1), expr[:, k:k + 1])


def export_fbx(scene_npz, out):
    data = np.load(scene_npz, allow_pickle=False)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    fps = float(data["fps"])
    scene.render.fps = max(1, int(round(fps)))
    scene.render.fps_base = scene.render.fps / fps
    T = int(data["num_frames"])
    scene.frame_start, scene.frame_end = 0, T - 1
    for name in data["people"]:
        _build_person(data, str(name), scene)
        print("person", name, flush=True)
    up = str(data["up"])
    bpy.ops.export_scene.fbx(filepath=out, use_selection=False, object_types={"ARMATURE", "MESH"},
                             add_leaf_bones=False, bake_anim=True, bake_anim_use_all_actions=False,
                             bake_anim_use_nla_strips=False, bake_anim_force_startend_keying=True,
                             bake_anim_simplify_factor=0.0, use_armature_deform_only=False,
                             axis_up="Y" if up == "y" else "Z", axis_forward="-Z" if up == "y" else "Y",
                             global_scale=float(data["scale"]), apply_unit_scale=True,
                             apply_scale_options="FBX_SCALE_NONE", primary_bone_axis="Y", secondary_bone_axis="X",
                             armature_nodetype="NULL", use_mesh_modifiers=False, mesh_smooth_type="FACE")


def import_fbx(path, out, render=None):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=path, automatic_bone_orientation=False, ignore_leaf_bones=False)
    scene = bpy.context.scene
    arms = sorted((o for o in scene.objects if o.type == "ARMATURE"), key=lambda o: o.name)
    ranges = [a.animation_data.action.frame_range for a in arms if a.animation_data and a.animation_data.action]
    if ranges:
        scene.frame_start, scene.frame_end = int(round(min(r[0] for r in ranges))), int(round(max(r[1] for r in ranges)))
    frames = range(scene.frame_start, scene.frame_end + 1)
    result = {"armatures": np.array([a.name for a in arms]), "frame_start": scene.frame_start,
              "fps": scene.render.fps / scene.render.fps_base}
    positions = {a.name: [] for a in arms}
    for f in frames:
        scene.frame_set(f)
        for a in arms:
            positions[a.name].append([list(a.matrix_world @ pb.head) for pb in a.pose.bones])
    for a in arms:
        result[f"{a.name}/bones"] = np.array([pb.name for pb in a.pose.bones])
        result[f"{a.name}/positions"] = np.array(positions[a.name])
        result[f"{a.name}/children"] = np.array([c.name for c in a.children])
        result[f"{a.name}/shape_keys"] = np.array([k.name for c in a.children if c.type == "MESH" and c.data.shape_keys
                                                   for k in c.data.shape_keys.key_blocks])
    np.savez(out, **result)
    if render:
        _render(scene, render, (scene.frame_start + scene.frame_end) // 2)


def _render(scene, png, frame):
    scene.frame_set(frame)
    pts = []
    for o in scene.objects:
        if o.type == "MESH":
            dg = bpy.context.evaluated_depsgraph_get()
            me = o.evaluated_get(dg).to_mesh()
            co = np.empty(len(me.vertices) * 3, np.float32)
            me.vertices.foreach_get("co", co)
            mw = np.array(o.matrix_world)
            pts.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
    pts = np.concatenate(pts) if pts else np.zeros((1, 3))
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    size = float(max(hi[0] - lo[0], hi[2] - lo[2], 1.0))
    cam_data = bpy.data.cameras.new("render_camera")
    cam = bpy.data.objects.new("render_camera", cam_data)
    scene.collection.objects.link(cam)
    # the capture camera looked along +Y (Z-up scene): look the same way from in front of the people
    cam.location = mathutils.Vector((centre[0], lo[1] - 1.6 * size, centre[2] + 0.1 * size))
    cam.rotation_euler = (np.pi / 2, 0.0, 0.0)
    scene.camera = cam
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "RANDOM"
    scene.render.resolution_x, scene.render.resolution_y = 960, 720
    scene.render.filepath = png
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export_fbx(sys.argv[2], sys.argv[3])
    else:
        import_fbx(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
