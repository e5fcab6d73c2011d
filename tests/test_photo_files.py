"""Real photo folders (issue 28, section 7): what the reader, make-cam and ``csdseg predict`` do
with each kind of file a user's folder may hold -- handle it, or refuse before any work with one
line naming the file and the fix. Image modes already covered elsewhere (grayscale, palette,
RGBA, CMYK, 16-bit: tests/test_bad_inputs*.py) go through make-cam and predict here."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from csdseg.files.cam import load_cam
from csdseg.data import build_source
from csdseg.data.source import DATASET_FIX, DataError, check_image, read_image
from csdseg.engine.checkpoint import save_final
from csdseg.runs import RunDir
from csdseg.stages import make_cam, predict
from csdseg.stages.cam_model import build_cam_model
from test_bad_inputs import cli_error
from test_predict import _run, checkpoint  # noqa: F401 (checkpoint is a fixture)

HUGE = (4000, 6000)  # a 24-megapixel photo, height x width


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colours (JPEG-friendly), uint8 [h, w, 3]."""
    coarse = np.random.default_rng(seed).integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))


def _sixteen_bit(path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 65536, (40, 50), dtype=np.uint16))


def _turned(path: Path) -> None:
    """Stored 30 x 50, with an EXIF tag saying "rotate 90 degrees clockwise to view"."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(30, 50)).save(path, exif=exif)


def _transparent(path: Path) -> None:
    rgba = np.dstack([_photo(40, 50), np.full((40, 50), 255, np.uint8)])
    rgba[:5, :5, 3] = 0
    Image.fromarray(rgba, "RGBA").save(path)


GOOD = {  # name -> (writer, stored height x width)
    "bmp.bmp": (lambda p: Image.fromarray(_photo(40, 50)).save(p), (40, 50)),
    "gray.jpg": (lambda p: Image.fromarray(_photo(40, 50)).convert("L").save(p), (40, 50)),
    "palette.png": (lambda p: Image.fromarray(_photo(40, 50)).convert("P").save(p), (40, 50)),
    "rgba.png": (_transparent, (40, 50)),
    "cmyk.jpg": (lambda p: Image.fromarray(_photo(40, 50)).convert("CMYK").save(p), (40, 50)),
    "deep.png": (_sixteen_bit, (40, 50)),
    "turned.jpg": (_turned, (30, 50)),
    "tiny.png": (lambda p: Image.fromarray(_photo(16, 16)).save(p), (16, 16)),
}


def _cut_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_photo(64, 64)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


BAD = {  # name -> (writer, how its message starts after "image <path> ")
    "empty.jpg": (lambda p: p.write_bytes(b""), "is an empty file (0 bytes); "),
    "notes.jpg": (lambda p: p.write_text("my notes, not a photo\n"),
                  "is not an image file (no format PIL reads starts with b'my notes, not a '); "),
    "cut.jpg": (_cut_jpeg, "is corrupt or truncated (image file is truncated"),
}


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    """A 6000 x 4000 JPEG of one colour: 72 MB to make once, ~100 kB on disk."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.new("RGB", HUGE[::-1], (90, 140, 60)).save(path, quality=80)
    return path


