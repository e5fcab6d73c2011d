"""PSA's ResNet-38 / AffinityNet: structure against the official definition (facts read from
jiwoon-ahn/psa network/resnet38d.py and resnet38_aff.py), freezing, optimiser groups, weight
files made here, the MXNet name rule, the pair layout. Numerics: tests/test_golden_psa.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.models.affinitynet import AffinityNet, affinitynet_tiny
from csdseg.models.resnet38d import load_psa_weights, mxnet_param_name
from csdseg.ops.psa_affinity import affinity_loss, psa_pairs
from csdseg.ops.path_index import search_directions

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def full() -> AffinityNet:
    return AffinityNet()


def _conv(model, name):
    return dict(model.named_modules())[name]


def test_official_layout(full) -> None:
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert len(shapes) == 232  # the official resnet38_aff.Net's state dict has 232 entries
    assert shapes["conv1a.weight"] == (64, 3, 3, 3)
    assert shapes["b2.conv_branch2a.weight"] == (128, 64, 3, 3)
    assert shapes["b4_5.conv_branch2b1.weight"] == (512, 512, 3, 3)
    assert shapes["b5.conv_branch1.weight"] == (1024, 512, 1, 1)
    assert shapes["b6.conv_branch2a.weight"] == (512, 1024, 1, 1)
    assert shapes["b6.conv_branch2b1.weight"] == (1024, 512, 3, 3)
    assert shapes["b7.conv_branch2b2.weight"] == (4096, 2048, 1, 1)
    assert shapes["bn7.running_var"] == (4096,)
    assert shapes["f8_3.weight"] == (64, 512, 1, 1) and shapes["f8_4.weight"] == (128, 1024, 1, 1)
    assert shapes["f8_5.weight"] == (256, 4096, 1, 1) and shapes["f9.weight"] == (448, 448, 1, 1)
    assert "b2_1.conv_branch1.weight" not in shapes  # same-shape blocks have no projection
    b5, b5_1, b6 = (_conv(full, n) for n in ("b5.conv_branch2a", "b5_1.conv_branch2a",
                                              "b6.conv_branch2b1"))
    assert (b5.dilation, b5_1.dilation, b6.dilation) == ((1, 1), (2, 2), (4, 4))
    assert _conv(full, "b4.conv_branch2a").stride == (2, 2)
    assert _conv(full, "b5.conv_branch2a").stride == (1, 1)
    assert (full.b6.dropout_2b1.p, full.b7.dropout_2b2.p) == (0.3, 0.5)
    assert not any(p.requires_grad for n, p in full.named_parameters()
                   if n.startswith(("conv1a.", "b2.", "b2_1.", "b2_2.")) or ".bn" in n or
                   n.startswith("bn7."))
    assert full.b3.conv_branch2a.weight.requires_grad and full.f9.weight.requires_grad


def test_forward_shapes_and_frozen_bn() -> None:
    net = affinitynet_tiny().train()
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = torch.randn(2, 3, 100, 90)  # grid ceil(100/8) x ceil(90/8) = 13 x 12
    f = net.affinity_features(x)
    assert f.shape == (2, 56, 13, 12)
    aff = net(x)
    assert aff.shape == (2, 34, (13 - 4) * (12 - 8))
    assert float(aff.detach().min()) > 0 and float(aff.detach().max()) <= 1
    with pytest.raises(ValueError, match="too small"):
        net(torch.randn(1, 3, 64, 64))  # an 8-wide grid has no source at radius 5
    with pytest.raises(ValueError, match="width"):
        AffinityNet(width=6)


def test_param_groups() -> None:
    net = affinitynet_tiny()
    groups = net.param_groups(0.1, 5e-4, 10.0)
    assert [g["lr"] for g in groups] == [0.1, 1.0]
    head = {id(p) for g in groups[1:] for p in g["params"]}
    assert head == {id(getattr(net, n).weight) for n in ("f8_3", "f8_4", "f8_5", "f9")}
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters() if p.requires_grad)


def test_weight_files(tmp_path) -> None:
    torch.manual_seed(0)
    src, dst = affinitynet_tiny(), affinitynet_tiny()
    torch.save(src.state_dict(), tmp_path / "aff.pth")
    assert load_psa_weights(dst, tmp_path / "aff.pth") == []
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # a classifier's file (backbone + fc8, as res38_cls.pth): the head keeps its init
    cls = {k: v for k, v in src.state_dict().items() if not k.startswith(("f8_", "f9"))}
    cls["fc8.weight"] = torch.zeros(20, 512, 1, 1)
    torch.save(cls, tmp_path / "cls.pth")
    fresh = affinitynet_tiny()
    f9 = fresh.f9.weight.clone()
    assert sorted(load_psa_weights(fresh, tmp_path / "cls.pth")) == \
        ["f8_3.weight", "f8_4.weight", "f8_5.weight", "f9.weight"]
    assert torch.equal(fresh.f9.weight, f9) and torch.equal(fresh.b3.conv_branch2a.weight,
                                                            src.b3.conv_branch2a.weight)
    del cls["b3.conv_branch2a.weight"]
    torch.save(cls, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="lacks 1 backbone tensors"):
        load_psa_weights(affinitynet_tiny(), tmp_path / "short.pth")
    torch.save(AffinityNet(12, (1, 1, 1, 1)).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match="another width"):
        load_psa_weights(affinitynet_tiny(), tmp_path / "wide.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="cannot be read"):
        load_psa_weights(affinitynet_tiny(), tmp_path / "bad.pth")


def test_mxnet_names(tmp_path) -> None:
    assert mxnet_param_name("arg:conv1a_weight") == "conv1a.weight"
    assert mxnet_param_name("arg:res2a_branch1_weight") == "b2.conv_branch1.weight"
    assert mxnet_param_name("arg:res4b5_branch2b1_weight") == "b4_5.conv_branch2b1.weight"
    assert mxnet_param_name("arg:bn5b2_branch2a_gamma") == "b5_2.bn_branch2a.weight"
    assert mxnet_param_name("aux:bn6a_branch2b2_moving_var") == "b6.bn_branch2b2.running_var"
    assert mxnet_param_name("aux:bn7_moving_mean") == "bn7.running_mean"
    assert mxnet_param_name("arg:bn7_beta") == "bn7.bias"
    assert mxnet_param_name("arg:linear1000_weight") is None
    # an .npz under MXNet names loads into the backbone
    net = affinitynet_tiny()
    inverse = {"conv1a.weight": "arg:conv1a_weight"}
    arrays = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked") or k.startswith(("f8_", "f9")):
            continue
        block, layer, leaf = k.split(".") if k.count(".") == 2 else (None, *k.split("."))
        if k in inverse:
            arrays[inverse[k]] = v.numpy() + 1
            continue
        unit = ("res" if layer.startswith("conv") else "bn") + (
            block[1] + ("a" if "_" not in block else "b" + block.split("_")[1]) if block else "7")
        mx_leaf = {"weight": "gamma" if block is None or layer.startswith("bn") else "weight",
                   "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}
        name = f"{unit}_{layer.split('_', 1)[1]}_{mx_leaf[leaf]}" if block else f"bn7_{mx_leaf[leaf]}"
        arrays[name] = v.numpy() + 1
    np.savez(tmp_path / "mx.npz", **arrays, **{"arg:linear1000_weight": np.zeros(3)})
    load_psa_weights(net, tmp_path / "mx.npz")
    assert torch.equal(net.b4.conv_branch2b1.weight, torch.from_numpy(
        arrays["res4a_branch2b1_weight"]))
    assert torch.equal(net.bn7.running_var, torch.from_numpy(arrays["bn7_moving_var"]))


def test_pairs_in_psa_order() -> None:
    src, dst = psa_pairs(12, 14)
    dirs = search_directions(5)
    assert len(dirs) == 34 and dirs[:5] == [(0, 1), (0, 2), (0, 3), (0, 4), (1, -4)]
    assert src.shape == (8 * 6,) and dst.shape == (34, 48)
    assert src[0] == 4 and src[-1] == 7 * 14 + 9  # rows 0..7, columns 4..9
    for d, (dy, dx) in enumerate(dirs):
        np.testing.assert_array_equal(dst[d], src + dy * 14 + dx)


def test_loss_terms_by_hand() -> None:
    aff = torch.tensor([[[0.5, 0.9], [0.2, 1.0]]])
    bg = torch.tensor([[[1.0, 0], [0, 0]]])
    fg = torch.tensor([[[0, 1.0], [0, 0]]])
    neg = torch.tensor([[[0, 0], [1.0, 0]]])
    loss, parts = affinity_loss(aff, bg, fg, neg)
    e = 1e-5
    want = {"bg": -np.log(0.5 + e) / (1 + e), "fg": -np.log(0.9 + e) / (1 + e),
            "neg": -np.log(1 + e - 0.2) / (1 + e)}
    for k, v in want.items():
        assert float(parts[k]) == pytest.approx(v, rel=1e-6)
    assert float(loss) == pytest.approx(want["bg"] / 4 + want["fg"] / 4 + want["neg"] / 2,
                                        rel=1e-6)
