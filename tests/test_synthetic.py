"""The synthetic dataset: determinism, VOC compatibility, label statistics, layouts, CLI."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csdseg.config import ConfigError
from csdseg.data.classes import VOC_CLASSES, voc_palette
from csdseg.data.source import DataError
from csdseg.data import synthetic
from csdseg.data.synthetic import CLASS_CONTEXT, CONTEXTS, choose_context, generate
from csdseg.data.synthetic_layouts import (AREA_RANGE, add_void_border, load_layout, partition_layouts,
                                           procedural_layout, sample_classes, voc_label_vectors)
from csdseg.data.synthetic_textures import render_class, render_context
from csdseg.data.voc import VOCSource

REAL_MASKS = Path(__file__).resolve().parent / "fixtures" / "voc_masks"
N_TRAIN, N_VAL, SIZE = 160, 40, 48
# generate(_, 6, 3, 40, seed=0) before real layouts were split between train and val: masks,
# labels, contexts, lists and synth.json (JPEG bytes depend on the encoder build, so not those)
# Exact across CPUs on purpose: masks come from polygon points rounded to 1/16 px, so another
# CPU's last-bit sin/cos could change them only at a rounding tie (docs/reliability.md).
PROCEDURAL_DIGEST = "2daf5443389c234f5b489ab4504493e9b8cd04129b3167e1a3400faf67d45d2b"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lossless_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".jpg"):
        digest.update(str(path.relative_to(root)).encode())
        if path.suffix == ".png":
            with Image.open(path) as png:
                digest.update(np.asarray(png).tobytes())
        elif path.suffix == ".npy":
            table = np.load(path, allow_pickle=True).item()
            for key in sorted(table):
                digest.update(key.encode() + table[key].astype(np.float32).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _make_layouts(folder: Path, count: int, size: int = 64) -> None:
    """``count`` palette label PNGs, each a distinct class box with a void rim (VOC style)."""
    folder.mkdir()
    for k in range(count):
        label = np.zeros((size, size), np.uint8)
        top = 4 + 3 * k
        label[top - 1:top + 25, 9:41] = 255
        label[top:top + 24, 10:40] = k % 20 + 1
        png = Image.fromarray(label, mode="P")
        png.putpalette(voc_palette().reshape(-1).tolist())
        png.save(folder / f"layout_{k:02d}.png")


def _capped_single_share() -> float:
    counts = voc_label_vectors().sum(1)
    return float((counts == 1).mean())


def _pair_counts(labels: np.ndarray) -> np.ndarray:
    labels = labels.astype(np.float64)
    return (labels.T @ labels)[np.triu_indices(labels.shape[1], 1)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "a", N_TRAIN, N_VAL, SIZE, seed=7, workers=2)


def test_same_seed_gives_identical_bytes_for_any_worker_count(dataset: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "b", N_TRAIN, N_VAL, SIZE, seed=7, workers=1)
    first, second = _files(dataset), _files(again)
    assert len(first) == 2 * (N_TRAIN + N_VAL) + 6  # + 3 lists, labels, contexts, synth.json
    assert first == second
    other = _files(generate(tmp_path / "c", N_TRAIN, N_VAL, SIZE, seed=8, workers=1))
    assert other.keys() == first.keys()
    differing = [k for k in first if k.endswith(".jpg") and first[k] != other[k]]
    assert len(differing) == N_TRAIN + N_VAL


def test_voc_source_reads_it_unchanged(dataset: Path) -> None:
    train, val, aug = (VOCSource(dataset, s) for s in ("train", "val", "train_aug"))
    assert (len(train), len(val)) == (N_TRAIN, N_VAL)
    assert aug.ids == train.ids and train.ids[0] == "syn_train_000001" and val.ids[-1] == "syn_val_000040"
    assert train.labels.dtype == np.float32 and train.labels.shape == (N_TRAIN, 20)
    assert train.load_image(train.ids[0]).shape == (SIZE, SIZE, 3)
    assert train.has_masks() and train.load_mask(train.ids[0]).shape == (SIZE, SIZE)
    raw = np.load(dataset / "cls_labels.npy", allow_pickle=True).item()
    assert all(isinstance(k, str) for k in raw) and len(raw) == N_TRAIN + N_VAL
    contexts = train.contexts()
    assert contexts["contexts"] == CONTEXTS and len(CONTEXTS) == 8
    assert contexts["class_context"] == CLASS_CONTEXT and contexts["p_context"] == 0.8
    assert set(contexts["images"]) == set(train.ids) | set(val.ids)
    with Image.open(dataset / "SegmentationClass" / f"{train.ids[0]}.png") as png:
        assert png.mode == "P"
        assert np.array_equal(np.asarray(png.getpalette(), np.uint8).reshape(-1, 3), voc_palette()[:256])


def test_masks_hold_exactly_the_labelled_classes(dataset: Path) -> None:
    void = []
    for split in ("train", "val"):
        source = VOCSource(dataset, split)
        for image_id in source.ids:
            mask = source.load_mask(image_id)
            labelled = set((np.flatnonzero(source.label(image_id)) + 1).tolist())
            assert set(np.unique(mask).tolist()) - {0, 255} == labelled, image_id
            assert 1 <= len(labelled) <= 4
            for cls in labelled:  # occlusion is partial: every class stays clearly visible
                assert (mask == cls).mean() >= 0.01, (image_id, cls)
            void.append((mask == 255).mean())
    assert 0.01 < np.mean(void) < 0.08  # a 1-px rim: ~5% of a 48-px image, ~2% at 128 px


def test_class_sets_follow_voc_train_aug(dataset: Path) -> None:
    expected = _capped_single_share()
    assert abs(expected - 0.59) < 0.01
    rng = np.random.default_rng(0)
    sampled = np.zeros((5000, 20), bool)
    for row in sampled:
        row[sample_classes(rng)] = True
    assert sampled.sum(1).max() == 4
    sigma = np.sqrt(expected * (1 - expected) / len(sampled))
    assert abs((sampled.sum(1) == 1).mean() - expected) < 4 * sigma
    assert np.corrcoef(_pair_counts(sampled), _pair_counts(voc_label_vectors()))[0, 1] > 0.95
    labels = VOCSource(dataset, "train").labels
    sigma = np.sqrt(expected * (1 - expected) / len(labels))
    assert abs((labels.sum(1) == 1).mean() - expected) < 4 * sigma
    pairs = labels.T @ labels
    np.fill_diagonal(pairs, 0)
    assert VOC_CLASSES[int(pairs.sum(1).argmax())] == "person"
    assert np.corrcoef(_pair_counts(labels), _pair_counts(voc_label_vectors()))[0, 1] > 0.6


def test_background_is_a_present_class_context_with_p_context(dataset: Path) -> None:
    source = VOCSource(dataset, "train")
    images = source.contexts()["images"]
    hits, chance = [], []
    for image_id in source.ids:
        classes = np.flatnonzero(source.label(image_id))
        present = {CLASS_CONTEXT[c] for c in classes}
        hits.append(images[image_id] in present)
        # chance of a hit when the non-preferred branch is taken, averaged over the chosen class
        chance.append(np.mean([len(present - {CLASS_CONTEXT[c]}) / 7 for c in classes]))
    expected = 0.8 + 0.2 * np.mean(chance)
    sigma = np.sqrt(expected * (1 - expected) / len(hits))
    assert abs(np.mean(hits) - expected) < 4 * sigma
    rng = np.random.default_rng(1)
    draws = np.array([choose_context(rng, [9], 0.8) for _ in range(4000)])  # cow -> grass
    assert abs((draws == CONTEXTS.index("grass")).mean() - 0.8) < 0.03
    assert np.bincount(draws[draws != 2], minlength=8)[[0, 1, 3, 4, 5, 6, 7]].min() > 60
    assert all(choose_context(rng, [9], 0.0) != 2 for _ in range(200))


def test_procedural_objects_cover_5_to_40_percent() -> None:
    for size in (48, 64):
        for index in range(150):
            rng = np.random.default_rng([3, size, index])
            classes = sample_classes(rng)
            objects = procedural_layout(rng, size, classes)
            assert len(classes) <= len(objects) <= 4
            assert {c for c, _ in objects} == set(classes)
            owner = np.full((size, size), -1)
            for n, (_, mask) in enumerate(objects):
                assert AREA_RANGE[0] <= mask.mean() <= AREA_RANGE[1], (size, index, mask.mean())
                owner[mask] = n
            visible = [(owner == n).sum() / mask.sum() for n, (_, mask) in enumerate(objects)]
            assert min(visible) >= 0.25


def test_void_border_is_the_inner_rim_of_objects() -> None:
    label = np.zeros((8, 8), np.uint8)
    label[2:6, 2:6] = 3
    label[2:6, 6] = 5
    expected = label.copy()
    rim = np.zeros((8, 8), bool)
    rim[2:6, 2:7] = True
    rim[3:5, 3:5] = False
    expected[rim] = 255
    assert np.array_equal(add_void_border(label), expected)


def test_textures_couple_classes_with_their_context() -> None:
    rng = np.random.default_rng(0)
    mean = lambda image: image.reshape(-1, 3).mean(0)  # noqa: E731
    cls = np.array([np.mean([mean(render_class(c, rng, 32)) for _ in range(6)], 0) for c in range(20)])
    ctx = np.array([np.mean([mean(render_context(c, rng, 32)) for _ in range(6)], 0) for c in range(8)])
    home = np.array(CLASS_CONTEXT)
    between = np.linalg.norm(cls[:, None] - cls[None], axis=2)
    same = (home[:, None] == home[None]) & ~np.eye(20, dtype=bool)
    assert between[same].mean() < between[home[:, None] != home[None]].mean()
    to_ctx = np.linalg.norm(cls[:, None] - ctx[None], axis=2)
    own = to_ctx[np.arange(20), home]
    assert own.mean() < (to_ctx.sum(1) - own).mean() / 7


@pytest.mark.skipif(not REAL_MASKS.is_dir(), reason="real VOC masks not available")
def test_layouts_from_real_masks(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    for path in sorted(REAL_MASKS.glob("*.png"))[:5]:
        shutil.copy(path, masks / path.name)
    resized = [load_layout(p, 64) for p in sorted(masks.glob("*.png"))]
    root = generate(tmp_path / "out", 10, 4, 64, seed=2, layouts_from=masks, workers=1)
    for split in ("train", "val"):
        source = VOCSource(root, split)
        for image_id in source.ids:
            mask = source.load_mask(image_id)
            assert any(np.array_equal(mask, real) for real in resized), image_id
            labelled = set((np.flatnonzero(source.label(image_id)) + 1).tolist())
            assert set(np.unique(mask).tolist()) - {0, 255} == labelled
    with pytest.raises(DataError, match="holds no .png masks"):
        generate(tmp_path / "bad", 2, 1, 64, seed=2, layouts_from=tmp_path / "out")


def test_layouts_from_holds_out_layouts_in_val(tmp_path: Path) -> None:
    _make_layouts(tmp_path / "masks", 8)
    pools = partition_layouts(tmp_path / "masks", 12, 4, seed=5)
    assert [len(pools["train"]), len(pools["val"])] == [6, 2]  # round(8 * 4 / 16) = 2 for val
    assert not set(pools["train"]) & set(pools["val"])
    assert pools == partition_layouts(tmp_path / "masks", 12, 4, 5)  # the seed alone decides
    assert len({tuple(partition_layouts(tmp_path / "masks", 12, 4, s)["val"]) for s in range(6)}) > 1
    root = generate(tmp_path / "out", 12, 4, 48, seed=5, layouts_from=tmp_path / "masks", workers=2)
    record = json.loads((root / "layouts.json").read_text())
    assert record["pools"] == {k: [p.name for p in v] for k, v in pools.items()}
    resized = {p.name: load_layout(p, 48) for p in sorted((tmp_path / "masks").glob("*.png"))}
    used = {}
    for split in ("train", "val"):
        source = VOCSource(root, split)
        used[split] = {record["images"][i] for i in source.ids}
        assert used[split] <= set(record["pools"][split])
        for image_id in source.ids:  # the record is the mask the image really shows
            assert np.array_equal(source.load_mask(image_id), resized[record["images"][image_id]])
    assert used["train"] and used["val"] and not used["train"] & used["val"]
    assert json.loads((root / "synth.json").read_text())["layout_split"] == synthetic.LAYOUT_SPLIT
    _make_layouts(tmp_path / "few", 3)
    with pytest.raises(ValueError, match=r"few: 3 .png masks .* 20 train : 1 val .* 3 train and 0 val"):
        generate(tmp_path / "bad", 20, 1, 48, seed=0, layouts_from=tmp_path / "few")
    assert not (tmp_path / "bad").exists()


def test_procedural_default_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("procedural layouts must not partition a layout folder")

    monkeypatch.setattr(synthetic, "partition_layouts", refuse)
    root = generate(tmp_path / "d", 6, 3, 40, seed=0, workers=1)
    assert not (root / "layouts.json").exists() and "layout_split" not in (root / "synth.json").read_text()
    assert _lossless_digest(root) == PROCEDURAL_DIGEST


def test_cli_writes_resumes_and_refuses_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from csdseg.cli import main

    out = tmp_path / "cli"
    argv = ["synth", str(out), "--n-train", "6", "--n-val", "3", "--size", "40",
            "--seed", "1", "--workers", "1"]
    assert main(argv) == 0
    for name in ("JPEGImages/syn_train_000006.jpg", "SegmentationClass/syn_val_000003.png",
                 "ImageSets/Segmentation/train_aug.txt", "cls_labels.npy", "contexts.json"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "contexts.json").read_text())["images"]) == 9
    before = _files(out)
    (out / "JPEGImages" / "syn_train_000002.jpg").unlink()
    assert main(argv) == 0 and _files(out) == before  # resumed: the missing image comes back
    assert main(argv[:-3] + ["2", "--workers", "1"]) == 2
    assert "already holds a synthetic dataset made with other settings" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--size must be >= 32 pixels, got 16"):
        generate(tmp_path / "tiny", 2, 1, 16, seed=0)
