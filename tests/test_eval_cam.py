"""eval-cam end to end on a tiny VOC-layout dataset, and the context over-activation figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csdseg import evaluation
from csdseg.cli import main
from csdseg.data.classes import VOC_CLASSES, voc_palette
from csdseg.data.source import DataError, Source
from csdseg.files.cam import load_cam, save_cam

# id -> (classes present as 1-based labels, background context)
IMAGES = {"img_a": ([1, 15], 0), "img_b": ([8], 1), "img_c": ([1], 2)}
CONTEXTS = {"contexts": ["sky", "sofa", "grass"],
            "class_context": [0] + [2] * 6 + [1] + [2] * 12,  # aeroplane: sky, cat: sofa
            "images": {i: c for i, (_, c) in IMAGES.items()}}


def _mask(rng: np.random.Generator, classes: list[int], h: int = 18, w: int = 22) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    for n, c in enumerate(classes):
        y, x = 2 + 6 * n, 3 + 4 * n
        mask[y:y + 6, x:x + 9] = c
        mask[y - 1, x:x + 9] = 255  # a void border, as in VOC
    return mask


@pytest.fixture()
def dataset(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    root = tmp_path / "VOC"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    labels, masks = {}, {}
    for image_id, (classes, _) in IMAGES.items():
        mask = _mask(rng, classes)
        masks[image_id] = mask
        Image.fromarray(rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg")
        png = Image.fromarray(mask, mode="P")
        png.putpalette(voc_palette().reshape(-1).tolist())
        png.save(root / "SegmentationClass" / f"{image_id}.png")
        vector = np.zeros(len(VOC_CLASSES), np.float32)
        vector[np.array(classes) - 1] = 1
        labels[image_id] = vector
    np.save(root / "cls_labels.npy", labels, allow_pickle=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(IMAGES) + "\n")
    (root / "contexts.json").write_text(json.dumps(CONTEXTS))
    cam_dir = tmp_path / "runs" / "t" / "cam"
    args = [f"data.root={root}", f"run_root={tmp_path / 'runs'}", "name=t"]
    return {"root": root, "masks": masks, "cam_dir": cam_dir, "args": args,
            "report": tmp_path / "runs" / "t" / "reports" / "eval_cam_train.json"}


def _write_cams(dataset: dict, perfect: bool) -> None:
    for image_id, (classes, _) in IMAGES.items():
        mask = dataset["masks"][image_id]
        keys = np.array(classes) - 1
        high_res = np.stack([(mask == c) for c in classes]).astype(np.float32)
        if not perfect:
            high_res[:] = 0
        save_cam(dataset["cam_dir"] / f"{image_id}.npy", keys, high_res[:, ::4, ::4], high_res)


def test_perfect_cams_score_one_and_json_matches_report(dataset, capsys):
    _write_cams(dataset, perfect=True)
    assert main(["eval-cam", *dataset["args"], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["miou"] == 1.0 and printed["threshold"] == 0.15 and printed["n_images"] == 3
    assert {k for k, v in printed["per_class"].items() if v is not None} == {
        "background", "aeroplane", "cat", "person"}
    assert [s["threshold"] for s in printed["sweep"]][:3] == [0.0, 0.01, 0.02]
    assert len(printed["sweep"]) == 61 and all(s["miou"] == 1.0 for s in printed["sweep"])
    assert printed["best"]["threshold"] == 0.0 and printed["best"]["miou"] == 1.0
    assert printed["context"]["matched"] == 0.0 and printed["context"]["n_images"] == 3
    # img_a {aeroplane, person} is multi-label, img_b and img_c single-label
    assert printed["n_single"] == 2 and printed["n_multi"] == 1
    assert printed["single_miou"] == printed["multi_miou"] == 1.0
    assert printed["single_multi_gap"] == 0.0 and printed["best"]["single_multi_gap"] == 0.0
    mask = dataset["masks"]["img_a"]
    assert printed["cooccurrence"] == {"mean": 0.0, "pairs": 2, "cooccurring_pairs": 2, "worst": [
        {"a": "aeroplane", "b": "person", "share": 0.0, "pixels": int((mask == 1).sum())},
        {"a": "person", "b": "aeroplane", "share": 0.0, "pixels": int((mask == 15).sum())}]}
    assert json.loads(dataset["report"].read_text()) == printed


def test_zero_cams_only_background_right_and_table(dataset, capsys):
    _write_cams(dataset, perfect=False)
    assert main(["eval-cam", *dataset["args"]]) == 0
    out = capsys.readouterr().out
    report = json.loads(dataset["report"].read_text())
    masks = np.stack(list(dataset["masks"].values()))
    bg, valid = (masks == 0).sum(), (masks != 255).sum()
    assert report["per_class"]["background"] == pytest.approx(bg / valid)
    assert report["per_class"]["aeroplane"] == 0.0 and report["per_class"]["cat"] == 0.0
    assert report["miou"] == pytest.approx(bg / valid / 4)
    assert report["context"]["matched"] == 0.0
    assert "IoU@0.15" in out and "mIoU" in out and f"{100 * bg / valid / 4:6.2f}" in out
    assert "mIoU @0.15 by image-level labels: single-label" in out
    assert "co-occurrence confusion @0.15" in out and "over 2 pairs" in out
    # all-background predictions: no class-a pixel is ever called b
    assert report["cooccurrence"]["mean"] == 0.0


def test_missing_cam_and_missing_cam_dir_are_clear_errors(dataset, capsys):
    assert main(["eval-cam", *dataset["args"]]) == 2
    assert "t/cam is missing or empty; run `csdseg make-cam` first" in capsys.readouterr().err
    _write_cams(dataset, perfect=True)
    (dataset["cam_dir"] / "img_b.npy").unlink()
    assert main(["eval-cam", *dataset["args"]]) == 2
    err = capsys.readouterr().err
    assert f"{dataset['cam_dir'] / 'img_b.npy'} does not exist (1 of 3 files missing); " \
           "run `csdseg make-cam` first" in err


def test_cam_size_mismatch_names_both_files(dataset, capsys):
    _write_cams(dataset, perfect=True)
    save_cam(dataset["cam_dir"] / "img_a.npy", [0], np.zeros((1, 2, 2)), np.zeros((1, 5, 5)))
    assert main(["eval-cam", *dataset["args"]]) == 2
    err = capsys.readouterr().err
    assert "img_a.npy has size (5, 5) but the mask" in err
    assert "SegmentationClass/img_a.png has size (18, 22)" in err


class TwoImages(Source):
    """Two 'a' images: i1 on a's preferred context (matched), i2 on another (other)."""

    def __init__(self) -> None:
        self.ids = ["i1", "i2"]
        self.class_names = ["a", "b"]
        self.labels = np.array([[1, 0], [1, 0]], np.float32)
        self.gt = {"i1": np.array([[0, 0, 0, 0], [1, 1, 0, 255]]),
                   "i2": np.array([[0, 0], [1, 0]])}

    def load_mask(self, image_id: str) -> np.ndarray:
        return self.gt[image_id]

    def contexts(self) -> dict:
        return {"contexts": ["sea", "grass"], "class_context": [0, 1],
                "images": {"i1": 0, "i2": 1}}


