"""Vision-transformer pieces for MCTformer: timm blocks whose attention can hand back its weights.

timm's :class:`~timm.models.vision_transformer.Block` keeps DeiT's parameter names (so DeiT
checkpoints load as they are) but its fused attention never materialises the attention matrix,
which MCTformer's maps are made of. :class:`WeightAttention` computes the matrix explicitly
only for the layers that are asked for it and keeps ``scaled_dot_product_attention`` for the
rest.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention, Block


class WeightAttention(Attention):
    """timm's multi-head self-attention, able to return its softmax weights.

    ``fused`` selects ``F.scaled_dot_product_attention`` whenever the weights are not needed;
    the explicit path is the textbook ``softmax(q k^T / sqrt(d)) v`` (what MCTformer uses).
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise NotImplementedError("WeightAttention takes no attention mask")
        return self.forward_with_weights(x, need_weights=False)[0]

    def forward_with_weights(self, x: torch.Tensor, need_weights: bool
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, T, C] -> (out [B, T, C], weights [B, heads, T, T] or None).

        The weights are taken before attention dropout, so each row sums to 1 over the keys.
        """
        B, T, _ = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        weights = None
        if self.fused_attn and not need_weights:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = self.attn_drop(weights) @ v
        out = out.transpose(1, 2).reshape(B, T, self.attn_dim)
        out = self.proj_drop(self.proj(self.norm(out)))
        return out, weights


class WeightBlock(Block):
    """A pre-norm transformer block (timm's, same parameter names) returning attention weights."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, fused: bool = True) -> None:
        # DeiT: qkv bias, LayerNorm eps 1e-6, GELU MLP, no layer scale.
        super().__init__(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=proj_drop,
                         attn_drop=attn_drop, drop_path=drop_path,
                         norm_layer=lambda d, **kw: nn.LayerNorm(d, eps=1e-6, **kw),
                         attn_layer=WeightAttention)
        self.attn.fused_attn = fused

    def forward(self, x: torch.Tensor, need_weights: bool = False  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, T, C] -> (x [B, T, C], attention weights [B, heads, T, T] or None)."""
        out, weights = self.attn.forward_with_weights(self.norm1(x), need_weights)
        x = x + self.drop_path1(self.ls1(out))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x, weights


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens. Like DeiT's, any input size is accepted and the
    right/bottom remainder that does not fill a whole patch is dropped (timm would refuse it)."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, 3, H, W] -> (tokens [B, h*w, D] in row-major order, grid (h, w))."""
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


def interpolate_pos_embed(pos: torch.Tensor, native: tuple[int, int], grid: tuple[int, int]
                          ) -> torch.Tensor:
    """Patch position embeddings [1, n_h*n_w, D] at the ``native`` grid -> [1, h*w, D] at ``grid``.

    Returned unchanged at the native grid. Elsewhere bicubic, with MCTformer's sampling
    positions: it asks ``interpolate`` for a scale factor of (h + 0.1) / n_h (the +0.1 avoids
    a floor() landing one cell short), which also sets where the input is sampled.
    """
    if tuple(grid) == tuple(native):
        return pos
    dim = pos.shape[-1]
    grid_in = pos.reshape(1, native[0], native[1], dim).permute(0, 3, 1, 2)
    out = F.interpolate(grid_in, scale_factor=((grid[0] + 0.1) / native[0],
                                               (grid[1] + 0.1) / native[1]), mode="bicubic")
    assert out.shape[-2:] == tuple(grid), (out.shape, grid)
    return out.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim)


def resize_pos_grid(patch_pos: torch.Tensor, size: int) -> torch.Tensor:
    """A checkpoint's square patch position grid [1, n*n, D] -> [1, size*size, D], resampled
    as DeiT fine-tuning does (bicubic to an exact size, align_corners=False)."""
    n = math.isqrt(patch_pos.shape[1])
    if n * n != patch_pos.shape[1]:
        raise ValueError(f"pos_embed has {patch_pos.shape[1]} patch positions, not a square grid")
    if n == size:
        return patch_pos
    dim = patch_pos.shape[-1]
    grid = patch_pos.reshape(1, n, n, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, size * size, dim)


def init_vit_weights(module: nn.Module) -> None:
    """DeiT/MCTformer initialisation: truncated-normal(0.02) linears with zero bias, unit
    LayerNorms. Convolutions (patch embedding, the V2 head) keep PyTorch's default, as official."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``.pth``/``.pt``/``.bin``); the
    ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers of DeiT/MCTformer checkpoints are
    opened."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model.pretrained={path}: no such file; give hub, none or the path "
                          "to a DeiT checkpoint (.pth or .safetensors)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ValueError(f"model.pretrained={path}: cannot read weights ({exc})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model.pretrained={path}: not a state dict of tensors")
    return state
