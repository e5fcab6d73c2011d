"""MCTformer (Xu et al., CVPR 2022): a DeiT with one class token per class, whose class-to-patch
attention gives class-specific localisation maps. V1 scores each class by its output token; V2
adds a 3x3 conv on the patch tokens (a patch CAM) and fuses it with the attention maps.

Facts checked against the official code (xulianuwa/MCTformer, models.py / engine.py / main.py):
- no final LayerNorm: the class scores are the channel mean of the *last block's* class tokens,
  and V2's conv head reads the last block's patch tokens (DeiT's ``norm.*`` goes unused);
- maps: per layer the attention is averaged over heads, then *summed* over the last 3 layers
  (``--layer-index 3`` at map generation); V2 multiplies by the ReLU'd patch CAM;
- refinement (``--patch-attn-refine``): patch-to-patch attention, head-averaged and summed over
  *all* layers, left-multiplies the flattened maps.
See docs/mctformer.md for the training recipe and the deviations offered as options.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from csdseg.models.optim_groups import param_group
from csdseg.models.pretrained import create_timm_model
from csdseg.models.vit_blocks import (WeightBlock, PatchEmbed, init_vit_weights,
                                      interpolate_pos_embed, load_state_file, resize_pos_grid)

HUB_NAME = "deit_small_patch16_224.fb_in1k"


class MCTformer(nn.Module):
    """Multi-class-token DeiT. ``version`` 1 or 2; ``img_size`` fixes the native position grid."""

    # floor(H/p) patches, the remainder pixels dropped: maps are resized straight to (H, W),
    # as the official generate_attention_maps_ms does (csdseg.ops.cam)
    upsample = "resize"

    def __init__(self, num_classes: int, version: int = 2, img_size: int = 224,
                 patch_size: int = 16, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 attn_layers: int = 3, patch_attn_refine: bool = True,
                 fused_attn: bool = True) -> None:
        super().__init__()
        if version not in (1, 2):
            raise ValueError(f"MCTformer version must be 1 or 2, got {version}")
        if not 1 <= attn_layers <= depth:
            raise ValueError(f"attn_layers must be in 1..{depth} (the depth), got {attn_layers}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.num_classes, self.version, self.depth = num_classes, version, depth
        self.feature_stride = patch_size
        self.native_grid = (img_size // patch_size, img_size // patch_size)
        self.attn_layers = attn_layers  # last layers whose class-to-patch attention makes the maps
        self.patch_attn_refine = patch_attn_refine  # cam() refines with patch-to-patch attention

        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        n_patches = self.native_grid[0] * self.native_grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, num_classes, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_classes + n_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth decay rule
        self.blocks = nn.ModuleList(
            WeightBlock(embed_dim, num_heads, mlp_ratio, drop_path=rates[i], proj_drop=drop_rate,
                        fused=fused_attn) for i in range(depth))
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_vit_weights)
        # V2's patch-CAM head; built after apply() so it keeps the PyTorch conv init, as official.
        self.head = nn.Conv2d(embed_dim, num_classes, 3, padding=1) if version == 2 else None

    # ---------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, weight_layers: set[int]
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor], tuple[int, int]]:
        """x: [B, 3, H, W] -> (tokens [B, K + h*w, D], {layer: head-mean attention [B, T, T]},
        grid (h, w)), with T = K + h*w and h, w = H // p, W // p."""
        K = self.num_classes
        tokens, grid = self.patch_embed(x)
        pos = torch.cat([self.pos_embed[:, :K],
                         interpolate_pos_embed(self.pos_embed[:, K:], self.native_grid, grid)], 1)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + pos
        tokens = self.pos_drop(tokens)
        attns: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            tokens, weights = block(tokens, need_weights=i in weight_layers)
            if weights is not None:
                attns[i] = weights.mean(1)
        return tokens, attns, grid  # no final LayerNorm, as official

    def _outputs(self, x: torch.Tensor, maps: bool, refine: bool) -> dict[str, torch.Tensor]:
        K = self.num_classes
        last = set(range(self.depth - self.attn_layers, self.depth)) if maps else set()
        every = set(range(self.depth)) if refine else set()
        tokens, attns, (h, w) = self._encode(x, last | every)
        out = {"logits": tokens[:, :K].mean(-1)}
        patch_cam = None
        if self.head is not None:
            grid = tokens[:, K:].transpose(1, 2).reshape(x.shape[0], -1, h, w)
            patch_cam = self.head(grid)  # [B, K, h, w]
            out["patch_logits"] = patch_cam.mean((2, 3))
        if maps:
            cam = sum(attns[i][:, :K, K:] for i in sorted(last)).reshape(-1, K, h, w)
            if patch_cam is not None:
                # Official detaches the patch CAM here (maps were only made at inference); kept
                # differentiable so CSD's losses on the maps also reach the conv head.
                cam = cam * F.relu(patch_cam)
            if refine:
                patch_attn = sum(a[:, K:, K:] for a in attns.values())  # [B, hw, hw]
                cam = (patch_attn.unsqueeze(1) @ cam.flatten(2).unsqueeze(-1)).reshape(-1, K, h, w)
            out["maps"] = cam
        return out

    def forward(self, x: torch.Tensor, maps: bool = True) -> dict[str, torch.Tensor]:
        """x: [B, 3, H, W] -> {"logits": [B, K], "maps": [B, K, h, w] (unless ``maps`` is
        false: CSD needs them, plain classification does not), V2: "patch_logits": [B, K]}.
        The maps are the unrefined class-to-patch attention (V2: fused with the patch CAM),
        differentiable, >= 0."""
        return self._outputs(x, maps, refine=False)

    def attention_maps(self, x: torch.Tensor, refine: bool) -> torch.Tensor:
        """x: [B, 3, H, W] -> class-to-patch attention maps [B, K, H // p, W // p], >= 0
        (V2: times the ReLU'd patch CAM; ``refine``: then smoothed by patch-to-patch attention)."""
        return self._outputs(x, maps=True, refine=refine)["maps"]

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """The maps make-cam sums over scales: x [B, 3, H, W] -> [B, K, H // p, W // p], >= 0."""
        return self.attention_maps(x, refine=self.patch_attn_refine)

    def classification_loss(self, out: dict[str, torch.Tensor], labels: torch.Tensor
                            ) -> torch.Tensor:
        """Multilabel soft margin on the class-token scores (V2: plus the same on the patch
        scores); labels [B, K] in {0, 1}."""
        loss = F.multilabel_soft_margin_loss(out["logits"].float(), labels)
        if "patch_logits" in out:
            loss = loss + F.multilabel_soft_margin_loss(out["patch_logits"].float(), labels)
        return loss

    def param_groups(self, lr: float, weight_decay: float, head_mult: float) -> list[dict[str, Any]]:
        """AdamW groups as timm's ``create_optimizer`` makes them for DeiT: weight decay on
        matrices and kernels; none on biases, norms (1-D), ``pos_embed`` and ``cls_token``.
        Everything learns at ``lr``: the official recipe has no head multiplier, so
        ``head_mult`` (the shared signature's) is not used."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            skip = p.ndim <= 1 or name.endswith(".bias") or name in ("pos_embed", "cls_token")
            (no_decay if skip else decay).append(p)
        return [param_group(decay, lr, weight_decay), param_group(no_decay, lr, 0.0)]

    # ---------------------------------------------------------------------------------------
    def load_deit(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a DeiT (single CLS token) or MCTformer state dict: the CLS token and its position
        embedding are copied into all K class slots, patch positions resampled to the native grid
        if needed, classifier heads and DeiT's final ``norm.*`` (unused: see above) dropped."""
        K = self.num_classes
        own = self.state_dict()
        drop = ("head_dist.", "dist_token", "fc_norm.", "norm.")
        # A classifier head is kept only where it fits (an MCTformer-V2 checkpoint), as official.
        state = {k: v for k, v in state.items() if not k.startswith(drop) and not (
            k.startswith("head.") and (k not in own or own[k].shape != v.shape))}
        if "cls_token" not in state or "pos_embed" not in state:
            raise ValueError(f"model.pretrained={source}: no cls_token/pos_embed, "
                              "not a DeiT checkpoint")
        n_extra = state["cls_token"].shape[1]
        if n_extra not in (1, K):
            raise ValueError(f"model.pretrained={source}: {n_extra} class tokens, "
                              f"the model has {K}")
        extra, patch_pos = state["pos_embed"][:, :n_extra], state["pos_embed"][:, n_extra:]
        state["cls_token"] = state["cls_token"].expand(1, K, -1).clone()
        state["pos_embed"] = torch.cat([extra.expand(1, K, -1),
                                        resize_pos_grid(patch_pos, self.native_grid[0])], 1)
        for key in own:  # the V2 conv head is new: it keeps its initialisation
            if key.startswith("head.") and key not in state:
                state[key] = own[key]
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            detail = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
            raise ValueError(f"model.pretrained={source}: shapes do not fit this model "
                              f"({(detail or [str(exc)])[0]})") from None
        if missing or unexpected:
            raise ValueError(f"model.pretrained={source}: missing keys {missing[:4]}, unexpected "
                              f"keys {unexpected[:4]}; is it a DeiT of this size?")


