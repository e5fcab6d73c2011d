"""MCTformer-V2 (DeiT-S) on the CPU against the official code path, in one process, interleaved.

    python bench/mctformer.py [--rounds 5] [--threads 1] [--profile]

Both paths run csdseg's network (the same weights, random, 20 classes, fp32); what differs is
what the official code (xulianuwa/MCTformer ``models.py`` / ``engine.py``) does around it,
re-implemented here step for step:

- training step, batch 8 x 224 (forward, the two multi-label soft-margin losses, backward,
  AdamW): the official forward keeps every block's explicit softmax attention, stacks all 12
  [B, heads, T, T] tensors, averages the heads and builds the class-to-patch maps, the fused
  CAMs and the patch-to-patch attention on every training step, though training reads only
  the two logits; csdseg's ``model(x, maps=False)`` runs fused attention and builds no maps;
- maps of one 500 x 375 image at scale 1.0 + flip with patch-attention refinement (make-cam's
  path): official ``generate_attention_maps_ms`` runs the image and its mirror as two batches
  of one, resizes all 20 class maps to full size, masks them by the labels, sums and min-max
  normalises the present ones; csdseg's ``multiscale_cam`` runs both views as one batch and
  resizes only the present classes (and also writes the stride-4 maps, as make-cam does).

Checks before timing: the official forward's logits equal csdseg's (eval mode, within 1e-5)
and both paths' maps agree within 1e-3 (the largest difference is printed). Prints each
path's median and spread, CPU time beside wall time, the per-round ratio, the machine and the
load, and each workload's FLOPs.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import interleaved, load, machine, ratio_line, spread  # noqa: E402

from csdseg.models.mctformer import mctformer_v2  # noqa: E402
from csdseg.models.vit_blocks import interpolate_pos_embed  # noqa: E402
from csdseg.ops.cam import multiscale_cam  # noqa: E402

K, SIZE, LAYERS = 20, (375, 500), 3  # classes, image (H, W), MCTformer's --layer-index
MAP_TOLERANCE = 1e-3  # on min-max normalised maps


def official_forward(model, x: torch.Tensor, n_layers: int = LAYERS):
    """``MCTformerV2.forward`` on csdseg's modules: (class logits, patch logits, fused CAMs
    [B, K, h, w], patch attention [12, B, hw, hw])."""
    B, _, H, W = x.shape
    tokens, grid = model.patch_embed(x)
    pos = torch.cat([model.pos_embed[:, :K],
                     interpolate_pos_embed(model.pos_embed[:, K:], model.native_grid, grid)], 1)
    tokens = model.pos_drop(torch.cat([model.cls_token.expand(B, -1, -1), tokens], 1) + pos)
    weights = []
    for block in model.blocks:  # the official block always returns its attention weights
        tokens, w = block(tokens, need_weights=True)
        weights.append(w)
    h, w = grid
    patch = model.head(tokens[:, K:].transpose(1, 2).reshape(B, -1, h, w).contiguous())
    patch_logits = F.adaptive_avg_pool2d(patch, 1).flatten(1)
    attn = torch.stack(weights).mean(2)  # [12, B, T, T]
    feature = F.relu(patch.detach().clone())
    mtatt = attn[-n_layers:].sum(0)[:, :K, K:].reshape(B, K, h, w)
    cams = mtatt * feature
    patch_attn = attn[:, :, K:, K:]
    return tokens[:, :K].mean(-1), patch_logits, cams, patch_attn


def official_maps(model, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """engine.generate_attention_maps_ms for one image, scale 1.0 + flip: the present classes'
    min-max normalised maps [k, H, W]."""
    total = 0
    for s, view in enumerate((img, img.flip(-1))):
        _, _, cams, patch_attn = official_forward(model, view[None])
        patch_attn = patch_attn.sum(0)
        h, w = cams.shape[-2:]
        cams = torch.matmul(patch_attn.unsqueeze(1), cams.view(1, K, -1, 1)).reshape(1, K, h, w)
        cams = F.interpolate(cams, size=SIZE, mode="bilinear", align_corners=False)[0]
        cams = cams.numpy() * target.view(K, 1, 1).numpy()
        total = total + (cams[..., ::-1] if s % 2 == 1 else cams)
    maps = torch.from_numpy(total[target.numpy() > 0].copy())
    low = maps.amin((1, 2), keepdim=True)
    return (maps - low) / (maps.amax((1, 2), keepdim=True) - low + 1e-8)


def csdseg_maps(model, img: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """make-cam's path: both views as one batch, csdseg's multiscale_cam; high_res [k, H, W]."""
    views = [torch.stack([img, img.flip(-1)])]
    _, high = multiscale_cam(model.cam, views, SIZE, keys, torch.device("cpu"), "minmax",
                             model.upsample, model.feature_stride)
    return high


def profile_maps(threads: int) -> None:
    """Where csdseg's map time goes: self CPU time per operator, one image after a warm-up."""
    torch.set_num_threads(threads)
    model, img, keys = mctformer_v2(K, pretrained="none").eval(), torch.randn(3, *SIZE), \
        torch.tensor([3, 11])
    with torch.inference_mode():
        csdseg_maps(model, img, keys)
        with torch.profiler.profile() as prof:
            csdseg_maps(model, img, keys)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def gflop(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="only the torch profile of csdseg's maps for one image (by op)")
    args = parser.parse_args()
    if args.profile:
        return profile_maps(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {machine()}\nload at start: {load()}", flush=True)
    x, y = torch.randn(8, 3, 224, 224), (torch.rand(8, K) > 0.8).float()
    y[:, 0] = 1
    ref_model = mctformer_v2(K, pretrained="none").eval()
    our_model = copy.deepcopy(ref_model)
    with torch.no_grad():  # the reference computes the same function
        ref_logits, ref_patch, _, _ = official_forward(ref_model, x)
        ours = our_model(x, maps=False)
    assert torch.allclose(ref_logits, ours["logits"], atol=1e-5)
    assert torch.allclose(ref_patch, ours["patch_logits"], atol=1e-5)

    def official_step(_: int) -> None:
        logits, patch, _, _ = official_forward(ref_model, x, n_layers=12)  # forward's default
        loss = F.multilabel_soft_margin_loss(logits, y) + F.multilabel_soft_margin_loss(patch, y)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()

    def csdseg_step(_: int) -> None:
        loss = our_model.classification_loss(our_model(x, maps=False), y)
        our_opt.zero_grad()
        loss.backward()
        our_opt.step()

    ref_model.train(), our_model.train()
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-5, weight_decay=0.05)
    our_opt = torch.optim.AdamW(our_model.param_groups(1e-5, 0.05, 1.0))
    train_flops = gflop(lambda: csdseg_step(0))
    official_step(0), csdseg_step(0)  # warm-up
    train = interleaved(official_step, csdseg_step, args.rounds)

    model = mctformer_v2(K, pretrained="none").eval()
    img = torch.randn(3, *SIZE)
    target = torch.zeros(K)
    target[[3, 11]] = 1
    keys = torch.nonzero(target).flatten()

    worst = [0.0]

    def same(a, b) -> None:  # [0, 1] maps; float32 rounding differs (batch of 2 vs 1, flip order)
        worst[0] = max(worst[0], float((a - b).abs().max()))
        if worst[0] > MAP_TOLERANCE:
            raise AssertionError(f"maps differ by {worst[0]:.2e} (> {MAP_TOLERANCE})")

    with torch.inference_mode():
        map_flops = gflop(lambda: csdseg_maps(model, img, keys))
        same(official_maps(model, img, target), csdseg_maps(model, img, keys))
        maps = interleaved(lambda _: official_maps(model, img, target),
                           lambda _: csdseg_maps(model, img, keys), args.rounds, check=same)
    print(f"\n{args.threads} torch thread(s), {args.rounds} interleaved rounds; load at end {load()}")
    print(f"logits equal within 1e-5; maps: largest difference {worst[0]:.2e}")
    for what, (ref_w, our_w, ref_c, our_c), flops in (
            ("training step, batch 8 x 224", train, train_flops),
            ("maps, 500 x 375, scale 1.0 + flip + refinement", maps, map_flops)):
        print(f"{what} ({flops:.0f} GFLOP in csdseg's path):")
        print(f"  official: {spread(ref_w)} wall; CPU {spread(ref_c)}")
        print(f"  csdseg  : {spread(our_w)} wall; CPU {spread(our_c)}")
        print("  " + ratio_line("wall", ref_w, our_w))
        print("  " + ratio_line("CPU ", ref_c, our_c))
        print(f"  csdseg at {flops / min(our_c):.0f} GFLOP/s (best round, CPU time)")


if __name__ == "__main__":
    main()
