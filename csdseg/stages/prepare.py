"""Derive the files a dataset needs from its original annotations.

  csdseg prepare voc --root VOC2012 [--from xml|masks] [--out FILE]
      image-level label file from Annotations/*.xml (as IRN's make_cls_labels does: every
      <object><name> that is a VOC class, difficult and truncated objects included) or from
      the classes present in SegmentationClass(Aug) masks (0 and 255 left out).
  csdseg prepare coco --root COCO --annotations instances_train2014.json [...] [--workers N]
      label PNGs in root/SegmentationClass/<folder>/<id>.png, the label file
      root/cls_labels_coco.npy and the lists root/ImageSets/{train,val}_labelled.txt, which
      leave out the images that have no annotation. Existing PNGs are kept (rerun to resume).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from csdseg.data.classes import COCO_CLASSES, VOC_CLASSES, voc_palette
from csdseg.data.source import DataError, read_mask, read_split
from csdseg.files.atomic import atomic_save_npy, atomic_save_png, atomic_write_text
from csdseg.engine.progress import progress_bar

HELP = "derive label files (and COCO label PNGs) from a dataset's original annotations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")
    sub.required = True
    voc = sub.add_parser("voc", help="image-level labels for PASCAL VOC 2012")
    voc.add_argument("--root", required=True, help="VOCdevkit/VOC2012")
    voc.add_argument("--from", dest="source", choices=("xml", "masks"), default="xml",
                     help="Annotations/*.xml (IRN's way, default) or segmentation masks")
    voc.add_argument("--mask-dir", default="", help="masks folder (default: SegmentationClass "
                     "and SegmentationClassAug; SegmentationClass wins where both have an id)")
    voc.add_argument("--out", default="", help="output .npy (default: ROOT/cls_labels.npy)")
    coco = sub.add_parser("coco", help="label PNGs and image-level labels for COCO 2014")
    coco.add_argument("--root", required=True, help="folder holding train2014/ and val2014/")
    coco.add_argument("--annotations", action="append", required=True, metavar="JSON",
                      help="instances_train2014.json; repeat for instances_val2014.json")
    coco.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")


def main(args: argparse.Namespace) -> int:
    if args.dataset == "voc":
        prepare_voc(Path(args.root), args.source, Path(args.out) if args.out else None,
                    Path(args.mask_dir) if args.mask_dir else None)
    else:
        prepare_coco(Path(args.root), [Path(p) for p in args.annotations], args.workers)
    return 0


def _report_empty(kind: str, empty: list[str]) -> None:
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        print(f"{len(empty)} {kind} image(s) have no class label: {shown}")


# --- VOC ---------------------------------------------------------------------------------------


def voc_labels_from_xml(path: Path) -> np.ndarray:
    """Multi-hot float32[20] of the object classes named in one VOC annotation file."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise DataError(f"annotation {path} is not valid XML ({exc})") from None
    vector = np.zeros(len(VOC_CLASSES), np.float32)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name in VOC_CLASSES:  # part names (head, hand...) sit under <part>, not here
            vector[VOC_CLASSES.index(name)] = 1.0
    return vector


def voc_labels_from_mask(path: Path) -> np.ndarray:
    """Multi-hot float32[20] of the classes present in a label PNG (0 and 255 left out)."""
    values = np.unique(read_mask(path, len(VOC_CLASSES)))
    vector = np.zeros(len(VOC_CLASSES), np.float32)
    vector[values[(values > 0) & (values <= len(VOC_CLASSES))].astype(int) - 1] = 1.0
    return vector


