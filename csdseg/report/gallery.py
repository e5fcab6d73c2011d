"""Gallery rows for the report: image, ground truth, CAM heat maps and pseudo-masks per run."""
from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps
from PIL import Image

from csdseg.files.cam import load_cam
from csdseg.data import Source
from csdseg.files.labels import read_label_png
from csdseg.runs import RunDir
from csdseg.report.visualize import overlay


def png_uri(rgb: np.ndarray) -> str:
    """RGB uint8 [H, W, 3] -> ``data:image/png;base64,...``."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def enlarge(rgb: np.ndarray, min_side: int = 160) -> np.ndarray:
    """Nearest-neighbour x integer factor, so tiny synthetic images stay readable."""
    factor = max(1, -(-min_side // max(1, min(rgb.shape[:2]))))
    return np.repeat(np.repeat(rgb, factor, 0), factor, 1) if factor > 1 else rgb


def cam_heatmap(img: np.ndarray, high_res: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image [H, W, 3] blended with the jet-coloured max over the present classes' CAMs
    ``high_res`` [k, H, W] (each already normalised to [0, 1] by make-cam)."""
    heat = np.clip(high_res.max(axis=0), 0, 1) if high_res.shape[0] else np.zeros(img.shape[:2])
    colour = colormaps["jet"](heat)[..., :3] * 255
    return ((1 - alpha) * img + alpha * colour).round().astype(np.uint8)


def pick_ids(source: Source, run: RunDir, n: int) -> list[str]:
    """Up to ``n`` evenly spaced ids of ``source`` that have a CAM file in ``run``."""
    ids = [i for i in source.ids if (run.cam_dir / f"{i}.npy").is_file()]
    if len(ids) <= n:
        return ids
    return [ids[int(k)] for k in np.linspace(0, len(ids) - 1, n).round()]


def gallery_rows(source: Source, ids: list[str],
                 runs: dict[str, RunDir]) -> tuple[list[str], list[tuple[str, list[str | None]]]]:
    """Column heads and rows ``(id, [uri or None per column])``: image, ground truth, then per
    run its CAM heat map and its pseudo-mask (None where the file is absent)."""
    heads = ["image", "ground truth"]
    for label in runs:
        heads += [f"CAM ({label})", f"pseudo-mask ({label})"]
    rows = []
    for image_id in ids:
        img = source.load_image(image_id)
        cells: list[str | None] = [png_uri(enlarge(img))]
        cells.append(png_uri(enlarge(overlay(img, source.load_mask(image_id)))))
        for rd in runs.values():
            cam = rd.cam_dir / f"{image_id}.npy"
            if cam.is_file():
                high_res = load_cam(cam, source.num_classes).high_res
                cells.append(png_uri(enlarge(cam_heatmap(img, high_res))))
            else:
                cells.append(None)
            mask = rd.sem_seg_dir / f"{image_id}.png"
            cells.append(png_uri(enlarge(overlay(img, read_label_png(mask, what="pseudo-mask"))))
                         if mask.is_file() else None)
        rows.append((image_id, cells))
    return heads, rows
