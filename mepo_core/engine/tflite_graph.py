"""Reading a .tflite file into a plain graph: constant tensors (fp16 dequantised, sparse densified) and operators.

Only what MediaPipe's shipped pose/hand/face models use is supported; anything else raises ``UnsupportedOp`` so a
port never silently computes something different from LiteRT.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as S

_OP_NAMES = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {S.TensorType.FLOAT32: np.float32, S.TensorType.FLOAT16: np.float16, S.TensorType.INT32: np.int32,
           S.TensorType.UINT8: np.uint8, S.TensorType.INT64: np.int64, S.TensorType.INT8: np.int8}
_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}


class UnsupportedOp(ValueError):
    pass


@dataclass
class Op:
    kind: str                       # builtin operator name, e.g. "CONV_2D"
    inputs: list[int]               # tensor indices (-1 = optional input absent)
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    path: Path
    shapes: dict[int, tuple]        # every tensor's static shape (batch 1)
    names: dict[int, str]
    constants: dict[int, np.ndarray]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]              # ordered by name, as detect.tflite.TfliteModel orders them


def _vector(vec_union_type: int, table) -> np.ndarray:
    cls = {S.SparseIndexVector.Int32Vector: S.Int32Vector, S.SparseIndexVector.Uint16Vector: S.Uint16Vector,
           S.SparseIndexVector.Uint8Vector: S.Uint8Vector}[vec_union_type]
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return obj.ValuesAsNumpy().astype(np.int64)


def densify(values: np.ndarray, shape: tuple, sparsity) -> np.ndarray:
    """TFLite sparse (per-dimension DENSE / SPARSE_CSR, no blocks) -> dense array of ``shape``."""
    if sparsity.BlockMapLength():
        raise UnsupportedOp("block-sparse tensors are not supported")
    order = sparsity.TraversalOrderAsNumpy()
    dims = [sparsity.DimMetadata(i) for i in range(sparsity.DimMetadataLength())]
    dense = np.zeros(shape, values.dtype)
    cursor = iter(values)

    def walk(level: int, prefix: tuple, parent: int):
        dim = dims[level]
        if dim.Format() == S.DimensionType.DENSE:
            children = [(i, parent * dim.DenseSize() + i) for i in range(dim.DenseSize())]
        else:
            segments = _vector(dim.ArraySegmentsType(), dim.ArraySegments())
            indices = _vector(dim.ArrayIndicesType(), dim.ArrayIndices())
            children = [(int(indices[k]), k) for k in range(segments[parent], segments[parent + 1])]
        for coordinate, position in children:
            if level + 1 == len(dims):
                index = [0] * len(shape)
                for axis, c in zip(order, prefix + (coordinate,)):
                    index[axis] = c
                dense[tuple(index)] = next(cursor)
            else:
                walk(level + 1, prefix + (coordinate,), position)

    walk(0, (), 0)
    return dense


def _options(op, kind: str) -> dict:
    table = op.BuiltinOptions()
    if table is None:
        return {}
    cls = {"CONV_2D": S.Conv2DOptions, "DEPTHWISE_CONV_2D": S.DepthwiseConv2DOptions, "ADD": S.AddOptions,
           "MAX_POOL_2D": S.Pool2DOptions, "CONCATENATION": S.ConcatenationOptions,
           "RESIZE_BILINEAR": S.ResizeBilinearOptions, "DEPTH_TO_SPACE": S.DepthToSpaceOptions,
           "FULLY_CONNECTED": S.FullyConnectedOptions, "MEAN": S.ReducerOptions,
           "STRIDED_SLICE": S.StridedSliceOptions}.get(kind)
    if cls is None:
        return {}
    o = cls()
    o.Init(table.Bytes, table.Pos)
    out = {}
    for name in ("Padding", "StrideW", "StrideH", "DilationWFactor", "DilationHFactor", "DepthMultiplier",
                 "FilterWidth", "FilterHeight", "Axis", "AlignCorners", "HalfPixelCenters", "BlockSize",
                 "KeepNumDims", "KeepDims", "BeginMask", "EndMask", "ShrinkAxisMask", "EllipsisMask",
                 "NewAxisMask", "Offset"):
        if hasattr(o, name):
            out[name] = getattr(o, name)()
    if hasattr(o, "FusedActivationFunction"):
        code = o.FusedActivationFunction()
        if code not in _ACTIVATIONS:
            raise UnsupportedOp(f"fused activation {code} in {kind}")
        out["activation"] = _ACTIVATIONS[code]
    return out


def read_graph(path: str | Path) -> Graph:
    path = Path(path)
    buf = path.read_bytes()
    model = S.Model.GetRootAsModel(buf, 0)
    sg = model.Subgraphs(0)
    shapes, names, raw = {}, {}, {}
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shapes[i] = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        names[i] = t.Name().decode()
        data = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        if isinstance(data, np.ndarray) and data.size:
            if t.Type() not in _DTYPES:
                raise UnsupportedOp(f"tensor type {t.Type()} ({names[i]})")
            values = data.view(_DTYPES[t.Type()])
            raw[i] = densify(values, shapes[i], t.Sparsity()) if t.Sparsity() else values.reshape(shapes[i])
    ops, constants = [], dict(raw)
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        inputs, outputs = list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())
        if kind in ("DEQUANTIZE", "DENSIFY") and inputs[0] in constants:   # fold weight decompression at load
            constants[outputs[0]] = constants[inputs[0]].astype(np.float32)
            continue
        ops.append(Op(kind, [int(i) for i in inputs], [int(o) for o in outputs], _options(op, kind)))
    graph_outputs = sorted((int(o) for o in sg.OutputsAsNumpy()), key=lambda o: (len(names[o]), names[o]))
    return Graph(path, shapes, names, constants, ops, [int(i) for i in sg.InputsAsNumpy()], graph_outputs)
