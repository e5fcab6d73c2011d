"""The built-in synthetic dataset: VOC's 20 classes with spurious object-context coupling.

Each class has a distinctive but imperfect texture and a preferred background context (one
of 8); an image's background is the preferred context of one of its classes with probability
``p_context`` (0.8), else another context. A CAM classifier trained on it learns the
object-context and object-object shortcuts that CSD is meant to break, in minutes on a CPU.
The files follow the VOC layout, so :class:`csdseg.data.voc.VOCSource` reads them unchanged;
see docs/synthetic.md for the defaults, the contexts table and the formats.

Every image is made from its own generator seeded with (seed, split, index), so the output
does not depend on the number of workers or the order they finish in. With real layouts
(``layouts_from``) train and val draw from disjoint parts of the mask folder
(:func:`csdseg.data.synthetic_layouts.partition_layouts`), and ``layouts.json`` records which
mask each image used.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from csdseg.config import ConfigError
from csdseg.data.classes import VOC_CLASSES, voc_palette
from csdseg.data.source import DataError
from csdseg.data.synthetic_layouts import (add_void_border, fill_void, load_layout, paint_labels,
                                           partition_layouts, procedural_layout, sample_classes)
from csdseg.data.synthetic_textures import (CLASS_CONTEXT, CONTEXTS, render_class,
                                            render_context)
from csdseg.files.atomic import (atomic_save_npy, atomic_write_bytes, atomic_write_json,
                                 atomic_write_text)
from csdseg.engine.progress import progress_bar

__all__ = ["CONTEXTS", "CLASS_CONTEXT", "P_CONTEXT", "generate", "make_sample", "choose_context"]

P_CONTEXT = 0.8
JPEG_QUALITY = 95
PIXEL_NOISE = 6.0  # sensor-like noise, grey levels (sigma)
VERSION = 1  # bump when the output for a given seed changes
SPLITS = {"train": 0, "val": 1}
LAYOUT_SPLIT = "disjoint, in proportion to n_train:n_val"  # synth.json, only with layouts_from


@dataclass(frozen=True)
class Settings:
    seed: int
    size: int
    p_context: float
    layouts_from: str | None


def choose_context(rng: np.random.Generator, classes: list[int], p_context: float) -> int:
    """The preferred context of a random present class with prob. p_context, else another one."""
    preferred = CLASS_CONTEXT[int(rng.choice(classes))]
    if rng.random() < p_context:
        return preferred
    others = [c for c in range(len(CONTEXTS)) if c != preferred]
    return others[int(rng.integers(len(others)))]


def _layout_classes(rng: np.random.Generator, paths: list[Path],
                    size: int) -> tuple[list[int], np.ndarray, Path]:
    """Pick a real mask with at least one class left after resizing: (classes, mask [S, S], path)."""
    for _ in range(100):
        path = paths[int(rng.integers(len(paths)))]
        mask = load_layout(path, size)
        classes = [int(c) - 1 for c in np.unique(mask) if 0 < c <= len(VOC_CLASSES)]
        if classes:
            return classes, mask, path
    raise DataError(f"--layouts-from {paths[0].parent}: 100 random masks in a row of this split's "
                    f"{len(paths)} hold no object at this size; use masks with objects or a larger --size")


def make_sample(rng: np.random.Generator, size: int, p_context: float,
                layout_paths: list[Path] | None = None,
                render: bool = True,
                ) -> tuple[list[int], int, np.ndarray | None, np.ndarray | None, Path | None]:
    """One image: (classes 0-based, context, image uint8 [S, S, 3], mask uint8 [S, S], layout).

    ``layout`` is the real mask used (one of ``layout_paths``), else ``None``. The class set
    and the context are drawn first, so ``render=False`` (used to resume) gets them cheaply
    and returns ``None`` for the arrays.
    """
    if layout_paths:
        classes, real, layout = _layout_classes(rng, layout_paths, size)
    else:
        classes, real, layout = sample_classes(rng), None, None
    context = choose_context(rng, classes, p_context)
    if not render:
        return classes, context, None, None, layout
    image = render_context(context, rng, size)
    if real is None:
        objects = procedural_layout(rng, size, classes)
        mask = add_void_border(paint_labels(objects, size))
    else:
        filled = fill_void(real)
        objects = [(c, filled == c + 1) for c in classes]
        mask = real
    for cls, region in objects:
        image[region] = render_class(cls, rng, size)[region]
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(PIXEL_NOISE)
    return classes, context, np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, layout


_SETTINGS: Settings | None = None
_LAYOUTS: dict[str, list[Path]] | None = None  # split -> its own real masks


def _init_worker(settings: Settings, layouts: dict[str, list[Path]] | None) -> None:
    global _SETTINGS, _LAYOUTS
    _SETTINGS, _LAYOUTS = settings, layouts


def _init_pool_worker(settings: Settings, layouts: dict[str, list[Path]] | None) -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes; no thread pool per worker
    _init_worker(settings, layouts)


def _work(job: tuple[str, int, str]) -> tuple[str, list[int], int, str | None]:
    """Make (or, when both files exist, only re-derive the labels of) one image."""
    assert _SETTINGS is not None
    out, index, image_id = Path(job[0]), job[1], job[2]
    split = image_id.split("_")[1]
    rng = np.random.default_rng([_SETTINGS.seed, SPLITS[split], index])
    jpg, png = out / "JPEGImages" / f"{image_id}.jpg", out / "SegmentationClass" / f"{image_id}.png"
    done = jpg.is_file() and png.is_file()
    paths = _LAYOUTS[split] if _LAYOUTS is not None else None
    classes, context, image, mask, layout = make_sample(rng, _SETTINGS.size, _SETTINGS.p_context,
                                                        paths, render=not done)
    if not done:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        atomic_write_bytes(jpg, buffer.getvalue())
        label = Image.fromarray(mask, mode="P")
        label.putpalette(voc_palette().reshape(-1).tolist())
        buffer = io.BytesIO()
        label.save(buffer, format="PNG")
        atomic_write_bytes(png, buffer.getvalue())
    return image_id, classes, context, layout.name if layout is not None else None


def _check(n_train: int, n_val: int, size: int, p_context: float, layouts_from: str | Path | None) -> None:
    if n_train < 1 or n_val < 1:
        raise ConfigError(f"--n-train and --n-val must be >= 1, got {n_train} and {n_val}")
    if size < 32:
        raise ConfigError(f"--size must be >= 32 pixels, got {size}")
    if not 0.0 <= p_context <= 1.0:
        raise ConfigError(f"--p-context must be in [0, 1], got {p_context}")
    if layouts_from is not None:
        folder = Path(layouts_from)
        if not folder.is_dir() or not any(folder.glob("*.png")):
            raise DataError(f"--layouts-from {folder} holds no .png masks; point it at a VOC "
                            "SegmentationClass folder (palette PNGs, 255 = void)")


def generate(out_dir: str | Path, n_train: int, n_val: int, size: int, seed: int,
             layouts_from: str | Path | None = None, p_context: float = P_CONTEXT,
             workers: int | None = None) -> Path:
    """Write the dataset under ``out_dir`` (VOC layout) and return that path.

    Rerunning with the same settings resumes (existing images are kept); other settings in a
    folder that already holds a synthetic dataset raise :class:`DataError`. With
    ``layouts_from``, train and val images use disjoint sets of its masks (see
    :func:`partition_layouts`; too few masks for both splits raise :class:`DataError`).
    """
    _check(n_train, n_val, size, p_context, layouts_from)
    out = Path(out_dir)
    settings = Settings(int(seed), int(size), float(p_context),
                        str(Path(layouts_from).resolve()) if layouts_from is not None else None)
    manifest = {"version": VERSION, **asdict(settings), "n_train": n_train, "n_val": n_val}
    layouts = None  # procedural layouts: no partition, and synth.json stays as it always was
    if layouts_from is not None:
        layouts = partition_layouts(layouts_from, n_train, n_val, settings.seed)
        manifest["layout_split"] = LAYOUT_SPLIT
    manifest_path = out / "synth.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) != manifest:
        raise DataError(f"{out} already holds a synthetic dataset made with other settings "
                        f"(see {manifest_path}); choose another folder or delete it")
    atomic_write_json(manifest_path, manifest)
    ids = {split: [f"syn_{split}_{i + 1:06d}" for i in range(n)]
           for split, n in (("train", n_train), ("val", n_val))}
    jobs = [(str(out), i, image_id) for split in ids for i, image_id in enumerate(ids[split])]
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    bar = dict(total=len(jobs), desc="synth", unit="img")
    if workers == 1:
        _init_worker(settings, layouts)
        results = [_work(job) for job in progress_bar(jobs, **bar)]
    else:
        # fork where there is one: spawn re-imports __main__, which fails for stdin scripts;
        # the workers only use numpy, PIL and single-threaded OpenCV, which survive a fork
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers, _init_pool_worker, (settings, layouts))
        with pool:
            results = list(progress_bar(pool.imap(_work, jobs, chunksize=16), **bar))
    labels, contexts, used = {}, {}, {}
    for image_id, classes, context, layout in results:
        vector = np.zeros(len(VOC_CLASSES), np.float32)
        vector[classes] = 1.0
        labels[image_id] = vector
        contexts[image_id] = context
        used[image_id] = layout
    lists = out / "ImageSets" / "Segmentation"
    for name, split in (("train", "train"), ("train_aug", "train"), ("val", "val")):
        atomic_write_text(lists / f"{name}.txt", "".join(f"{i}\n" for i in ids[split]))
    atomic_save_npy(out / "cls_labels.npy", labels)
    atomic_write_json(out / "contexts.json", {
        "contexts": CONTEXTS, "class_context": CLASS_CONTEXT, "p_context": float(p_context),
        "images": contexts})
    if layouts is not None:
        atomic_write_json(out / "layouts.json", {
            "layouts_from": settings.layouts_from, "rule": LAYOUT_SPLIT,
            "pools": {split: [p.name for p in paths] for split, paths in layouts.items()},
            "images": used})
    return out
