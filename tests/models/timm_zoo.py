"""The timm families the sweeps cover: the smallest variant of each (by parameters, among timm's
classifiers), written out so that a change in timm's registry does not change the sweep silently."""

from __future__ import annotations

import contextlib
import copy
import re

import torch
import torch.nn.functional as F
from torch import nn

import rewriter
from rewriter.models import load_model

FAMILIES = {  # timm's module: its smallest variant
    "resnet": "resnet18", "resnet (blur pool)": "resnetblur18", "resnetv2": "resnetv2_18",
    "senet": "legacy_seresnet18", "sknet": "skresnet18", "resnest": "resnest14d", "res2net": "res2net50_14w_8s",
    "regnet": "regnetx_002", "densenet": "densenet121", "dla": "dla46_c", "dpn": "dpn48b",
    "cspnet": "cs3darknet_focus_s", "efficientnet": "tinynet_e", "mobilenetv3": "mobilenetv3_small_050",
    "ghostnet": "ghostnet_050", "hardcorenas": "hardcorenas_a", "hgnet": "hgnetv2_b0", "rexnet": "rexnet_100",
    "selecsls": "selecsls42", "tresnet": "tresnet_m", "vgg": "vgg11", "vovnet": "ese_vovnet19b_slim_dw",
    "xception_aligned": "xception41", "xception": "legacy_xception", "inception_v3": "inception_v3",
    "inception_v4": "inception_v4", "convnext": "convnext_atto", "convmixer": "convmixer_1024_20_ks9_p14",
    "byobnet (RepVGG)": "repvgg_a0", "byobnet (MobileOne)": "mobileone_s0", "fasternet": "fasternet_t0",
    "repghost": "repghostnet_050", "repvit": "repvit_m0_9", "starnet": "starnet_s050", "cspnext": "cspnext_tiny",
    "lcnetv2": "lcnetv2_small", "hrnet": "hrnet_w18_small", "nfnet": "nf_regnet_b0",
    "inception_next": "inception_next_atto", "rdnet": "rdnet_tiny", "mambaout": "mambaout_femto",
    "fastvit": "fastvit_t8", "mobilevit": "mobilevit_xxs", "edgenext": "edgenext_xx_small",
    "efficientformer": "efficientformer_l1", "efficientformer_v2": "efficientformerv2_s0", "levit": "levit_128s",
    "volo": "volo_d1_224", "tiny_vit": "tiny_vit_5m_224", "efficientvit_mit": "efficientvit_b0",
    "efficientvit_msra": "efficientvit_m0", "mvitv2": "mvitv2_tiny", "swin_transformer": "swin_tiny_patch4_window7_224",
    "swin_transformer_v2": "swinv2_tiny_window8_256", "swin_transformer_v2_cr": "swinv2_cr_tiny_224",
    "vision_transformer": "vit_tiny_patch16_224", "deit": "deit_tiny_patch16_224", "cait": "cait_xxs24_224",
    "coat": "coat_lite_tiny", "convit": "convit_tiny", "crossvit": "crossvit_tiny_240", "davit": "davit_tiny",
    "focalnet": "focalnet_tiny_srf", "gcvit": "gcvit_xxtiny", "hiera": "hiera_tiny_224",
    "maxxvit": "coatnet_nano_rw_224", "metaformer": "poolformer_s12", "mlp_mixer": "mixer_s16_224",
    "nest": "nest_tiny", "pit": "pit_ti_224", "pvt_v2": "pvt_v2_b0", "twins": "twins_svt_small",
    "visformer": "visformer_tiny", "xcit": "xcit_nano_12_p16_224", "eva": "eva02_tiny_patch14_224",
    "vitamin": "vitamin_small_224", "shvit": "shvit_s1", "swiftformer": "swiftformer_xs",
    "efficientvim": "efficientvim_m1", "nextvit": "nextvit_small", "tnt": "tnt_s_patch16_224",
    "vision_transformer_hybrid": "vit_small_r26_s32_224", "vision_transformer_relpos": "vit_relpos_small_patch16_224",
    "lowformer": "lowformer_b0", "iformer": "iformer_t", "csatv2": "csatv2", "cpubone": "cpubone_nano",
    "byoanet": "botnet26t_256",
}  # fmt: skip

#: the pure CNNs of the list: convolutions, pooling, element-wise ops, additions and concatenations up to the
#: last conv (no attention, no gate from a global op, no normalisation over positions), whose receptive
#: field the gradient oracle measures
PURE_CNNS = (
    "resnet18", "resnetblur18", "resnetv2_18", "regnetx_002", "dla46_c", "dpn48b", "cs3darknet_focus_s",
    "hgnetv2_b0", "selecsls42", "vgg11", "xception41", "legacy_xception", "repvgg_a0", "mobileone_s0",
    "fasternet_t0", "starnet_s050", "hrnet_w18_small", "inception_next_atto", "mambaout_femto", "fastvit_t8",
    "densenet121", "res2net50_14w_8s", "inception_v3", "inception_v4", "convmixer_1024_20_ks9_p14",
)  # fmt: skip


