"""Runs inside Blender's Python (``.venv-bpy``; bpy needs numpy<2, so never imported by mepo_core itself).

    python blender_fbx.py export SCENE.npz OUT.fbx        # build armatures/meshes/actions, write FBX
    python blender_fbx.py import IN.fbx OUT.npz [RENDER.png]  # re-import: joint world positions per frame (+ render)
    python blender_fbx.py import-bvh IN.bvh OUT.npz SCALE UP  # Blender's own BVH importer (for round-trip tests)

SCENE.npz (written by ``fbx.py``; armature space in the export's axes and units: Y- or Z-up, metres or cm):
``fps``, ``up``, ``units``, ``people`` (names) and
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


REST_FRAME = -1   # outside the baked range 0..T-1: the rest pose, current while the FBX writer writes the nodes


def _key(fcurves, values, rest=None):
    """values: (T, len(fcurves)) keyed on frames 0..T-1; rest: (len(fcurves),) also keyed on REST_FRAME."""
    frames = np.arange(len(values), dtype=np.float32)
    if rest is not None:
        frames = np.concatenate([[np.float32(REST_FRAME)], frames])
        values = np.concatenate([np.asarray(rest, values.dtype)[None], values])
    for i, fc in enumerate(fcurves):
        fc.keyframe_points.add(len(values))
        fc.keyframe_points.foreach_set("co", np.stack([frames, values[:, i].astype(np.float32)], 1).ravel())
        fc.keyframe_points.foreach_set("interpolation", np.full(len(values), 1, np.int32))  # LINEAR
        fc.update()


Y_TO_Z_UP = ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))


def _build_person(data, name, scene):
    g = lambda k: data[f"{name}/{k}"]
    names = [str(n) for n in g("joint_names")]
    parents = g("parents")
    arm = bpy.data.armatures.new(f"{name}_armature")
    obj = bpy.data.objects.new(name, arm)
    scene.collection.objects.link(obj)
    if str(data["up"]) == "y":
        # Y-up data stands upright in Blender's Z-up scene; the FBX writer's Y-up conversion cancels this rotation,
        # so the file's root node has an identity transform (no -90 degree X rotation in Unity/Unreal).
        obj.matrix_world = mathutils.Matrix(Y_TO_Z_UP)
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
        _key(_fcurves(obj, action, path + ".location", 3, bone_name), loc[:, j], rest=(0.0, 0.0, 0.0))
        _key(_fcurves(obj, action, path + ".rotation_quaternion", 4, bone_name), quat[:, j], rest=(1.0, 0.0, 0.0, 0.0))
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
    scene.unit_settings.system = "METRIC"
    scene.unit_settings.scale_length = 0.01 if str(data["units"]) == "cm" else 1.0
    for name in data["people"]:
        _build_person(data, str(name), scene)
        print("person", name, flush=True)
    up = str(data["up"])
    # The writer bakes frames 0..T-1 but writes the nodes' own (default) transforms at the current frame: make that
    # the rest pose, so a skeleton-only file's default pose is the body model's rest pose (what retargeters and
    # Unity's avatar setup read) and a skinned file's default pose equals its bind pose.
    scene.frame_set(REST_FRAME)
    # The scene's unit is the file's: 1 Blender unit = 1 m (UnitScaleFactor 100) or 1 cm (scale_length 0.01,
    # UnitScaleFactor 1). FBX_SCALE_UNITS puts the unit in the file's header only: numbers are written as they are,
    # no node gets a 100x / 0.01x scale, and every importer honouring the unit shows the real size.
    bpy.ops.export_scene.fbx(filepath=out, use_selection=False, object_types={"ARMATURE", "MESH"},
                             add_leaf_bones=False, bake_anim=True, bake_anim_use_all_actions=False,
                             bake_anim_use_nla_strips=False, bake_anim_force_startend_keying=True,
                             bake_anim_simplify_factor=0.0, use_armature_deform_only=False,
                             axis_up="Y" if up == "y" else "Z", axis_forward="-Z" if up == "y" else "Y",
                             global_scale=1.0, apply_unit_scale=True,
                             apply_scale_options="FBX_SCALE_UNITS", primary_bone_axis="Y", secondary_bone_axis="X",
                             armature_nodetype="NULL", use_mesh_modifiers=False, mesh_smooth_type="FACE")


def _file_settings(path):
    """The file's own unit and axes (GlobalSettings) and the extent of its raw mesh coordinates (file units)."""
    from io_scene_fbx import parse_fbx
    from io_scene_fbx.import_fbx import (elem_find_first, elem_props_get_integer, elem_props_get_number,
                                          elem_props_get_vector_3d)
    root, _version = parse_fbx.parse(path)
    props = elem_find_first(elem_find_first(root, b"GlobalSettings"), b"Properties70")
    extent = 0.0
    objects = elem_find_first(root, b"Objects")
    for el in objects.elems:
        if el.id == b"Geometry":
            verts = elem_find_first(el, b"Vertices")
            if verts is not None:
                v = np.asarray(verts.props[0], np.float64).reshape(-1, 3)
                extent = max(extent, float((v.max(0) - v.min(0)).max()))
    scales, root_turns = [1.0], [0.0]
    children = {int(c.props[1]) for c in elem_find_first(root, b"Connections").elems if c.props[0] == b"OO"
                and c.props[2] != 0}
    for el in objects.elems:
        if el.id == b"Model":
            p70 = elem_find_first(el, b"Properties70")
            scales += list(elem_props_get_vector_3d(p70, b"Lcl Scaling", (1.0, 1.0, 1.0)))
            if int(el.props[0]) not in children:
                root_turns += [abs(v) for v in elem_props_get_vector_3d(p70, b"Lcl Rotation", (0.0, 0.0, 0.0))]
    return {"unit_scale_factor": elem_props_get_number(props, b"UnitScaleFactor", 1.0),
            "max_node_scale": max(scales), "min_node_scale": min(scales), "max_root_rotation_deg": max(root_turns),
            "up_axis": elem_props_get_integer(props, b"UpAxis", 1) * elem_props_get_integer(props, b"UpAxisSign", 1),
            "raw_mesh_extent": extent}