def test_context_over_activation_by_hand():
    preds = {"i1": np.array([[1, 1, 0, 2], [1, 1, 0, 0]]),  # bg pixels: a, a, bg, b, bg
             "i2": np.array([[1, 0], [1, 0]])}  # bg pixels: a, bg, bg
    report = evaluation.evaluate_labels(TwoImages(), ["i1", "i2"], preds.__getitem__,
                                        progress=False)
    ctx = report["context"]
    assert ctx["matched"] == pytest.approx(3 / 5) and ctx["other"] == pytest.approx(1 / 3)
    assert ctx["ratio"] == pytest.approx((3 / 5) / (1 / 3))
    assert ctx["matched_bg_pixels"] == 5 and ctx["other_bg_pixels"] == 3
    a = ctx["per_class"]["a"]
    assert a["matched"] == pytest.approx(2 / 5) and a["other"] == pytest.approx(1 / 3)
    assert a["ratio"] == pytest.approx(1.2)
    assert ctx["per_class"]["b"] == {"matched": None, "other": None, "ratio": None}
    # gt: bg 8 pixels (5 + 3), a 3; predictions: bg 4 right, a 3 right + 3 wrong, b 1 wrong
    assert report["per_class"]["a"] == pytest.approx(3 / 6)
    assert report["per_class"]["background"] == pytest.approx(4 / 8)
    assert report["per_class"]["b"] == 0.0


