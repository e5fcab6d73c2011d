"""Seeded weights and inputs shared by the golden recording and tests/test_golden_*.py.

``seeded_state(model, seed)`` fills every floating tensor of a csdseg model's state dict from
one ``torch.Generator``, key by key in sorted order, so the same (names, shapes, seed) give
the same weights on any machine. The scales keep a random ResNet-50 / DeiT-S numerically
tame (no overflow, attention neither uniform nor one-hot): see README.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED_CAM, SEED_IRN, SEED_MCT = 1, 2, 3
SEED_PSA, SEED_PSA_FC8 = 5, 6  # AffinityNet (and the classifier's backbone), its fc8
NUM_CLASSES = 20
VAR_FLOOR = 0.05


def seeded_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` (same keys, shapes and dtypes), drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name in sorted(own):
        t = own[name]
        if not t.is_floating_point():
            out[name] = t.clone()
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            v = 0.5 + torch.rand(t.shape, generator=g)
        elif leaf == "running_mean":
            v = 0.1 * torch.randn(t.shape, generator=g)
        elif t.dim() >= 2 and leaf not in ("cls_token", "pos_embed"):
            fan_in = math.prod(t.shape[1:])  # conv [out, in, k, k] / linear [out, in]
            v = torch.randn(t.shape, generator=g) / math.sqrt(fan_in)
        elif leaf in ("cls_token", "pos_embed"):
            v = 0.02 * torch.randn(t.shape, generator=g)
        elif name.endswith("bn3.weight"):  # a ResNet bottleneck's last norm: a weak residual
            v = 0.1 + 0.2 * torch.rand(t.shape, generator=g)  # branch, else rounding errors
        elif leaf == "weight":  # norm scales                     # grow ~4x per stage
            v = 0.5 + 0.5 * torch.rand(t.shape, generator=g)
        else:  # biases
            v = 0.1 * torch.randn(t.shape, generator=g)
        out[name] = v.to(t.dtype)
    return out


def seeded_images(seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((83, 97), (64, 96), (100, 75))
                  ) -> list[np.ndarray]:
    """Smooth random uint8 RGB images [H, W, 3]: bilinear-upsampled 6x6 colour fields + noise."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for h, w in sizes:
        field = torch.rand(1, 3, 6, 6, generator=g)
        up = F.interpolate(field, (h, w), mode="bilinear", align_corners=False)[0]
        img = (up * 230 + 25 * torch.rand(3, h, w, generator=g)).clamp(0, 255)
        images.append(img.permute(1, 2, 0).round().to(torch.uint8).numpy())
    return images


@torch.no_grad()
def calibrated_bn_stats(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batch-norm running statistics measured on ``x`` [B, 3, H, W] (one forward pass with
    every batch norm in training mode, cumulative averaging; variances floored at VAR_FLOOR), as a trained network's would be:
    without them a random ResNet's maps are nearly constant over the image. Leaves ``model``
    with those statistics and its batch norms back in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    model(x)
    for m in norms:
        m.eval()
        # a floor on the variance: a channel that is nearly constant on x (say, mostly cut by
        # a ReLU) would otherwise divide float32 rounding errors by ~sqrt(1e-5)
        m.running_var.clamp_(min=VAR_FLOOR)
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var"))}


GOLDEN = __import__("pathlib").Path(__file__).resolve().parent


def golden(name: str) -> dict[str, np.ndarray]:
    """The recorded official outputs ``tests/golden/<name>.npz`` as a dict of arrays."""
    with np.load(GOLDEN / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def seeded_model(model: nn.Module, seed: int, bn_prefix: str | None = None) -> nn.Module:
    """``model`` with the seeded weights (and, for a ResNet, the recorded batch-norm statistics
    ``irn_bn_stats.npz`` entries under ``bn_prefix``), in eval mode."""
    state = seeded_state(model, seed)
    if bn_prefix is not None:
        stats = golden("irn_bn_stats")
        state.update({k[len(bn_prefix):]: torch.from_numpy(v) for k, v in stats.items()
                      if k.startswith(bn_prefix)})
    model.load_state_dict(state)
    return model.eval()


def assert_map_close(got: torch.Tensor | np.ndarray, ref: np.ndarray, what: str,
                     rtol: float = 1e-4) -> float:
    """max |got - ref| <= rtol * max |ref| (a map's error relative to its scale); returns it."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, official {ref.shape}"
    err = float(np.abs(got - ref).max()) / max(float(np.abs(ref).max()), 1e-12)
    assert err <= rtol, (f"{what}: max |diff| is {err:.3g} of the official map's maximum "
                         f"(tolerance {rtol:g})")
    return err


# Labels are thresholds or argmaxes of floats that csdseg and the official code compute on
# different paths (and machines): another CPU's last-bit rounding can flip a pixel at a tie,
# so the share allowed is that of tests/test_redesign_outputs.py. Measured: none flips on the
# AVX-512 Intel and AVX2 AMD machines the suite has run on.
LABEL_FLIP_SHARE = 0.005


def assert_labels_close(got: np.ndarray, ref: np.ndarray, what: str,
                        share: float = LABEL_FLIP_SHARE) -> None:
    """Same shape, and at most ``share`` of the entries differ from the official labels."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, official {ref.shape}"
    differ = int((got != ref).sum())
    assert differ <= share * ref.size, (f"{what}: {differ} of {ref.size} entries differ "
                                        f"(at most {share:.1%} allowed)")
