"""Ops known to act on each position alone: activations, norms, dropout, arithmetic, padding."""

from __future__ import annotations

from torch import nn

from ._base import elementwise, register_function_rule, register_module_rule

_ELEMENTWISE_MODULES: tuple[type, ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.LogSigmoid, nn.GLU, nn.Softmax2d,
    nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.ChannelShuffle,
)  # fmt: skip


if hasattr(nn, "RMSNorm"):
    _ELEMENTWISE_MODULES += (nn.RMSNorm,)


register_module_rule(*_ELEMENTWISE_MODULES)(elementwise)


#: modules whose output has their input's shape (shape propagation can skip computing them)
SHAPE_PRESERVING_MODULES = tuple(
    m
    for m in _ELEMENTWISE_MODULES
    if m is not nn.GLU and not m.__name__.endswith(("Pad1d", "Pad2d", "Pad3d"))
)


register_function_rule(
    "add", "iadd", "add_", "sub", "isub", "rsub", "mul", "imul", "mul_", "truediv", "div", "itruediv", "div_",
    "floordiv", "mod", "pow", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "reciprocal", "square", "sign", "erf",
    "sin", "cos", "maximum", "minimum", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "where",
    "masked_fill", "lerp", "addcmul",
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardtanh",
    "hardtanh_", "leaky_relu", "elu", "selu", "celu", "softplus", "mish", "sigmoid", "sigmoid_", "tanh", "glu",
    "logsigmoid", "prelu",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "stochastic_depth", "layer_norm", "batch_norm", "group_norm", "instance_norm", "local_response_norm",
    "rms_norm", "normalize",
    "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "to", "type", "type_as", "pad",
    "roll", "channel_shuffle", "native_channel_shuffle", "_patch_merging_pad",
)(elementwise)  # fmt: skip