def test_cam_sweep_context_matches_label_maps_at_each_threshold(dataset):
    """The one-pass CAM path gives the same report as thresholding each CAM by hand."""
    from csdseg.config import load_config
    from csdseg.data import build_source
    from csdseg.evaluation.metrics import cam_to_labels

    rng = np.random.default_rng(1)
    for image_id, (classes, _) in IMAGES.items():
        high_res = (rng.integers(0, 40, (len(classes), 18, 22)) * 0.01).astype(np.float32)
        save_cam(dataset["cam_dir"] / f"{image_id}.npy", np.array(classes) - 1,
                 high_res[:, ::4, ::4], high_res)
    source = build_source(load_config(None, dataset["args"]).data, "train")
    report = evaluation.evaluate_cams(source, source.ids, dataset["cam_dir"], 0.15,
                                      [0.1, 0.2, 0.3], progress=False)

    def labels_at(t: float):
        def predict(image_id: str) -> np.ndarray:
            record = load_cam(dataset["cam_dir"] / f"{image_id}.npy", 20)
            return cam_to_labels(record.high_res, record.keys, t)
        return evaluation.evaluate_labels(source, source.ids, predict, progress=False)

    fixed = labels_at(0.15)
    groups = ("single_miou", "multi_miou", "single_multi_gap", "cooccurrence")
    for key in ("miou", "per_class", "context", "pixel_accuracy", "n_single", "n_multi", *groups):
        assert report[key] == fixed[key]
    best = labels_at(report["best"]["threshold"])
    assert report["best"]["context"] == best["context"]
    for key in groups:
        assert report["best"][key] == best[key]
    assert report["cooccurrence"]["pairs"] == 2 and report["n_multi"] == 1
    assert report["single_miou"] is not None and report["multi_miou"] is not None
    assert [s["miou"] for s in report["sweep"]] == [labels_at(t)["miou"] for t in (0.1, 0.2, 0.3)]


def test_evaluate_labels_folder_errors(tmp_path):
    source = TwoImages()
    source.mask_path = lambda i: Path(f"/gt/{i}.png")  # type: ignore[method-assign]
    Image.fromarray(np.zeros((2, 4), np.uint8), mode="L").save(tmp_path / "i1.png")
    with pytest.raises(DataError, match=r"i2.png does not exist .*run `csdseg make-sem-seg`"):
        evaluation.evaluate_labels(source, ["i1", "i2"], tmp_path, progress=False)
    Image.fromarray(np.zeros((3, 2), np.uint8), mode="L").save(tmp_path / "i2.png")
    with pytest.raises(DataError, match=r"i2.png has size \(3, 2\) but the mask /gt/i2.png"):
        evaluation.evaluate_labels(source, ["i1", "i2"], tmp_path, progress=False)