def prepare_voc(root: Path, source: str = "xml", out: Path | None = None,
                mask_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Write ``out`` (default ``root/cls_labels.npy``): dict str id -> float32[20]."""
    if source == "xml":
        files = {p.stem: p for p in sorted((root / "Annotations").glob("*.xml"))}
        if not files:
            raise DataError(f"no annotations in {root / 'Annotations'}; is --root VOCdevkit/VOC2012?")
        read = voc_labels_from_xml
    elif source == "masks":
        folders = [mask_dir] if mask_dir else [root / "SegmentationClassAug", root / "SegmentationClass"]
        files = {p.stem: p for folder in folders for p in sorted(folder.glob("*.png"))}
        if not files:
            raise DataError(f"no masks in {' or '.join(map(str, folders))}; pass --mask-dir")
        read = voc_labels_from_mask
    else:
        raise ValueError(f"source must be xml or masks, got {source!r}")
    bar = progress_bar(sorted(files.items()), desc=f"voc labels ({source})")
    labels = {i: read(p) for i, p in bar}
    out = out or root / "cls_labels.npy"
    atomic_save_npy(out, labels)
    _report_empty("VOC", [i for i, v in labels.items() if v.sum() == 0])
    print(f"wrote labels for {len(labels)} images to {out}")
    return labels


# --- COCO --------------------------------------------------------------------------------------


def _folder(images: list[dict], json_path: Path) -> str:
    """``train2014`` from the file names (COCO_train2014_...), else from instances_train2014.json."""
    names = {img["file_name"].split("_")[1] for img in images
             if img.get("file_name", "").startswith("COCO_") and img["file_name"].count("_") >= 2}
    if len(names) == 1:
        return names.pop()
    return json_path.stem.removeprefix("instances_")


def _render_task(task: tuple[Path, int, int, list]) -> None:
    from csdseg.data.coco import render_label_mask

    out, height, width, anns = task
    image = Image.fromarray(render_label_mask(anns, height, width), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    atomic_save_png(out, image)


def _run_tasks(tasks: list, workers: int, desc: str, total: int) -> None:
    bar = progress_bar(total=total, desc=desc, initial=total - len(tasks))
    if workers <= 1 or len(tasks) < 2:
        for task in tasks:
            _render_task(task)
            bar.update()
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_task, tasks, chunksize=8):
                bar.update()
    bar.close()


def _ordered(ids: set[str], builtin: Path) -> list[str]:
    """Keep the built-in list's order for ids it has; others follow, sorted."""
    known = [i for i in read_split(builtin) if i in ids] if builtin.is_file() else []
    return known + sorted(ids - set(known))


def prepare_coco(root: Path, annotations: list[Path], workers: int = 0) -> dict[str, np.ndarray]:
    """Label PNGs, ``root/cls_labels_coco.npy`` and ``root/ImageSets/<split>_labelled.txt``."""
    from csdseg.data.coco import BUILTIN, LABEL_FILE, category_index, decode_coco_id

    if not root.is_dir():
        raise DataError(f"COCO root {root} does not exist")
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    label_path = root / LABEL_FILE
    table: dict[str, np.ndarray] = {}
    if label_path.is_file():  # a run over the other split's JSON: keep its entries
        table = {decode_coco_id(k): np.asarray(v, np.float32)
                 for k, v in np.load(label_path, allow_pickle=True).item().items()}
    for json_path in annotations:
        if not json_path.is_file():
            raise DataError(f"annotation file {json_path} does not exist")
        try:
            data = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{json_path} is not valid JSON ({exc})") from None
        if not all(k in data for k in ("images", "annotations", "categories")):
            raise DataError(f"{json_path} is not a COCO instances file (needs images, annotations, categories)")
        to_index = category_index(data["categories"])
        folder = _folder(data["images"], json_path)
        by_image: dict[int, list] = {int(img["id"]): [] for img in data["images"]}
        for ann in data["annotations"]:
            by_image.setdefault(int(ann["image_id"]), []).append(
                (ann.get("segmentation"), bool(ann.get("iscrowd", 0)), to_index[int(ann["category_id"])]))
        out_dir = root / "SegmentationClass" / folder
        tasks, labelled, empty = [], set(), []
        for img in data["images"]:
            image_id, anns = decode_coco_id(int(img["id"])), by_image[int(img["id"])]
            vector = np.zeros(len(COCO_CLASSES), np.float32)
            vector[[index for _, _, index in anns]] = 1.0  # crowd regions name a present class too
            table[image_id] = vector
            if anns:
                labelled.add(image_id)
            else:
                empty.append(image_id)
            out = out_dir / f"{image_id}.png"
            if not out.is_file():
                tasks.append((out, int(img["height"]), int(img["width"]), anns))
        _run_tasks(tasks, workers, f"coco masks {folder}", len(data["images"]))
        split = folder.rstrip("0123456789") or folder
        builtin = Path(str(BUILTIN / f"{split}14.txt"))
        atomic_write_text(root / "ImageSets" / f"{split}_labelled.txt",
                          "".join(f"{i}\n" for i in _ordered(labelled, builtin)))
        _report_empty(f"COCO {folder}", sorted(empty))
        print(f"{folder}: {len(data['images'])} images, {len(labelled)} labelled -> "
              f"{root / 'ImageSets' / f'{split}_labelled.txt'}; wrote {len(tasks)} mask(s), "
              f"kept {len(data['images']) - len(tasks)} existing in {out_dir}")
    atomic_save_npy(label_path, table)
    print(f"wrote labels for {len(table)} images to {label_path}")
    return table
