"""Dataset readers (VOC, COCO, custom CSV) and ``csdseg prepare``, on small real-layout fixtures."""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csdseg.data.classes import COCO_CLASSES, VOC_CLASSES
from csdseg.data.coco import COCOSource, decode_coco_id
from csdseg.data.custom import CustomSource
from csdseg.data.source import DataError
from csdseg.data.voc import BUILTIN, VOCSource, load_label_file
from csdseg.stages import prepare

REAL_MASKS = Path(__file__).resolve().parent / "fixtures" / "voc_masks"
VOC_IDS = ["2007_000032", "2007_000039", "2007_000063", "2007_000068", "2007_000121", "2007_000170"]


def run_prepare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    return prepare.main(parser.parse_args(argv))


def write_jpeg(path: Path, height: int, width: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


# --- VOC ---------------------------------------------------------------------------------------


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    if not REAL_MASKS.is_dir():
        pytest.skip(f"real VOC masks not available at {REAL_MASKS}")
    root = tmp_path / "VOC2012"
    (root / "SegmentationClass").mkdir(parents=True)
    for n, image_id in enumerate(VOC_IDS):
        shutil.copy(REAL_MASKS / f"{image_id}.png", root / "SegmentationClass" / f"{image_id}.png")
        height, width = np.asarray(Image.open(REAL_MASKS / f"{image_id}.png")).shape
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", height, width, seed=n)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(VOC_IDS) + "\n")
    return root


def test_voc_labels_agree_with_real_masks(voc_root: Path) -> None:
    source = VOCSource(voc_root, "train")
    assert source.ids == VOC_IDS
    assert source.label_path == Path(str(BUILTIN / "cls_labels.npy"))
    saw_void = False
    for image_id in VOC_IDS:
        mask = source.load_mask(image_id)
        present = np.unique(mask)
        saw_void |= 255 in present
        from_mask = np.zeros(20, np.float32)
        from_mask[present[(present > 0) & (present < 255)].astype(int) - 1] = 1
        np.testing.assert_array_equal(source.label(image_id), from_mask, err_msg=image_id)
        assert source.load_image(image_id).shape == (*mask.shape, 3)
    assert saw_void, "VOC masks carry 255 void borders"


def test_prepare_voc_from_masks_reproduces_builtin_labels(voc_root: Path) -> None:
    out = voc_root / "derived.npy"
    assert run_prepare(["voc", "--root", str(voc_root), "--from", "masks", "--out", str(out)]) == 0
    derived = np.load(out, allow_pickle=True).item()
    builtin = load_label_file(Path(str(BUILTIN / "cls_labels.npy")), 20)
    assert sorted(derived) == VOC_IDS and all(isinstance(k, str) for k in derived)
    for image_id in VOC_IDS:
        np.testing.assert_array_equal(derived[image_id], builtin[image_id])


def test_prepare_voc_from_xml(tmp_path: Path) -> None:
    xml = ("<annotation><object><name>person</name><part><name>head</name></part></object>"
           "<object><name>dog</name><difficult>1</difficult></object>"
           "<object><name> person </name></object></annotation>")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "2008_000001.xml").write_text(xml)
    (tmp_path / "Annotations" / "2008_000002.xml").write_text("<annotation></annotation>")
    labels = prepare.prepare_voc(tmp_path, "xml")
    expected = np.zeros(20, np.float32)
    expected[[VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]] = 1
    np.testing.assert_array_equal(labels["2008_000001"], expected)
    assert labels["2008_000002"].sum() == 0
    assert set(np.load(tmp_path / "cls_labels.npy", allow_pickle=True).item()) == {"2008_000001", "2008_000002"}


# --- COCO --------------------------------------------------------------------------------------


def uncompressed_rle(binary: np.ndarray) -> dict:
    """Reference encoder: run lengths in column-major order, starting with a run of zeros."""
    flat = binary.flatten(order="F").astype(int)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": list(binary.shape), "counts": counts}


def rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture
def coco_json(tmp_path: Path) -> Path:
    crowd = np.zeros((30, 40), np.uint8)
    crowd[22:28, 25:35] = 1
    zebra_crowd = np.zeros((20, 20), np.uint8)
    zebra_crowd[5:10, 5:15] = 1
    from pycocotools import mask as mask_utils

    compressed = mask_utils.encode(np.asfortranarray(zebra_crowd))
    compressed["counts"] = compressed["counts"].decode("ascii")
    # real COCO category ids, which have gaps: dog is id 18 but the 17th class (index 16)
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                  {"id": 18, "name": "dog"}, {"id": 24, "name": "zebra"}]
    images = [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 30, "width": 40},
              {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "height": 20, "width": 20},
              {"id": 30, "file_name": "COCO_train2014_000000000030.jpg", "height": 10, "width": 10}]
    anns = [  # dog before the larger person: painting in file order would bury the dog
        {"id": 1, "image_id": 9, "category_id": 18, "iscrowd": 0, "segmentation": rect(10, 10, 16, 16)},
        {"id": 2, "image_id": 9, "category_id": 1, "iscrowd": 0, "segmentation": rect(0, 0, 20, 20)},
        {"id": 3, "image_id": 9, "category_id": 1, "iscrowd": 1, "segmentation": uncompressed_rle(crowd)},
        {"id": 4, "image_id": 9, "category_id": 3, "iscrowd": 0, "segmentation": rect(28, 23, 32, 26)},
        {"id": 5, "image_id": 25, "category_id": 24, "iscrowd": 1, "segmentation": compressed},
    ]
    path = tmp_path / "annotations" / "instances_train2014.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    root = tmp_path / "coco"
    for img in images:
        write_jpeg(root / "train2014" / img["file_name"], img["height"], img["width"])
    return path


def onehot80(*names: str) -> np.ndarray:
    vector = np.zeros(80, np.float32)
    vector[[COCO_CLASSES.index(n) for n in names]] = 1
    return vector


