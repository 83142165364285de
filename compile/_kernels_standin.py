"""TEMPORARY stand-in for ``compile/kernels/relax_ops.py`` (FP Relax ops with the same API); delete when it lands."""
from __future__ import annotations

import numpy as np
from tvm import relax


def _sign(bb, x, threshold=None):
    if threshold is not None:
        x = bb.emit(relax.op.subtract(x, relax.const(np.asarray(threshold, "float32"))))
    return bb.emit(relax.op.where(relax.op.greater_equal(x, relax.const(0.0, "float32")),
                                  relax.const(1.0, "float32"), relax.const(-1.0, "float32")))


def _epilogue(bb, y, scale, bias, shape):
    y = bb.emit(relax.op.multiply(y, relax.const(np.asarray(scale, "float32").reshape(shape))))
    if bias is not None:
        y = bb.emit(relax.op.add(y, relax.const(np.asarray(bias, "float32").reshape(shape))))
    return y


def emit_binary_dense(bb, x, *, weight_signs, threshold, scale, bias, target):
    y = bb.emit(relax.op.matmul(_sign(bb, x, threshold), relax.const(np.ascontiguousarray(weight_signs.T, "float32"))))
    return _epilogue(bb, y, scale, bias, (-1,))


def emit_binary_conv2d(bb, x, *, weight_signs, threshold, scale, bias, stride, padding, dilation, groups,
                       layout="NCHW", target):
    thr = None if threshold is None else np.asarray(threshold).reshape(-1, 1, 1)
    y = bb.emit(relax.op.nn.conv2d(_sign(bb, x, thr), relax.const(np.asarray(weight_signs, "float32")),
                                   strides=stride, padding=padding, dilation=dilation, groups=groups))
    return _epilogue(bb, y, scale, bias, (-1, 1, 1))


def emit_binary_qk(bb, q, k, *, target):
    return bb.emit(relax.op.matmul(_sign(bb, q), relax.op.permute_dims(_sign(bb, k), [0, 1, 3, 2])))


def emit_binary_av(bb, levels, v, *, target):
    return bb.emit(relax.op.matmul(levels, _sign(bb, v)))
