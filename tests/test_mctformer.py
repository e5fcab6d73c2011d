"""MCTformer V1/V2: shapes, attention maps against a from-scratch reference, weight loading."""
from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from csdseg.models import build_model
from csdseg.models.mctformer import MCTformer, mctformer_v1_tiny, mctformer_v2_tiny
from csdseg.models.vit_blocks import interpolate_pos_embed

K = 3


def _tiny(version: int, **kw) -> MCTformer:
    torch.manual_seed(0)
    kw.setdefault("drop_path_rate", 0.0)
    return (mctformer_v1_tiny if version == 1 else mctformer_v2_tiny)(K, "none", **kw).eval()


def _reference(model: MCTformer, x: torch.Tensor, refine: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [B, K] and maps [B, K, h, w] computed from the parameters with plain tensor ops."""
    B, p, D = x.shape[0], model.feature_stride, model.cls_token.shape[-1]
    h, w = x.shape[2] // p, x.shape[3] // p
    patches = F.unfold(x, p, stride=p).transpose(1, 2)  # [B, hw, 3*p*p]
    t = patches @ model.patch_embed.proj.weight.reshape(D, -1).T + model.patch_embed.proj.bias
    t = torch.cat([model.cls_token.expand(B, -1, -1), t], 1) + model.pos_embed
    attns = []
    for blk in model.blocks:
        heads = blk.attn.num_heads
        q, k, v = F.linear(F.layer_norm(t, (D,), blk.norm1.weight, blk.norm1.bias, 1e-6),
                           blk.attn.qkv.weight, blk.attn.qkv.bias).chunk(3, -1)
        q, k, v = (z.reshape(B, -1, heads, D // heads).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), -1)
        attns.append(a.mean(1))
        t = t + blk.attn.proj((a @ v).transpose(1, 2).reshape(B, -1, D))
        t = t + blk.mlp(F.layer_norm(t, (D,), blk.norm2.weight, blk.norm2.bias, 1e-6))
    maps = sum(attns[-3:])[:, :K, K:].reshape(B, K, h, w)
    if model.version == 2:
        grid = t[:, K:].transpose(1, 2).reshape(B, D, h, w)
        maps = maps * F.conv2d(grid, model.head.weight, model.head.bias, padding=1).relu()
    if refine:
        patch_attn = sum(attns)[:, K:, K:]
        maps = torch.einsum("bij,bkj->bki", patch_attn, maps.flatten(2)).reshape(B, K, h, w)
    return t[:, :K].mean(-1), maps


@pytest.mark.parametrize("version", [1, 2])
def test_shapes_and_class_tokens(version: int) -> None:
    model = _tiny(version)
    assert model.cls_token.shape == (1, K, 192) and model.pos_embed.shape == (1, K + 16 * 16, 192)
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert out["logits"].shape == (2, K) and out["maps"].shape == (2, K, 8, 12)
    assert ("patch_logits" in out) == (version == 2)
    if version == 2:
        assert out["patch_logits"].shape == (2, K)
    cam = model.cam(x)
    assert cam.shape == (2, K, 8, 12) and cam.min() >= 0 and torch.isfinite(cam).all()
    assert model(x, maps=False).keys() == out.keys() - {"maps"}
    assert model.feature_stride == 8


@pytest.mark.parametrize("version,refine", [(1, False), (1, True), (2, False), (2, True)])
def test_maps_match_reference(version: int, refine: bool) -> None:
    model = _tiny(version)
    x = torch.randn(2, 3, 128, 128)  # native size: the reference adds pos_embed as it is
    logits, maps = _reference(model, x, refine)
    with torch.no_grad():
        out = model(x)
        got = model.attention_maps(x, refine=refine)
    torch.testing.assert_close(out["logits"], logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got, maps, atol=1e-5, rtol=1e-4)
    if not refine:
        torch.testing.assert_close(out["maps"], maps, atol=1e-5, rtol=1e-4)


def test_attention_rows_sum_to_one() -> None:
    model = _tiny(2)
    tokens = torch.randn(2, K + 64, 192)
    out, weights = model.blocks[0](tokens, need_weights=True)
    assert weights.shape == (2, 3, K + 64, K + 64) and out.shape == tokens.shape
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, K + 64))
    assert model.blocks[0](tokens)[1] is None


@pytest.mark.parametrize("version", [1, 2])
def test_fused_and_explicit_attention_agree(version: int) -> None:
    fused, explicit = _tiny(version, fused_attn=True), _tiny(version, fused_attn=False)
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = fused(x, maps=False), explicit(x, maps=False)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
        torch.testing.assert_close(fused.cam(x), explicit.cam(x), atol=1e-5, rtol=0)


def test_pos_embed_interpolation() -> None:
    pos = torch.randn(1, 14 * 14, 8)
    assert interpolate_pos_embed(pos, (14, 14), (14, 14)) is pos
    assert interpolate_pos_embed(pos, (14, 14), (20, 31)).shape == (1, 20 * 31, 8)
    const = torch.full((1, 14 * 14, 8), 0.7)
    for grid in [(20, 31), (7, 9), (3, 3)]:
        out = interpolate_pos_embed(const, (14, 14), grid)
        torch.testing.assert_close(out, torch.full_like(out, 0.7))


def _deit_file(tmp_path, suffix: str = ".pth", wrap: bool = False, **kw):
    torch.manual_seed(1)
    kw = {"img_size": 128, "patch_size": 8, "depth": 4, **kw}
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, **kw)
    state = {k: v.clone() for k, v in deit.state_dict().items()}
    path = tmp_path / f"deit{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, str(path))
    else:
        torch.save({"model": state} if wrap else state, path)
    return state, path


@pytest.mark.parametrize("suffix,wrap", [(".pth", False), (".pth", True), (".safetensors", False)])
@pytest.mark.parametrize("version", [1, 2])
def test_load_deit_weights(tmp_path, suffix: str, wrap: bool, version: int) -> None:
    state, path = _deit_file(tmp_path, suffix, wrap)
    model = (mctformer_v1_tiny if version == 1 else mctformer_v2_tiny)(K, str(path))
    loaded = model.state_dict()
    compared = 0
    for key, value in state.items():
        if key.startswith(("head.", "norm.")) or key in ("cls_token", "pos_embed"):
            continue
        assert torch.equal(loaded[key], value), key
        compared += 1
    assert compared == len(state) - 6  # everything but head, final norm, cls_token, pos_embed
    for k in range(K):
        assert torch.equal(loaded["cls_token"][0, k], state["cls_token"][0, 0])
        assert torch.equal(loaded["pos_embed"][0, k], state["pos_embed"][0, 0])
    assert torch.equal(loaded["pos_embed"][:, K:], state["pos_embed"][:, 1:])


def test_load_resamples_patch_positions(tmp_path) -> None:
    state, path = _deit_file(tmp_path, img_size=64)  # an 8x8 position grid; the model has 16x16
    state["pos_embed"].fill_(0.25)
    torch.save(state, path)
    model = mctformer_v2_tiny(K, str(path))
    torch.testing.assert_close(model.pos_embed.data, torch.full((1, K + 256, 192), 0.25))


def test_load_errors(tmp_path, monkeypatch) -> None:
    _, path = _deit_file(tmp_path, embed_dim=96, num_heads=3)
    with pytest.raises(ValueError, match=r"model.pretrained=.*deit.pth: shapes do not fit"):
        mctformer_v1_tiny(K, str(path))
    with pytest.raises(ValueError, match="no such file"):
        mctformer_v1_tiny(K, str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="tiny MCTformer has no published weights"):
        mctformer_v1_tiny(K, "hub")
    monkeypatch.setattr("csdseg.models.pretrained._hub_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ValueError, match=r"model.pretrained=/path/to/weights.pth"):
        build_model("mctformer_v1", 20, "hub")


def test_every_parameter_gets_a_gradient() -> None:
    model = _tiny(2).train()
    x, labels = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    out = model(x)
    loss = model.classification_loss(out, labels)
    expected = (F.multilabel_soft_margin_loss(out["logits"], labels)
                + F.multilabel_soft_margin_loss(out["patch_logits"], labels))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    model.zero_grad()
    model(x)["maps"].sum().backward()  # CSD's losses act on the maps: they must be differentiable
    assert model.cls_token.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0


def test_param_groups_follow_deit() -> None:
    model = _tiny(2)
    decay, no_decay = model.param_groups(1e-3, 0.05, 1.0)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "blocks.0.norm1.weight", "head.bias"} <= no_decay_names
    assert all(n.endswith(".bias") or "norm" in n or n in ("cls_token", "pos_embed")
               for n in no_decay_names)
    assert {names[id(p)] for p in decay["params"]} == {
        n for n, p in model.named_parameters()
        if p.ndim > 1 and n not in ("cls_token", "pos_embed")}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_registry_builds_all_variants() -> None:
    deit = timm.create_model("deit_small_patch16_224", pretrained=False)
    backbone = {k: v.shape for k, v in deit.state_dict().items()
                if not k.startswith(("head.", "norm.")) and k not in ("cls_token", "pos_embed")}
    for name in ["mctformer_v1", "mctformer_v2", "mctformer_v1_tiny", "mctformer_v2_tiny"]:
        model = build_model(name, 20, "none")
        assert isinstance(model, MCTformer) and model.cls_token.shape[1] == 20
        if not name.endswith("tiny"):  # DeiT-S: every backbone tensor has DeiT-S's shape
            own = model.state_dict()
            assert all(own[k].shape == s for k, s in backbone.items())
            assert model.pos_embed.shape == (1, 20 + 196, 384) and model.feature_stride == 16
            assert len(model.blocks) == 12 and model.blocks[0].attn.num_heads == 6
            model.load_deit(deit.state_dict(), "deit_small")  # what the hub route hands over
            assert torch.equal(model.blocks[11].mlp.fc2.weight, deit.blocks[11].mlp.fc2.weight)


def _squares(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey noise images [n, 3, 64, 64] with a red, green and/or blue square per present class."""
    images = 0.1 * torch.randn(n, 3, 64, 64, generator=generator)
    labels = (torch.rand(n, K, generator=generator) > 0.5).float()
    labels[labels.sum(1) == 0, 0] = 1.0
    for i in range(n):
        for c in labels[i].nonzero().flatten().tolist():
            y, x = torch.randint(0, 48, (2,), generator=generator).tolist()
            images[i, :, y:y + 16, x:x + 16] = -1.0
            images[i, c, y:y + 16, x:x + 16] = 2.0
    return images, labels


def test_short_training_reduces_the_loss() -> None:
    model = _tiny(2).train()
    gen = torch.Generator().manual_seed(0)
    test_x, test_y = _squares(32, gen)
    groups = model.param_groups(1e-3, 0.05, 1.0)
    optimiser = torch.optim.AdamW(groups)
    with torch.no_grad():
        before = model.classification_loss(model.eval()(test_x, maps=False), test_y).item()
    model.train()
    for _ in range(30):
        x, y = _squares(16, gen)
        loss = model.classification_loss(model(x, maps=False), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = model.classification_loss(model.eval()(test_x, maps=False), test_y).item()
    assert math.isfinite(after) and after < 0.7 * before, (before, after)