def _folder(root: Path, names: list[str], huge: Path | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    for name in names:
        writer = (GOOD.get(name) or BAD[name])[0]
        writer(root / "images" / name)
    if huge is not None:
        (root / "images" / "huge.jpg").write_bytes(huge.read_bytes())
        names = [*names, "huge.jpg"]
    rows = "".join(f"{n},{'cat;dog' if i % 2 else 'cat'}\n" for i, n in enumerate(names))
    (root / "train.csv").write_text("image,labels\n" + rows)
    return root


# --- the reader --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD))
def test_reader_refuses_empty_non_image_and_truncated_files(tmp_path, name):
    writer, start = BAD[name]
    path = tmp_path / name
    writer(path)
    for read in (read_image, check_image):  # the full read and the cheap scan agree
        with pytest.raises(DataError) as info:
            read(path)
        assert str(info.value).startswith(f"image {path} {start}")
        assert str(info.value).endswith(DATASET_FIX)
        assert "\n" not in str(info.value)


def test_reader_keeps_the_stored_pixel_grid_of_an_exif_rotated_jpeg(tmp_path):
    path = tmp_path / "turned.jpg"
    _turned(path)
    with Image.open(path) as image:
        stored = np.asarray(image.convert("RGB"))
    assert np.array_equal(read_image(path), stored) and stored.shape == (30, 50, 3)
    assert check_image(path) == (30, 50, 6)  # reported, never applied


def test_reader_reads_bmp_exactly(tmp_path):
    rgb = _photo(40, 50)
    Image.fromarray(rgb).save(tmp_path / "x.bmp")
    assert np.array_equal(read_image(tmp_path / "x.bmp"), rgb)


def test_reader_reads_a_24_megapixel_photo_and_scans_it_at_an_eighth(huge):
    assert check_image(huge) == (*HUGE, 1)
    assert read_image(huge).shape == (*HUGE, 3)  # 72 MB: the reader itself sets no limit


def test_reader_refuses_a_decompression_bomb_in_one_line(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    path = tmp_path / "bomb.png"  # a header claiming 20000 x 20000, hardly any pixel data
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    with pytest.raises(DataError, match=rf"^image {path} is too large to decode \(.*\); "
                                        "downscale it$"):
        read_image(path)


# --- make-cam ----------------------------------------------------------------------------------

def _cam_config(root: Path, *extra: str):
    cfg = tiny_config(root, root / "runs", "data.dataset=custom", "data.csv=train.csv",
                      "data.infer_split=train", *extra)
    run_dir = RunDir.from_config(cfg)
    if not run_dir.checkpoint("cam").is_file():  # an untrained network: only shapes matter
        run_dir.checkpoint("cam").parent.mkdir(parents=True, exist_ok=True)
        save_final(run_dir.checkpoint("cam"), build_cam_model(cfg.model, 2),
                   {"model": cfg.model.name, "num_classes": 2})
    return cfg, run_dir


def test_make_cam_on_every_readable_kind_writes_maps_on_the_stored_grid(tmp_path):
    root = _folder(tmp_path / "photos", sorted(GOOD))
    cfg, run_dir = _cam_config(root)  # cam.scales=[1.0, 0.5]: 16 x 16 is 8 px at 0.5
    with pytest.raises(DataError) as info:
        make_cam.run(cfg)
    assert str(info.value) == (
        f"image {root / 'images' / 'tiny.png'} is 16x16, too small for make-cam: at the smallest "
        "of cam.scales (0.5) its short side is 8 px, less than one 16 px cell of resnet10t_cam; "
        "use cam.scales of at least 1, or leave the image out")
    assert not run_dir.cam_dir.exists() and not run_dir.config("make_cam").exists()

    cfg, run_dir = _cam_config(root, "cam.scales=[1.0,2.0]")
    assert make_cam.run(cfg) == {"written": len(GOOD), "skipped": 0}
    for name, (_, size) in GOOD.items():
        maps = load_cam(run_dir.cam_dir / f"{Path(name).stem}.npy").high_res
        assert maps.shape[1:] == size and np.isfinite(maps).all(), name
    (root / "masks").mkdir()  # a mask drawn on the stored grid fits the EXIF-tagged photo
    Image.fromarray(np.zeros((30, 50), np.uint8)).save(root / "masks" / "turned.png")
    assert build_source(cfg.data, "train").load_mask("turned").shape == (30, 50)


@pytest.mark.parametrize("name", sorted(BAD))
def test_make_cam_refuses_an_unreadable_file_before_any_work(tmp_path, name):
    root = _folder(tmp_path / "photos", ["bmp.bmp", name])
    cfg, run_dir = _cam_config(root)
    with pytest.raises(DataError, match=f"^image {root / 'images' / name} "):
        make_cam.run(cfg)
    assert not run_dir.cam_dir.exists() and not run_dir.config("make_cam").exists()


def test_make_cam_refuses_a_non_image_through_the_cli_in_one_line(tmp_path, capsys):
    root = _folder(tmp_path / "photos", ["bmp.bmp", "notes.jpg"])
    cfg, _ = _cam_config(root)
    msg = cli_error(capsys, "make-cam", f"data.root={root}", f"run_root={root / 'runs'}",
                    "device=cpu", "data.num_workers=0", "data.dataset=custom",
                    "data.csv=train.csv", "data.infer_split=train", "cam.scales=[1.0,0.5]")
    assert msg == (f"image {root / 'images' / 'notes.jpg'} is not an image file (no format PIL "
                   f"reads starts with b'my notes, not a '); {DATASET_FIX}")


def test_make_cam_bounds_memory_by_refusing_photos_over_cam_max_pixels(tmp_path, huge):
    root = _folder(tmp_path / "photos", ["bmp.bmp"], huge=huge)
    cfg, run_dir = _cam_config(root)
    with pytest.raises(DataError) as info:
        make_cam.run(cfg)  # the 1/8-scale scan costs ~0.1 s; a full make-cam would take ~48 GiB
    assert str(info.value) == (
        f"image {root / 'images' / 'huge.jpg'} is 6000x4000 (24.0 megapixels), more than "
        "cam.max_pixels=4000000: make-cam's multi-scale maps take about 2 GiB per megapixel "
        "(IRN's ResNet-50, 4 scales, CPU); downscale the dataset's images (and their masks, "
        "nearest-neighbour), or raise cam.max_pixels")
    assert not run_dir.cam_dir.exists()
    (root / "images" / "huge.jpg").unlink()  # the limit is a setting: a 50 x 40 under 1000
    (root / "train.csv").write_text("image,labels\nbmp.bmp,cat;dog\n")
    cfg, _ = _cam_config(root, "cam.max_pixels=1000")
    with pytest.raises(DataError, match="is 50x40 .* more than cam.max_pixels=1000"):
        make_cam.run(cfg)
    assert make_cam.run(_cam_config(root, "cam.max_pixels=0")[0])["written"] == 1


# --- csdseg predict ----------------------------------------------------------------------------

def test_predict_on_every_readable_kind_and_a_24_megapixel_photo(checkpoint, tmp_path, huge,
                                                                   monkeypatch, caplog):
    path, _ = checkpoint
    folder = _folder(tmp_path / "photos", sorted(GOOD), huge=huge) / "images"
    seen = {}
    real = predict.predict_probs

    def spy(model, img, *args):
        seen[img.shape[:2]] = True
        return real(model, img, *args)

    monkeypatch.setattr(predict, "predict_probs", spy)
    out = tmp_path / "out"
    assert _run(str(path), str(folder), "--out", str(out), "--device", "cpu", "--no-flip") == 0
    for name, (_, size) in {**GOOD, "huge.jpg": (None, HUGE)}.items():
        with Image.open(out / f"{Path(name).stem}.png") as mask:
            assert mask.size == size[::-1], name  # stored grid, full size
    assert (683, 1024) in seen and max(max(s) for s in seen) == 1024  # the network never saw 24 MP
    with Image.open(out / "huge_overlay.png") as overlay:
        assert overlay.height == 683  # the overlay keeps the network's size
    assert ("1 input(s) carry an EXIF orientation tag, e.g. " f"{folder / 'turned.jpg'} "
            "(orientation 6): it is ignored") in caplog.text


@pytest.mark.parametrize("name", sorted(BAD))
def test_predict_refuses_an_unreadable_file_before_any_work(checkpoint, tmp_path, name):
    path, _ = checkpoint
    folder = _folder(tmp_path / "photos", ["bmp.bmp", name]) / "images"
    with pytest.raises(DataError) as info:
        _run(str(path), str(folder), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert str(info.value).startswith(f"image {folder / name} {BAD[name][1]}")
    assert str(info.value).endswith("; replace it or move it out of the inputs")
    assert not (tmp_path / "out").exists()
