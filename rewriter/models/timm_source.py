"""timm as a model source: ``timm:NAME`` builds ``timm.create_model(NAME, ...)`` (timm is optional:
``pip install 'rewriter[timm]'``).

Weights are random unless the user passes ``--model-arg pretrained=true``; then they come from the user's
own cache (Hugging Face hub or torch hub), never from the network: a model whose weights are not cached
is refused with the command that fetches them. A model built for a fixed input size (ViT, Swin, CoAtNet,
EfficientFormer: timm's ``fixed_input_size``) is built for the target size (``img_size=``) where it differs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import nn

from .._errors import ModelNotFoundError, WeightsError, close_matches

PREFIX = "timm:"


def has_timm() -> bool:
    return importlib.util.find_spec("timm") is not None


def _timm() -> Any:
    if not has_timm():
        raise ModelNotFoundError(
            "timm models need timm, which is not installed: pip install 'rewriter[timm]' (or pip install timm)"
        )
    import timm

    return timm


def timm_models(pattern: str = "*") -> list[str]:
    """timm's model names matching the shell-style ``pattern`` (``timm.list_models``)."""
    return sorted(_timm().list_models(pattern))


def is_timm_source(source: str) -> bool:
    """Whether ``source`` names a model timm builds (``timm:resnet18``, timm installed)."""
    return source.startswith(PREFIX) and has_timm() and _timm().is_model(source[len(PREFIX) :])


def build_timm_model(
    source: str, num_classes: int | None, args: Mapping[str, Any], input_size: tuple[int, int] | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of ``timm:NAME`` and the arguments it was built with (to record in its spec).

    Raises:
        ModelNotFoundError: timm is missing, the name is unknown (close matches listed), or timm refuses the
            arguments.
        WeightsError: ``pretrained=true`` and the weights are not in the user's cache.
    """
    timm = _timm()
    name = source[len(PREFIX) :]
    if not timm.is_model(name):
        hint = close_matches(name, timm.list_models()) or "."
        raise ModelNotFoundError(f"unknown timm model '{name}'{hint} timm.list_models() lists them")
    recorded = dict(args)
    extra = _fixed_size_argument(timm, name, recorded, input_size)
    try:
        try:
            model = _create(timm, name, {**recorded, **extra}, num_classes)
        except TypeError:
            if not extra:
                raise
            # the builder may take no img_size after all: build it as it is (a TypeError of another cause
            # comes back from this call too, and is reported)
            extra = {}
            model = _create(timm, name, recorded, num_classes)
    except (WeightsError, ModelNotFoundError):
        raise
    except Exception as err:
        raise ModelNotFoundError(f"timm cannot build '{name}' with {recorded}: {err}") from err
    return model, {**recorded, **extra}


def _create(timm: Any, name: str, args: Mapping[str, Any], num_classes: int | None) -> nn.Module:
    kwargs = {k: v for k, v in args.items() if k != "pretrained"}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    pretrained = bool(args.get("pretrained", False))
    if pretrained:  # from the cache only: timm reads the file with weights_only=True (or safetensors)
        kwargs["pretrained_cfg_overlay"] = {"file": str(cached_weights(timm, name)), "source": ""}
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _fixed_size_argument(
    timm: Any, name: str, args: Mapping[str, Any], input_size: tuple[int, int] | None
) -> dict[str, Any]:
    """``{"img_size": [h, w]}`` where the model is built for one input size and the target differs."""
    if "img_size" in args or input_size is None:
        return {}
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not getattr(cfg, "fixed_input_size", False):
        return {}
    native = tuple(cfg.input_size[-2:]) if cfg.input_size else None
    return {} if native == tuple(input_size) else {"img_size": list(input_size)}


def cached_weights(timm: Any, name: str) -> Path:
    """The file of ``name``'s pretrained weights in the user's cache; nothing is downloaded.

    Raises:
        WeightsError: no such file is cached (with the command that fetches it).
    """
    from timm.models._builder import _resolve_pretrained_source

    cfg = timm.models.get_pretrained_cfg(name)
    source, location = _resolve_pretrained_source(cfg.to_dict()) if cfg is not None else ("", "")
    found: Path | None = None
    if source == "hf-hub":
        found = _cached_hub_file(*(location if isinstance(location, (list, tuple)) else (location,)))
    elif source == "url":
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(location).path)
        found = path if path.is_file() else None
    elif source == "file" and Path(location).is_file():
        found = Path(location)
    if found is None:
        raise WeightsError(
            f"the pretrained weights of timm model '{name}' are not in your cache, and rewriter downloads "
            f"nothing: fetch them once with python -c \"import timm; timm.create_model('{name}', "
            'pretrained=True)", or give a state dict as `weights`',
            param="weights",
        )
    return found


def _cached_hub_file(repo: str, filename: str | None = None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo_id, _, revision = repo.partition("@")
    for candidate in (
        [filename] if filename else ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    ):
        path = try_to_load_from_cache(repo_id, candidate, revision=revision or None)
        if isinstance(path, str) and Path(path).is_file():
            return Path(path)
    return None