def _build(num_classes: int, pretrained: str, version: int, tiny: bool, **kwargs: Any) -> MCTformer:
    if tiny:
        # 8-px patches: 16x16 maps at the 128 px the synthetic demo uses (16-px patches: 8x8).
        arch = dict(img_size=128, patch_size=8, embed_dim=192, depth=4, num_heads=3)
    else:
        arch = dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6)
    model = MCTformer(num_classes, version=version, **{**arch, **kwargs})
    if pretrained == "none":
        return model
    if pretrained == "hub":
        if tiny:
            raise ValueError("model.pretrained=hub: the tiny MCTformer has no published weights; "
                              "use model.pretrained=none or a path to matching weights")
        # timm's hub route, failing in seconds when offline (csdseg.models.pretrained).
        model.load_deit(create_timm_model(HUB_NAME, "hub").state_dict(), "hub")
    else:
        model.load_deit(load_state_file(pretrained), pretrained)
    return model


def mctformer_v1(num_classes: int, pretrained: str = "hub", **kwargs: Any) -> MCTformer:
    return _build(num_classes, pretrained, version=1, tiny=False, **kwargs)


def mctformer_v2(num_classes: int, pretrained: str = "hub", **kwargs: Any) -> MCTformer:
    return _build(num_classes, pretrained, version=2, tiny=False, **kwargs)


def mctformer_v1_tiny(num_classes: int, pretrained: str = "none", **kwargs: Any) -> MCTformer:
    return _build(num_classes, pretrained, version=1, tiny=True, **kwargs)


def mctformer_v2_tiny(num_classes: int, pretrained: str = "none", **kwargs: Any) -> MCTformer:
    return _build(num_classes, pretrained, version=2, tiny=True, **kwargs)
