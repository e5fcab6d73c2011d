"""IRN model outputs, gradients to the new layers only, and the loss terms."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.losses.affinity import irn_losses, pair_displacement
from csdseg.models.irn import IRNet
from csdseg.ops.affinity import affinity_labels, boundary_to_affinity
from csdseg.ops.path_index import PathIndex


@pytest.fixture(scope="module")
def model() -> IRNet:
    torch.manual_seed(0)
    return IRNet("resnet10t", "none")


@pytest.mark.parametrize("hw", [(64, 64), (70, 53)])
def test_output_strides(model: IRNet, hw: tuple[int, int]) -> None:
    model.eval()
    edge, dp = model(torch.randn(2, 3, *hw))
    h, w = -(-hw[0] // 4), -(-hw[1] // 4)
    assert edge.shape == (2, 1, h, w) and dp.shape == (2, 2, h, w)
    boundary = model.infer_boundary(torch.randn(3, *hw))
    assert boundary.shape == (h, w) and 0 <= boundary.min() and boundary.max() <= 1


@pytest.mark.parametrize("hw, crop, padded", [((70, 53), 96, (96, 96)),
                                              ((70, 53), 64, (80, 64)), ((64, 64), 64, (64, 64))])
def test_boundary_input_is_zero_padded_as_official(model: IRNet, hw, crop, padded) -> None:
    """The image and its mirror are zero-padded bottom/right to crop_size (IRN's
    EdgeDisplacement); a side longer than crop_size to its length rounded up to 16."""
    model.eval()
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    x = torch.randn(3, *hw)
    try:
        boundary, dp = model.edge_displacement(x, crop)
    finally:
        handle.remove()
    (inp,) = seen
    assert inp.shape == (2, 3, *padded)
    assert torch.equal(inp[0, :, :hw[0], :hw[1]], x) and torch.equal(inp[1, :, :hw[0], :hw[1]], x.flip(-1))
    assert inp[:, :, hw[0]:].abs().sum() == 0 and inp[:, :, :, hw[1]:].abs().sum() == 0
    h, w = -(-hw[0] // 4), -(-hw[1] // 4)
    assert boundary.shape == (h, w) and dp.shape == (2, h, w)
    torch.testing.assert_close(model.infer_boundary(x, crop), boundary)


def test_random_walk_restores_the_callers_denormal_setting() -> None:
    from csdseg.ops.random_walk import flush_denormal_enabled, random_walk

    cams, boundary = torch.rand(1, 6, 6), torch.rand(6, 6)
    for setting in (True, False):
        torch.set_flush_denormal(setting)
        random_walk(cams, boundary, exp_times=2)
        assert flush_denormal_enabled() == setting
    torch.set_flush_denormal(False)


def test_resnet50_branch_widths() -> None:
    net = IRNet("resnet50", "none")
    widths = [m[0].in_channels for m in net.edge_layers[:5]]
    assert widths == [64, 256, 512, 1024, 2048]
    assert net.edge_layers[5].in_channels == 160 and net.dp_layers[5][0].in_channels == 768
    assert net.dp_layers[6][0][0].in_channels == 448


def test_loss_reaches_every_new_parameter_and_no_backbone(model: IRNet) -> None:
    model.train()
    index = PathIndex(4)
    x = torch.randn(2, 3, 48, 48)
    label = np.zeros((12, 12), np.uint8)
    label[3:9, 2:7] = 1
    label[3:9, 7:11] = 2
    label[0, :] = 255
    src, dst = index.cropped_pairs(12, 12)
    masks = [torch.from_numpy(m)[None].repeat(2, 1, 1) for m in affinity_labels(label, src, dst)]
    edge, dp = model(x)
    aff = boundary_to_affinity(torch.sigmoid(edge[:, 0]), index)
    disp = pair_displacement(dp, torch.from_numpy(src), torch.from_numpy(dst))
    assert aff.shape == (2, index.num_directions, src.size) == disp.shape[:1] + disp.shape[2:]
    loss, terms = irn_losses(aff, disp, torch.from_numpy(index.offsets_float), *masks)
    assert set(terms) == {"pos_aff", "neg_aff", "dp_fg", "dp_bg"} and torch.isfinite(loss)
    model.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert p.grad is None and not p.requires_grad, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.backbone.training is False


def test_loss_terms_by_hand() -> None:
    # one source, two directions: direction 0 a bg-positive pair, direction 1 a negative pair
    aff = torch.tensor([[[0.5], [0.25]]])
    offsets = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    disp = torch.zeros(1, 2, 2, 1)
    disp[0, :, 1, 0] = torch.tensor([1.0, 0.0])
    bg = torch.tensor([[[1.0], [0.0]]])
    fg = torch.zeros(1, 2, 1)
    neg = torch.tensor([[[0.0], [1.0]]])
    loss, terms = irn_losses(aff, disp, offsets, bg, fg, neg)
    assert terms["pos_aff"] == pytest.approx(-np.log(0.5 + 1e-5) / 2, rel=1e-4)
    assert terms["neg_aff"] == pytest.approx(-np.log(0.75 + 1e-5), rel=1e-4)
    assert terms["dp_bg"] == 0.0 and terms["dp_fg"] == 0.0
    disp[0, 0, 0, 0] = 3.0  # a background pair that moves apart by 3 in y: |3| / (2 * 1)
    _, terms = irn_losses(aff, disp, offsets, bg, fg, neg)
    assert terms["dp_bg"] == pytest.approx(1.5, rel=1e-4)


def test_displacement_of_a_perfect_field_is_the_offset() -> None:
    # dp(p) = centre - p makes dp(src) - dp(dst) equal to dst - src, the direction's offset
    index = PathIndex(3)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(9.0), indexing="ij")
    dp = torch.stack([4 - ys, 4 - xs])[None]
    src, dst = index.cropped_pairs(8, 9)
    disp = pair_displacement(dp, torch.from_numpy(src), torch.from_numpy(dst))
    expected = torch.from_numpy(index.offsets_float).T[None, :, :, None].expand_as(disp)
    torch.testing.assert_close(disp, expected)


def _tiny_run(tmp_path) -> tuple[list[str], dict]:
    """A 4-image VOC-layout dataset with perfect CAMs and confident labels."""
    from PIL import Image

    from csdseg.data.classes import VOC_CLASSES
    from csdseg.files.cam import save_cam
    from csdseg.files.labels import save_label_png

    rng = np.random.default_rng(0)
    root, run = tmp_path / "VOC", tmp_path / "runs" / "t"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    labels, masks = {}, {}
    for n in range(4):
        image_id, cls = f"im{n}", 1 + 3 * n
        mask = np.zeros((40, 52), np.uint8)
        mask[8 + n:30, 10:34 + n] = cls
        img = np.where(mask[..., None] > 0, 200, 40).astype(np.uint8).repeat(3, 2)
        img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
        ir = mask.copy()
        ir[7 + n:10 + n] = 255  # an uncertain band
        save_label_png(run / "ir_label" / f"{image_id}.png", ir)
        high_res = (mask == cls).astype(np.float32)[None]
        save_cam(run / "cam" / f"{image_id}.npy", [cls - 1], high_res[:, ::4, ::4], high_res)
        labels[image_id] = np.eye(len(VOC_CLASSES), dtype=np.float32)[cls - 1]
        masks[image_id] = mask
    np.save(root / "cls_labels.npy", labels, allow_pickle=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(labels) + "\n")
    args = [f"data.root={root}", f"run_root={tmp_path / 'runs'}", "name=t", "device=cpu",
            "data.train_split=train", "data.infer_split=train", "data.eval_split=train",
            "data.num_workers=0", "irn.backbone=resnet10t", "irn.pretrained=none",
            "irn.crop_size=48", "irn.path_radius=4", "irn.batch_size=2", "irn.max_steps=2", "ir_label.num_workers=1"]
    return args, masks


def test_train_irn_make_and_eval_sem_seg(tmp_path, capsys) -> None:
    import json
    import shutil

    from PIL import Image

    from csdseg.cli import main

    args, masks = _tiny_run(tmp_path)
    run = tmp_path / "runs" / "t"
    assert main(["make-sem-seg", *args]) == 2  # no IRN yet: a one-line error
    assert "run `csdseg train-irn` first" in capsys.readouterr().err
    assert main(["train-irn", *args]) == 0
    ckpt = torch.load(run / "checkpoints" / "irn.pt", weights_only=False)
    assert ckpt["meta"] == {"model": "irn", "backbone": "resnet10t"}
    assert main(["make-sem-seg", *args]) == 0
    for image_id, mask in masks.items():
        pred = np.asarray(Image.open(run / "sem_seg" / f"{image_id}.png"))
        assert pred.shape == mask.shape and set(np.unique(pred)) <= {0, int(mask.max())}
    capsys.readouterr()
    assert main(["eval-sem-seg", *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 4 and 0 <= report["miou"] <= 1
    shutil.rmtree(run / "sem_seg")
    assert main(["make-sem-seg", *args, "refine.method=crf"]) == 0
    capsys.readouterr()
    assert main(["eval-sem-seg", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["miou"] > 0.8  # perfect CAMs stay near-perfect


def test_train_backbone_option_lets_the_backbone_learn() -> None:
    """irn.train_backbone (from-scratch deviation): gradients reach the backbone and its batch
    norms use batch statistics in training; the default keeps IRN's frozen backbone."""
    torch.manual_seed(0)
    net = IRNet("resnet10t", "none", train_backbone=True).train()
    assert net.backbone.training and all(p.requires_grad for p in net.backbone.parameters())
    edge, dp = net(torch.randn(2, 3, 48, 48))
    (edge.sum() + dp.sum()).backward()
    assert all(p.grad is not None for p in net.backbone.parameters())
    assert len(net.param_groups(0.1, 1e-4, 10.0)) == 3
    frozen = IRNet("resnet10t", "none").train()
    assert not frozen.backbone.training and len(frozen.param_groups(0.1, 1e-4, 10.0)) == 2
