"""Ops known to act on each position alone: activations, norms, dropout, arithmetic.

Almost all of them also keep each channel where it is (``channels="keep"``, what ``scale-width``'s channel
analysis reads); a channel shuffle and a GLU do not, and are declared without.
"""

from __future__ import annotations

from torch import nn

from ._base import elementwise, register_function_rule, register_module_rule

_KEEPING_MODULES: tuple[type, ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.LogSigmoid, nn.Softmax2d,
)  # fmt: skip

if hasattr(nn, "RMSNorm"):
    _KEEPING_MODULES += (nn.RMSNorm,)

register_module_rule(*_KEEPING_MODULES, channels="keep")(elementwise)
register_module_rule(nn.GLU, nn.ChannelShuffle)(elementwise)  # they halve or permute the channels


#: modules whose output has their input's shape (shape propagation can skip computing them)
SHAPE_PRESERVING_MODULES = (*_KEEPING_MODULES, nn.ChannelShuffle)


register_function_rule(
    "add", "iadd", "add_", "sub", "isub", "rsub", "mul", "imul", "mul_", "truediv", "div", "itruediv", "div_",
    "floordiv", "mod", "pow", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "reciprocal", "square", "sign", "erf",
    "sin", "cos", "maximum", "minimum", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "where",
    "masked_fill", "lerp", "addcmul",
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardtanh",
    "hardtanh_", "leaky_relu", "elu", "selu", "celu", "softplus", "mish", "sigmoid", "sigmoid_", "tanh",
    "logsigmoid", "prelu",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "stochastic_depth", "drop_path", "layer_norm", "batch_norm", "group_norm", "instance_norm",
    "local_response_norm", "rms_norm", "normalize",
    "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "to", "type", "type_as",
    channels="keep",
)(elementwise)  # fmt: skip

register_function_rule("glu", "channel_shuffle", "native_channel_shuffle", "roll")(elementwise)