def _joint_positions(scene, arms, frames):
    """Per armature the (F, bones, 3) world head positions over ``frames``."""
    positions = {a.name: [] for a in arms}
    for f in frames:
        scene.frame_set(f)
        for a in arms:
            positions[a.name].append([list(a.matrix_world @ pb.head) for pb in a.pose.bones])
    return {a.name: np.array(positions[a.name]) for a in arms}


def import_bvh(path, out, scale, up):
    """Blender's BVH importer with its defaults except scale and the file's up axis -> world joints (Z-up, m)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=path, global_scale=float(scale), axis_up=up.upper(),
                            axis_forward="-Z" if up == "y" else "Y", update_scene_duration=True)
    scene = bpy.context.scene
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    first, last = arm.animation_data.action.frame_range
    frames = range(int(round(first)), int(round(last)) + 1)
    np.savez(out, bones=np.array([pb.name for pb in arm.pose.bones]), frame_start=frames[0],
             positions=_joint_positions(scene, [arm], frames)[arm.name],
             connected=np.array([b.name for b in arm.data.bones if b.use_connect]))


def import_fbx(path, out, render=None):
    """Blender's FBX importer with its defaults -> per armature bone names, rest heads and world joint positions per
    frame (Z-up, metres), the file's unit/axes (``_file_settings``); optionally a render (``_render``)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=path, automatic_bone_orientation=False, ignore_leaf_bones=False)
    scene = bpy.context.scene
    arms = sorted((o for o in scene.objects if o.type == "ARMATURE"), key=lambda o: o.name)
    ranges = [a.animation_data.action.frame_range for a in arms if a.animation_data and a.animation_data.action]
    if ranges:
        scene.frame_start, scene.frame_end = int(round(min(r[0] for r in ranges))), int(round(max(r[1] for r in ranges)))
    frames = range(scene.frame_start, scene.frame_end + 1)
    result = {"armatures": np.array([a.name for a in arms]), "frame_start": scene.frame_start,
              "fps": scene.render.fps / scene.render.fps_base, **_file_settings(path)}
    positions = _joint_positions(scene, arms, frames)
    for a in arms:
        result[f"{a.name}/bones"] = np.array([pb.name for pb in a.pose.bones])
        result[f"{a.name}/rest_heads"] = np.array([list(a.matrix_world @ b.head_local) for b in a.data.bones])
        result[f"{a.name}/positions"] = positions[a.name]
        result[f"{a.name}/children"] = np.array([c.name for c in a.children])
        result[f"{a.name}/shape_keys"] = np.array([k.name for c in a.children if c.type == "MESH" and c.data.shape_keys
                                                   for k in c.data.shape_keys.key_blocks])
    if render:
        middle = (scene.frame_start + scene.frame_end) // 2
        result["render_uv_min"], result["render_uv_max"] = _render(scene, render, middle)
    np.savez(out, **result)


def _render(scene, png, frame):
    """Workbench render of ``frame`` from in front of the people (the capture camera's side, looking along +Y),
    framed so every mesh vertex is inside the picture; a grey floor at height 0. Returns the min and max of the
    mesh vertices' normalised picture coordinates (all within (0, 1): every body fully visible)."""
    from bpy_extras.object_utils import world_to_camera_view
    scene.frame_set(frame)
    dg = bpy.context.evaluated_depsgraph_get()
    pts = []
    for o in scene.objects:
        if o.type == "MESH":
            me = o.evaluated_get(dg).to_mesh()
            co = np.empty(len(me.vertices) * 3, np.float32)
            me.vertices.foreach_get("co", co)
            mw = np.array(o.matrix_world)
            pts.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
    pts = np.concatenate(pts) if pts else np.zeros((1, 3))
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    width, height = 960, 720
    cam_data = bpy.data.cameras.new("render_camera")
    cam_data.lens, cam_data.sensor_fit, cam_data.sensor_width = 35.0, "HORIZONTAL", 36.0
    half_w = np.arctan(18.0 / 35.0)
    half_h = np.arctan(18.0 / 35.0 * height / width)
    # far enough that the box's front face fits with a 12% margin on each side
    dist = 1.12 * max((hi[0] - lo[0]) / 2 / np.tan(half_w), (hi[2] - lo[2]) / 2 / np.tan(half_h))
    cam = bpy.data.objects.new("render_camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = mathutils.Vector((centre[0], lo[1] - dist, centre[2]))
    cam.rotation_euler = (np.pi / 2, 0.0, 0.0)
    scene.camera = cam
    floor = bpy.data.meshes.new("floor")
    r = 2.0 * max(hi[0] - lo[0], hi[1] - lo[1], 1.0)
    floor.from_pydata([(centre[0] + x * r, centre[1] + y * r, 0.0) for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))],
                      [], [(0, 1, 2, 3)])
    scene.collection.objects.link(bpy.data.objects.new("floor", floor))
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "RANDOM"
    scene.display.shading.show_shadows = True
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.filepath = png
    bpy.ops.render.render(write_still=True)
    uv = np.array([list(world_to_camera_view(scene, cam, mathutils.Vector(p)))[:2] for p in pts[::50]])
    return uv.min(0), uv.max(0)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export_fbx(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "import-bvh":
        import_bvh(*sys.argv[2:6])
    else:
        import_fbx(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