def test_prepare_coco_masks_labels_and_lists(coco_json: Path, capsys: pytest.CaptureFixture) -> None:
    root = coco_json.parent.parent / "coco"
    assert run_prepare(["coco", "--root", str(root), "--annotations", str(coco_json), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "1 COCO train2014 image(s) have no class label: 000000000030" in printed

    mask = np.asarray(Image.open(root / "SegmentationClass" / "train2014" / "000000000009.png"))
    assert mask.shape == (30, 40)
    expected = {(3, 3): 1, (12, 12): 17, (25, 26): 255, (24, 30): 3, (5, 35): 0, (15, 5): 1}
    assert {point: int(mask[point]) for point in expected} == expected
    assert set(np.unique(mask).tolist()) == {0, 1, 3, 17, 255}
    zebra = np.asarray(Image.open(root / "SegmentationClass" / "train2014" / "000000000025.png"))
    assert int(zebra[7, 10]) == 255 and int(zebra[2, 2]) == 0 and set(np.unique(zebra).tolist()) == {0, 255}
    assert np.asarray(Image.open(root / "SegmentationClass" / "train2014" / "000000000030.png")).max() == 0

    labels = np.load(root / "cls_labels_coco.npy", allow_pickle=True).item()
    assert sorted(labels) == ["000000000009", "000000000025", "000000000030"]
    np.testing.assert_array_equal(labels["000000000009"], onehot80("person", "car", "dog"))
    np.testing.assert_array_equal(labels["000000000025"], onehot80("zebra"))
    np.testing.assert_array_equal(labels["000000000030"], np.zeros(80, np.float32))
    # built-in train14 order: 25 comes before 9 there; the unannotated 30 is left out
    assert (root / "ImageSets" / "train_labelled.txt").read_text() == "000000000025\n000000000009\n"

    # resumable: a second run keeps the existing PNGs untouched
    png = root / "SegmentationClass" / "train2014" / "000000000009.png"
    os.utime(png, (1, 1))
    prepare.prepare_coco(root, [coco_json], workers=1)
    assert "wrote 0 mask(s), kept 3 existing" in capsys.readouterr().out
    assert png.stat().st_mtime == 1


def test_coco_source_reads_prepared_data(coco_json: Path) -> None:
    root = coco_json.parent.parent / "coco"
    prepare.prepare_coco(root, [coco_json], workers=1)
    source = COCOSource(root, "train_labelled")
    assert source.ids == ["000000000025", "000000000009"] and source.num_classes == 80
    np.testing.assert_array_equal(source.label("000000000009"), onehot80("person", "car", "dog"))
    assert source.image_path("000000000009") == root / "train2014" / "COCO_train2014_000000000009.jpg"
    assert source.has_masks()
    for image_id in source.ids:
        assert source.load_image(image_id).shape[:2] == source.load_mask(image_id).shape
    assert source.load_mask("000000000009")[12, 12] == 17

    (root / "ImageSets" / "all.txt").write_text("000000000009\nCOCO_train2014_000000000030\n")
    with pytest.raises(DataError, match=r"1 image\(s\) have no positive label, e.g. 000000000030.*"
                                        r"use split train_labelled / val_labelled"):
        COCOSource(root, "all")
    with pytest.raises(DataError, match="has no labels for 82780 image"):
        COCOSource(root, "train")  # the built-in train14 list: this fixture labels only 3 images


def test_coco_ids_and_mctformer_style_label_keys(tmp_path: Path) -> None:
    assert decode_coco_id(9) == "000000000009"
    assert decode_coco_id("COCO_val2014_000000000042.jpg") == "000000000042"
    assert decode_coco_id("000000000042") == "000000000042"
    root = tmp_path / "coco"
    write_jpeg(root / "val2014" / "COCO_val2014_000000000042.jpg", 8, 8)
    np.save(root / "keys.npy", {"COCO_val2014_000000000042": onehot80("cat")})
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "mine.txt").write_text("COCO_val2014_000000000042\n")
    source = COCOSource(root, "mine", label_file=str(root / "keys.npy"))
    assert source.ids == ["000000000042"]
    assert source.image_path("000000000042") == root / "val2014" / "COCO_val2014_000000000042.jpg"
    assert source.load_image("000000000042").shape == (8, 8, 3)
    with pytest.raises(DataError, match="cls_labels_coco.npy does not exist; run `csdseg prepare coco"):
        COCOSource(root, "mine")


# --- custom CSV --------------------------------------------------------------------------------


@pytest.fixture
def custom_root(tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    write_jpeg(root / "images" / "a.jpg", 12, 16)
    write_jpeg(root / "images" / "sub" / "b.jpg", 10, 10)
    write_jpeg(root / "c.jpg", 6, 8)
    (root / "train.csv").write_text("image,labels\na.jpg,zebra;apple\nsub/b.jpg, apple \nc.jpg,mango\n")
    (root / "val.csv").write_text("image,labels\nc.jpg,kiwi\n")
    (root / "masks").mkdir()
    Image.fromarray(np.full((12, 16), 3, np.uint8)).save(root / "masks" / "a.png")
    return root


def test_custom_source_reads_csv(custom_root: Path) -> None:
    source = CustomSource(custom_root, "train")  # the split name finds train.csv
    # classes: the sorted union over train.csv and val.csv, so both splits share one order
    assert source.class_names == ["apple", "kiwi", "mango", "zebra"]
    assert source.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(source.labels, [[1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]])
    assert source.image_path("b") == custom_root / "images" / "sub" / "b.jpg"
    assert source.image_path("c") == custom_root / "c.jpg"
    assert source.load_image("a").shape == (12, 16, 3)
    assert source.has_masks() and source.load_mask("a")[0, 0] == 3
    val = CustomSource(custom_root, str(custom_root / "val.csv"))
    assert val.class_names == source.class_names and val.label("c").tolist() == [0, 1, 0, 0]


def test_custom_source_errors(custom_root: Path) -> None:
    (custom_root / "classes.txt").write_text("zebra\napple\nmango\n")
    assert CustomSource(custom_root, "train.csv").class_names == ["zebra", "apple", "mango"]
    with pytest.raises(DataError) as info:
        CustomSource(custom_root, "val.csv")
    assert str(info.value) == (f"{custom_root / 'val.csv'}:2: unknown class 'kiwi'; allowed: zebra, "
                               f"apple, mango (from {custom_root / 'classes.txt'})")
    cases = {
        "image,labels\nmissing.jpg,apple\n":
            f"bad.csv:2: image file missing.jpg not found (looked in {custom_root / 'images'} and {custom_root})",
        "image,labels\na.jpg,apple\na.jpg,zebra\n":
            "bad.csv:3: image id 'a' already appears on line 2; each image needs exactly one row",
        "image,labels\na.jpg,\n": "bad.csv:2: image a.jpg has no labels",
        "a.jpg,apple\n": "bad.csv must start with the header row 'image,labels'",
    }
    for text, message in cases.items():
        (custom_root / "bad.csv").write_text(text)
        with pytest.raises(DataError) as info:
            CustomSource(custom_root, "bad.csv")
        assert message in str(info.value)
    with pytest.raises(DataError, match="label CSV 'nope' not found"):
        CustomSource(custom_root, "nope")
