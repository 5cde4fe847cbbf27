"""A TFLite graph as a torch module: same weights, same outputs, any batch size.

Inside, 4-D activations are NCHW (torch's native conv layout); the module's input and its 4-D outputs stay NHWC so
it is a drop-in for the LiteRT interpreter (``detect.tflite.TfliteModel``). Every op keeps the batch axis first, so
``forward`` takes (B, S, S, 3) and all people's crops of a frame run as one batch.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tflite_graph import Graph, Op, UnsupportedOp, read_graph

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "relu":
        return F.relu(x)
    if activation == "relu6":
        return F.hardtanh(x, 0.0, 6.0)
    return x


def _nchw(array: np.ndarray) -> np.ndarray:
    """A constant meant to broadcast against an NHWC activation, re-laid for NCHW."""
    if array.ndim == 0:
        return array
    if array.ndim == 1:
        return array.reshape(-1, 1, 1)
    a = array.reshape((1,) * (4 - array.ndim) + array.shape)
    return a.transpose(0, 3, 1, 2)


class TorchTflite(nn.Module):
    """Executes a ``Graph`` with torch ops; build with ``TorchTflite.load(path)``."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.name = graph.path.name
        self.input_size = graph.shapes[graph.inputs[0]][1]
        self._input = graph.inputs[0]
        self._outputs = graph.outputs
        self._rank = dict((i, len(s)) for i, s in graph.shapes.items())
        self._steps = []
        for op in graph.ops:
            self._steps.append(self._compile(op, graph))

    @classmethod
    def load(cls, path) -> "TorchTflite":
        return cls(read_graph(path)).eval()

    # -- building ---------------------------------------------------------------------------------------------
    def _const(self, graph: Graph, index: int, array: np.ndarray | None = None) -> str:
        name = f"c{index}_{len(self._buffers)}"
        value = graph.constants[index] if array is None else array
        self.register_buffer(name, torch.from_numpy(np.array(value, dtype=np.float32)))   # a writable copy
        return name

    def _compile(self, op: Op, graph: Graph):
        o, k = op.options, op.kind
        shape = graph.shapes
        if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = graph.constants[op.inputs[1]]                      # OHWI, or 1HW(C*m) for depthwise
            if k == "CONV_2D":
                weight, groups = w.transpose(0, 3, 1, 2), 1
            else:
                groups = shape[op.inputs[0]][3]
                weight = w[0].transpose(2, 0, 1)[:, None]           # (C*m, 1, H, W)
            has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
            bias = self._const(graph, op.inputs[2]) if has_bias else None
            wname = self._const(graph, op.inputs[1], weight)
            stride, dil = (o["StrideH"], o["StrideW"]), (o.get("DilationHFactor", 1), o.get("DilationWFactor", 1))
            pad = (0, 0, 0, 0)
            if o["Padding"] == 0:                                   # SAME
                _, h, wd, _ = shape[op.inputs[0]]
                ph = _same_padding(h, weight.shape[2], stride[0], dil[0])
                pw = _same_padding(wd, weight.shape[3], stride[1], dil[1])
                pad = (pw[0], pw[1], ph[0], ph[1])
            act = o.get("activation")
            inner = (0, 0)
            if pad[0] == pad[1] and pad[2] == pad[3]:               # symmetric: let the conv pad (no extra copy)
                inner, pad = (pad[2], pad[0]), (0, 0, 0, 0)

            def conv(x, wname=wname, bias=bias, stride=stride, dil=dil, pad=pad, inner=inner, groups=groups, act=act):
                if any(pad):
                    x = F.pad(x, pad)
                y = F.conv2d(x, getattr(self, wname), getattr(self, bias) if bias else None, stride, inner, dil,
                             groups)
                return _activate(y, act)
            return op, conv
        if k == "ADD":
            consts = {i: self._const(graph, i, _nchw(graph.constants[i]) if self._rank[op.outputs[0]] == 4
                                     else graph.constants[i]) for i in op.inputs if i in graph.constants}
            act = o.get("activation")

            def add(a, b, consts=consts, ins=op.inputs, act=act):
                a = getattr(self, consts[ins[0]]) if ins[0] in consts else a
                b = getattr(self, consts[ins[1]]) if ins[1] in consts else b
                return _activate(a + b, act)
            return op, add
        if k == "PAD":
            p = graph.constants[op.inputs[1]].astype(int)
            if len(p) == 4:                                         # NHWC pads -> F.pad's (W, H, C) order
                pads = (p[2, 0], p[2, 1], p[1, 0], p[1, 1], p[3, 0], p[3, 1])
                if p[0].any():
                    raise UnsupportedOp("padding the batch axis")
            else:
                pads = tuple(int(v) for row in p[::-1] for v in row)
            pads = tuple(int(v) for v in pads)
            return op, lambda x, pads=pads: F.pad(x, pads)
        if k == "MAX_POOL_2D":
            kh, kw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
            pad = (0, 0, 0, 0)
            if o["Padding"] == 0:
                _, h, wd, _ = shape[op.inputs[0]]
                ph, pw = _same_padding(h, kh, sh), _same_padding(wd, kw, sw)
                pad = (pw[0], pw[1], ph[0], ph[1])

            def pool(x, pad=pad, k=(kh, kw), s=(sh, sw), act=o.get("activation")):
                if any(pad):
                    x = F.pad(x, pad, value=float("-inf"))
                return _activate(F.max_pool2d(x, k, s), act)
            return op, pool
        if k == "RESIZE_BILINEAR":
            size = tuple(int(v) for v in graph.constants[op.inputs[1]])
            if o.get("HalfPixelCenters"):
                return op, lambda x, size=size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            if o.get("AlignCorners"):
                return op, lambda x, size=size: F.interpolate(x, size=size, mode="bilinear", align_corners=True)
            return op, lambda x, size=size: _resize_legacy(x, size)
        if k == "DEPTH_TO_SPACE":
            bs = o["BlockSize"]

            def d2s(x, bs=bs):                                      # TF order: channel = (i * bs + j) * C + c
                b, c, h, w = x.shape
                x = x.reshape(b, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
                return x.reshape(b, c // (bs * bs), h * bs, w * bs)
            return op, d2s
        if k == "RESHAPE":
            target = tuple(int(v) for v in shape[op.outputs[0]])
            to4 = len(target) == 4

            def reshape(x, target=target, to4=to4):
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1)
                x = x.reshape((x.shape[0],) + target[1:])
                return x.permute(0, 3, 1, 2) if to4 else x
            return op, reshape
        if k == "CONCATENATION":
            axis = o["Axis"]
            if self._rank[op.outputs[0]] == 4:
                axis = _NHWC_TO_NCHW_AXIS[axis]
            return op, lambda *xs, axis=axis, act=o.get("activation"): _activate(torch.cat(xs, axis), act)
        if k == "LOGISTIC":
            return op, torch.sigmoid
        if k == "RELU":
            return op, F.relu
        if k == "PRELU":
            alpha = graph.constants[op.inputs[1]]
            aname = self._const(graph, op.inputs[1], _nchw(alpha) if self._rank[op.inputs[0]] == 4 else alpha)
            return op, lambda x, aname=aname: torch.where(x >= 0, x, x * getattr(self, aname))
        if k == "MEAN":
            axes = [int(a) for a in np.atleast_1d(graph.constants[op.inputs[1]])]
            if self._rank[op.inputs[0]] == 4:
                axes = [_NHWC_TO_NCHW_AXIS[a] for a in axes]
            keep = bool(o.get("KeepDims"))
            out4 = self._rank[op.outputs[0]] == 4

            def mean(x, axes=axes, keep=keep, out4=out4):
                y = x.mean(dim=axes, keepdim=keep)
                return y if (out4 or y.dim() != 4) else y.permute(0, 2, 3, 1)
            return op, mean
        if k == "FULLY_CONNECTED":
            wname = self._const(graph, op.inputs[1])
            bias = self._const(graph, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            out_shape = tuple(shape[op.outputs[0]])

            def fc(x, wname=wname, bias=bias, out_shape=out_shape, act=o.get("activation")):
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1)
                y = F.linear(x.reshape(x.shape[0], -1), getattr(self, wname), getattr(self, bias) if bias else None)
                return _activate(y.reshape((y.shape[0],) + out_shape[1:]), act)
            return op, fc
        if k == "STRIDED_SLICE":
            return op, self._strided_slice(op, graph)
        raise UnsupportedOp(f"{k} in {graph.path.name}")

    def _strided_slice(self, op: Op, graph: Graph):
        o = op.options
        if o.get("EllipsisMask") or o.get("NewAxisMask") or o.get("Offset"):
            raise UnsupportedOp("strided slice with ellipsis/new-axis/offset")
        begin, end, strides = (graph.constants[i].astype(int) for i in op.inputs[1:4])
        in_shape = graph.shapes[op.inputs[0]]
        slices = []
        for axis in range(len(in_shape)):
            b = None if o["BeginMask"] >> axis & 1 else int(begin[axis])
            e = None if o["EndMask"] >> axis & 1 else int(end[axis])
            if axis == 0:
                b, e = None, None                                   # keep the whole (dynamic) batch
            if o["ShrinkAxisMask"] >> axis & 1:
                e = b + 1 if b != -1 else None
            slices.append(slice(b, e, int(strides[axis])))
        shrink = [a for a in range(len(in_shape)) if o["ShrinkAxisMask"] >> a & 1]
        rank4 = len(in_shape) == 4

        def strided_slice(x, slices=tuple(slices), shrink=shrink, rank4=rank4):
            if rank4:
                x = x.permute(0, 2, 3, 1)
            y = x[slices]
            for a in sorted(shrink, reverse=True):
                y = y.squeeze(a)
            return y.permute(0, 3, 1, 2) if y.dim() == 4 else y
        return strided_slice

    # -- running ----------------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, S, S, 3) NHWC float -> outputs in TfliteModel's order, 4-D ones NHWC, batch axis first."""
        env = {self._input: image.permute(0, 3, 1, 2)}
        for op, fn in self._steps:
            args = [env.get(i) for i in op.inputs if i >= 0]
            if op.kind not in ("ADD", "CONCATENATION"):      # the rest read constants from their buffers
                args = args[:1]
            env[op.outputs[0]] = fn(*args)
        outs = [env[i] for i in self._outputs]
        return [x.permute(0, 2, 3, 1) if x.dim() == 4 else x for x in outs]


def _resize_legacy(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF's resize_bilinear with align_corners=False and half_pixel_centers=False: src = dst * in / out."""
    _, _, h, w = x.shape
    ys = torch.arange(size[0], dtype=x.dtype) * (h / size[0])
    xs = torch.arange(size[1], dtype=x.dtype) * (w / size[1])
    y0, x0 = ys.floor().long(), xs.floor().long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    fy, fx = (ys - y0).view(1, 1, -1, 1), (xs - x0).view(1, 1, 1, -1)
    top = x[:, :, y0][..., x0] * (1 - fx) + x[:, :, y0][..., x1] * fx
    bottom = x[:, :, y1][..., x0] * (1 - fx) + x[:, :, y1][..., x1] * fx
    return top * (1 - fy) + bottom * fy
