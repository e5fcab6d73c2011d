"""Segmentation networks trained on pseudo-masks: DeepLab-v2 and DeepLab-v3+ over timm backbones.

Contract shared by every model in :data:`SEG_MODELS` (train-seg, eval-seg and predict rely on it):

- built by ``build_seg_model(name, num_classes=K, pretrained=..., **kwargs)`` where K counts the
  foreground classes; the network predicts K + 1 channels, channel 0 being background;
- ``forward(x: [B, 3, H, W]) -> logits [B, K + 1, h, w]`` with ``h = ceil(H / logit_stride)``
  (``logit_stride`` is the output stride for DeepLab-v2, 4 for DeepLab-v3+'s decoder);
  callers upsample bilinearly to the input size;
- ``param_groups(weight_decay, head_lr_mult)`` -> optimiser groups carrying ``lr_mult``
  (1 for the pretrained backbone, ``head_lr_mult`` for the freshly initialised head);
- ``config() -> dict``: the constructor arguments, stored in the checkpoint's meta so that
  ``predict`` can rebuild the network from the checkpoint alone;
- ``min_input_size``: inputs smaller than this are padded by the inference helpers.

Backbone weights: ``pretrained="hub"`` takes timm's ImageNet weights (ResNet-101:
``resnet101.tv_in1k``, the torchvision ImageNet-1k weights -- WSSS papers train DeepLab-v2 from an
ImageNet-pretrained ResNet-101 rather than the COCO-pretrained DeepLab release, to keep the
setting free of pixel-level labels); ``"none"`` starts from random weights; any other value is
a path to a local state dict of the timm model (as ``torch.save(model.state_dict(), path)``).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

# name -> (module, builder); builders take (num_classes, pretrained, **kwargs).
SEG_MODELS: dict[str, tuple[str, str]] = {
    "deeplabv2_resnet101": ("csdseg.models.deeplab_v2", "deeplabv2_resnet101"),
    "deeplabv2_tiny": ("csdseg.models.deeplab_v2", "deeplabv2_tiny"),
    "deeplabv3plus": ("csdseg.models.deeplab_v3plus", "deeplabv3plus"),
    "deeplabv3plus_tiny": ("csdseg.models.deeplab_v3plus", "deeplabv3plus_tiny"),
}

# The crop each family trains at by default (DeepLab-v2's VOC recipe: 321; DeepLab-v3+: 512).
DEFAULT_CROP: dict[str, int] = {"deeplabv2_resnet101": 321, "deeplabv2_tiny": 321,
                                "deeplabv3plus": 512, "deeplabv3plus_tiny": 512}


def build_seg_model(name: str, num_classes: int, pretrained: str = "none", **kwargs: Any) -> nn.Module:
    if name not in SEG_MODELS:
        raise ValueError(f"seg.model '{name}' is not one of: {', '.join(SEG_MODELS)}")
    module, builder = SEG_MODELS[name]
    return getattr(importlib.import_module(module), builder)(num_classes=num_classes,
                                                             pretrained=pretrained, **kwargs)


def make_backbone(arch: str, pretrained: str, output_stride: int,
                  out_indices: tuple[int, ...]) -> nn.Module:
    """A timm ``features_only`` backbone; strides past ``output_stride`` become dilations."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    if pretrained not in ("hub", "none") and not Path(pretrained).is_file():
        raise ValueError(f"pretrained must be 'hub', 'none' or an existing weights file, "
                         f"got '{pretrained}'")
    net = timm.create_model(arch, pretrained=pretrained == "hub", features_only=True,
                            output_stride=output_stride, out_indices=out_indices)
    if pretrained not in ("hub", "none"):
        state = torch.load(pretrained, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        own = net.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"weights file {pretrained} does not fit backbone {arch}: "
                             f"{len(missing)} tensors missing, e.g. {missing[0]}")
        net.load_state_dict({k: state[k] for k in own})  # drops the classifier (fc.*)
    return net


def init_head(module: nn.Module, std: float = 0.01) -> None:
    """DeepLab's head initialisation: N(0, std) weights, zero biases; BN at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def split_param_groups(backbone: nn.Module, head: nn.Module, weight_decay: float,
                       head_lr_mult: float) -> list[dict[str, Any]]:
    groups = [{"params": [p for p in backbone.parameters() if p.requires_grad], "lr_mult": 1.0,
               "weight_decay": weight_decay},
              {"params": [p for p in head.parameters() if p.requires_grad],
               "lr_mult": head_lr_mult, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]


def freeze_batchnorm(module: nn.Module) -> None:
    """Keep every BN layer in eval mode with frozen affine parameters (DeepLab-v2's recipe:
    a batch of 10 crops is too small for reliable batch statistics)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


# --------------------------------------------------------------------------------------------
# Inference shared by train-seg's validation, eval-seg and predict


@torch.no_grad()
def predict_probs(model: nn.Module, img: np.ndarray, device: torch.device,
                  scales: tuple[float, ...] | list[float] = (1.0,), flip: bool = False) -> np.ndarray:
    """Softmax averaged over scales (and horizontal flips) at full resolution.

    img: uint8 [H, W, 3] RGB. Returns float32 [K + 1, H, W]. Each view is rescaled (bilinear,
    on the normalised tensor), padded on the bottom/right to ``model.min_input_size``, and its
    logits are upsampled back to H x W before the softmax.
    """
    from csdseg.data.transforms import normalize

    h, w = img.shape[:2]
    x = torch.from_numpy(normalize(img))[None].to(device)
    min_size = int(getattr(model, "min_input_size", 1))
    total = None
    views = 0
    for scale in scales:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        xs = x if (sh, sw) == (h, w) else F.interpolate(x, size=(sh, sw), mode="bilinear",
                                                         align_corners=False)
        batch = torch.cat([xs, xs.flip(-1)]) if flip else xs
        ph, pw = max(min_size, sh), max(min_size, sw)
        if (ph, pw) != (sh, sw):  # zero = the mean colour after normalisation
            batch = F.pad(batch, (0, pw - sw, 0, ph - sh))
        logits = model(batch)
        # map the padded canvas back, crop the padding, then resize to the image size
        logits = F.interpolate(logits, size=(ph, pw), mode="bilinear", align_corners=False)
        logits = logits[..., :sh, :sw]
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        probs = logits.float().softmax(1)
        if flip:
            probs = torch.cat([probs[:1], probs[1:].flip(-1)])
        probs = probs.sum(0)
        total = probs if total is None else total + probs
        views += 2 if flip else 1
    return (total / views).cpu().numpy().astype(np.float32)



def load_seg_model(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained segmentation network from its final checkpoint alone (eval mode).

    The checkpoint's meta must carry ``model``, ``num_classes`` (foreground K), ``class_names``
    and ``model_config`` (the constructor arguments), as train-seg writes them.
    """
    from csdseg.engine.checkpoint import load_checkpoint
    from csdseg.errors import StageError

    ckpt = load_checkpoint(Path(path))
    meta = ckpt.get("meta", {})
    missing = [k for k in ("model", "num_classes", "class_names", "model_config") if k not in meta]
    if missing or meta.get("model") not in SEG_MODELS:
        raise StageError(f"checkpoint {path} is not a segmentation checkpoint written by "
                         f"`csdseg train-seg` (meta lacks {missing or ['a known model name']})")
    model = build_seg_model(meta["model"], meta["num_classes"], pretrained="none",
                            **meta["model_config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise StageError(f"checkpoint {path} does not fit {meta['model']} "
                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta
