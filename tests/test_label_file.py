"""The label PNG (csdseg.files.labels): round trip, refused writes, clear read errors, one owner."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csdseg.data.source import DataError
from csdseg.files.labels import LabelFileError, read_label_png, save_label_png
from csdseg.report.visualize import PALETTE

REPO = Path(__file__).resolve().parents[1]


def _labels(h: int = 7, w: int = 9) -> np.ndarray:
    labels = (np.arange(h * w).reshape(h, w) % 4).astype(np.uint8)
    labels[0, 0] = 255
    return labels


def test_round_trip_is_a_voc_palette_png(tmp_path):
    labels = _labels()
    path = tmp_path / "a.png"
    save_label_png(path, labels, num_classes=3)
    with Image.open(path) as png:
        assert png.mode == "P"
        assert np.array_equal(np.asarray(png.getpalette(), np.uint8).reshape(-1, 3), PALETTE)
    back = read_label_png(path, num_classes=3, size=(7, 9))
    assert back.dtype == np.uint8 and np.array_equal(back, labels)
    assert not list(tmp_path.glob(".*.tmp"))  # written through csdseg.files.atomic's atomic helpers


def test_l_mode_pngs_read_too(tmp_path):
    Image.fromarray(_labels(), mode="L").save(tmp_path / "l.png")
    assert np.array_equal(read_label_png(tmp_path / "l.png", 3), _labels())


@pytest.mark.parametrize("labels, problem", [
    (np.full((4, 4), 5, np.uint8), r"holds values \[5\] outside 0..3 and 255"),
    (np.full((4, 4), -1, np.int64), r"holds values \[-1\] outside 0..3 and 255"),
    (np.zeros((4, 4), np.float32), "must hold integer class indices, got float32"),
    (np.zeros((4, 4, 3), np.uint8), r"must be a single-channel \[H, W\] map"),
])
def test_bad_maps_are_refused_before_writing(tmp_path, labels, problem):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=f"^refusing to write label PNG {re.escape(str(path))}: "
                                         f"the map {problem}"):
        save_label_png(path, labels, num_classes=3)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_bad_values_on_read_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "colour.png"
    Image.fromarray(np.full((4, 4), 128, np.uint8), mode="L").save(path)
    with pytest.raises(LabelFileError) as err:
        read_label_png(path, num_classes=20, made_by="make-sem-seg", what="pseudo-mask")
    assert str(err.value) == (
        f"pseudo-mask {path} holds values [128] outside 0..20 and 255; label PNGs hold class "
        "indices (0 background, 1..K, 255 void), not colours; delete it and rerun "
        "`csdseg make-sem-seg` (which remakes only the missing files)")
    assert isinstance(err.value, DataError)  # the CLI prints it as one line


def test_wrong_size_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "x.png"
    save_label_png(path, _labels(7, 9))
    with pytest.raises(LabelFileError) as err:
        read_label_png(path, size=(9, 7), made_by="make-ir-label", what="confident labels")
    assert str(err.value) == (
        f"confident labels {path} is 7 x 9 (H x W) but its image is 9 x 7; the labels were made "
        "for other images; delete it and rerun `csdseg make-ir-label` (which remakes only the "
        "missing files)")


def test_missing_corrupt_and_rgb_files(tmp_path):
    with pytest.raises(LabelFileError, match=r"does not exist; run `csdseg make-ir-label` first$"):
        read_label_png(tmp_path / "none.png", made_by="make-ir-label")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(LabelFileError, match=r"^label PNG .*junk.png is corrupt or not a PNG"):
        read_label_png(tmp_path / "junk.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(LabelFileError, match=r"must be a single-channel \[H, W\] map \(palette or "
                                             r"L PNG\), got shape \(4, 4, 3\); replace it"):
        read_label_png(tmp_path / "rgb.png")



def _stage_modules() -> set[str]:
    """The modules under csdseg/stages that are commands (they define HELP)."""
    return {p.stem for p in (REPO / "csdseg/stages").glob("*.py")
            if re.search(r"^HELP = ", p.read_text(encoding="utf-8"), re.M)}


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_no_stage_imports_another_stage():
    """Stages share code through library modules (csdseg.files.labels,
    csdseg.refiners.ir_labels...); only the commands that run other stages (pipeline, demo) import them."""
    stages = _stage_modules()
    for path in sorted((REPO / "csdseg/stages").glob("*.py")):
        if path.stem in ("pipeline", "demo"):
            continue
        bad = {n for n in _imported(path) if n.startswith("csdseg.stages.")
               and n.split(".")[2] in stages and n.split(".")[2] != path.stem}
        assert not bad, f"{path.name} imports the stage(s) {sorted(bad)}"


def test_label_pngs_have_one_reader_and_writer():
    """No other module defines a label PNG reader or writer of its own."""
    for path in [*(REPO / "csdseg").rglob("*.py"), *(REPO / "bench").glob("*.py"),
                 *(REPO / "experiments").glob("*.py")]:
        if path.relative_to(REPO).as_posix() != "csdseg/files/labels.py":
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"^def (save|read)_label_png", text, re.M), path