class LabelGroups(Source):
    """Classes a, b, c, d: two single-label, four multi-label and one class-less image."""

    GT = {"s1": [[1, 1], [0, 0]], "s2": [[2, 2], [0, 0]],
          "m1": [[1, 1, 1, 1], [2, 2, 0, 0]], "m2": [[1, 1], [3, 0]], "m3": [[2, 0]],
          "m4": [[4, 4, 3]], "z": [[0, 0]]}
    PRED = {"s1": [[1, 0], [0, 0]], "s2": [[2, 2], [0, 1]],
            "m1": [[2, 2, 2, 1], [2, 1, 0, 0]],  # a -> b 3 of 4, b -> a 1 of 2
            "m2": [[3, 1], [3, 0]],  # a -> c 1 of 2, c -> a 0 of 1
            "m3": [[3, 0]],  # b -> c 1 of 1; c -> b: no c pixel, left out of the mean
            "m4": [[4, 3, 3]],  # d -> c 1 of 2, c -> d 0 of 1
            "z": [[0, 1]]}
    LABELS = {"s1": "a", "s2": "b", "m1": "ab", "m2": "ac", "m3": "bc", "m4": "cd", "z": ""}

    def __init__(self) -> None:
        self.ids = list(self.GT)
        self.class_names = ["a", "b", "c", "d"]
        self.labels = np.array([[n in self.LABELS[i] for n in "abcd"] for i in self.ids],
                               np.float32)

    def load_mask(self, image_id: str) -> np.ndarray:
        return np.array(self.GT[image_id])


def test_single_multi_miou_and_cooccurrence_by_hand():
    source = LabelGroups()
    report = evaluation.evaluate_labels(source, source.ids,
                                        lambda i: np.array(LabelGroups.PRED[i]), progress=False)
    assert report["n_single"] == 2 and report["n_multi"] == 4 and report["n_images"] == 7
    # single (s1, s2): IoU bg 3/5, a 1/3, b 1 (c, d absent)
    single = (3 / 5 + 1 / 3 + 1) / 3
    # multi (m1..m4): bg 4/4, a 2/7, b 1/6, c 2/5, d 1/2
    multi = (1 + 2 / 7 + 1 / 6 + 2 / 5 + 1 / 2) / 5
    assert report["single_miou"] == pytest.approx(single)
    assert report["multi_miou"] == pytest.approx(multi)
    assert report["single_multi_gap"] == pytest.approx(single - multi)
    co = report["cooccurrence"]
    # a>b .75, b>a .5, a>c .5, c>a 0, b>c 1, d>c .5, c>d 0; c>b co-occurs but has no c pixel
    assert co["pairs"] == 7 and co["cooccurring_pairs"] == 8
    assert co["mean"] == pytest.approx(3.25 / 7)
    assert co["worst"] == [  # largest share first, ties by class names
        {"a": "b", "b": "c", "share": 1.0, "pixels": 1},
        {"a": "a", "b": "b", "share": 0.75, "pixels": 4},
        {"a": "a", "b": "c", "share": 0.5, "pixels": 2},
        {"a": "b", "b": "a", "share": 0.5, "pixels": 2},
        {"a": "d", "b": "c", "share": 0.5, "pixels": 2}]
    json.dumps(report, allow_nan=False)
    text = evaluation.format_report(report)
    assert f"single-label {100 * single:.2f} vs multi-label {100 * multi:.2f}" in text
    assert f"mean {100 * 3.25 / 7:.2f}% over 7 pairs; worst b->c 100.00%, a->b 75.00%" in text


def test_no_multi_label_image_gives_nulls():
    source = LabelGroups()
    ids = ["s1", "s2", "z"]
    report = evaluation.evaluate_labels(source, ids, lambda i: np.array(LabelGroups.PRED[i]),
                                        progress=False)
    assert report["n_single"] == 2 and report["n_multi"] == 0
    assert report["multi_miou"] is None and report["single_multi_gap"] is None
    assert report["cooccurrence"] == {"mean": None, "pairs": 0, "cooccurring_pairs": 0,
                                      "worst": []}
    json.dumps(report, allow_nan=False)
    assert "multi-label - (gap -)" in evaluation.format_report(report)