def build(name: str, size: int, *, meta: bool = True) -> nn.Module:
    """``timm:name`` with 10 classes, built for ``size`` where it has a fixed size; on the meta device
    (no weights: the analysis reads shapes only) unless ``meta`` is False."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        model, _ = load_model(f"timm:{name}", num_classes=10, input_size=(size, size))
    return model


_NAMED = re.compile(r"'[^']+'|\(\w+\)")  # a quoted layer, module or op name, or a (ClassName)


def check_refusal(err: rewriter.RewriterError) -> str:
    """A refusal is one line that names the op or module (returned for the coverage table)."""
    message = str(err)
    assert "\n" not in message, message
    assert _NAMED.search(message), f"the refusal names no op or module: {message}"
    return message


def final_conv(analysis: rewriter.Analysis) -> rewriter.Layer:
    """The last convolution of the feature extractor: before the global pooling, on the feature path."""
    convs = [
        layer
        for layer in analysis.layers
        if layer.category == "conv" and all(r != float("inf") for r in layer.r_out_max)
    ]
    return convs[-1]


class _Stop(Exception):
    pass


def _positive_copy(model: nn.Module) -> nn.Module:
    """A double copy with positive constant weights (1 / fan-in), zero biases, batch norms at identity,
    norms over channels or positions removed (they subtract means: with equal channels, zero) and average
    pools for max pools: every path then carries a positive contribution (test_gradient_oracle's method)."""
    model = copy.deepcopy(model).double().eval()
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode)
                setattr(parent, child_name, pool)
            elif isinstance(child, (nn.GroupNorm, nn.LayerNorm)):
                setattr(parent, child_name, nn.Identity())
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
            elif isinstance(module, nn.Linear):
                module.weight.fill_(1.0 / module.in_features)
            elif isinstance(module, nn.modules.batchnorm._NormBase) and module.running_var is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                if module.weight is not None:
                    module.weight.fill_(1.0)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    return model.requires_grad_(False)


def _rescaled(_module: nn.Module, _inputs: object, output: object) -> object:
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        scale = output.detach().abs().amax()
        if scale > 0:
            return output / scale
    return output


def _run_strip(model: nn.Module, shape: tuple[int, int], axis: int) -> torch.Tensor:
    """Run ``model`` on a strip of ones up to the hook; a strip too narrow for the model (Inception's
    unpadded convs) is widened until it runs. Returns the input (its gradient is filled by the caller)."""
    while True:
        x = torch.ones(1, 3, *shape, dtype=torch.float64, requires_grad=True)
        try:
            with contextlib.suppress(_Stop):
                model(x)
            return x
        except RuntimeError:
            if shape[1 - axis] >= 512:
                raise
            shape = (shape[0] * 2, shape[1]) if axis == 1 else (shape[0], shape[1] * 2)


def _max_as_average(
    x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=True)


def gradient_extent(model: nn.Module, layer: str, length: int, width: int = 64) -> tuple[int, int]:
    """r_max of ``layer`` by the second method: the extent of the input pixels whose gradient of the centre
    unit is nonzero, on a tall then a wide strip (``length`` x ``width``: the extent along the long side
    needs no square input, which keeps the oracle cheap for fields of 2000 pixels)."""
    model = _positive_copy(model)
    length = -(-length // 64) * 64  # a multiple of the networks' strides: every branch keeps its size
    captured = {}

    def hook(_module, _inputs, output):
        captured["out"] = output
        raise _Stop

    for module in model.modules():  # keep magnitudes near 1: products of branches (a gated MLP) would
        if next(module.children(), None) is None:  # otherwise overflow, and a positive scale moves no support
            module.register_forward_hook(_rescaled)
    model.get_submodule(layer).register_forward_hook(hook)
    extents = []
    functional = F.max_pool2d
    F.max_pool2d = _max_as_average  # functional max pools (Inception's) too
    try:
        for shape, axis in (((length, width), 0), ((width, length), 1)):
            x = _run_strip(model, shape, axis)
            out = captured["out"]
            h, w = out.shape[-2:]
            out[0, :, h // 2, w // 2].sum().backward()
            grad = x.grad[0].abs().sum(0)
            hits = torch.nonzero(grad.sum(1 - axis)).flatten()
            assert hits.min() > 0 and hits.max() < length - 1, "the window reached the border: a longer strip"
            extents.append(int(hits.max() - hits.min() + 1))
    finally:
        F.max_pool2d = functional
    return extents[0], extents[1]
