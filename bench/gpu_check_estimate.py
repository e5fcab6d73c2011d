"""gpu_check section 4: what the measured rates mean for a user, in hours per stage.

Hours = bench/cost_model.py's work counts (images processed per stage, from the presets'
epochs, on VOC train_aug and COCO train) x the seconds per image section 3 measured on this
device (one device, no data-loading stalls). CSD adds, per multi-label image, the measured CSD
step minus the baseline step; VOC's multi-label share comes from the packaged label file.
The CPU-side stages (the two CRFs of make-ir-label and of PSA's confident scores) are timed
on one 375 x 500 photo on this machine's CPU (cost_model.per_image_seconds) and divided over
its cores: on a fast GPU they may dominate. With ``--tiny`` the rates are those of the tiny
networks: the numbers only show that the code path runs.
"""
from __future__ import annotations

import os

import numpy as np

from cost_model import RESOURCES, datasets, per_image_seconds, work_plan
from gpu_check_report import Row, Section

from csdseg.config import load_config

SECTION = "estimate"


def multi_label_share() -> float:
    """The share of VOC train_aug images with more than one class (IRN's label file)."""
    labels = np.load(RESOURCES / "voc12/cls_labels.npy", allow_pickle=True).item()
    ids = (RESOURCES / "voc12/train_aug.txt").read_text().split()
    keys = [int(i.replace("_", "")) for i in ids]  # the file's keys: 2007_000032 -> 2007000032
    counts = [labels[k].sum() for k in keys if k in labels]
    return float(np.mean(np.asarray(counts) > 1))


def rates(speed: Section) -> dict[str, float]:
    """cost_model's stage name -> seconds per image, from section 3's rows."""
    return {r.extra["stage"]: r.extra["per_image_s"] for r in speed.rows if r.extra.get("stage")}


def estimate(speed: Section, tiny: bool) -> tuple[list[dict], list[Row]]:
    irn, mct = load_config("voc_irn"), load_config("voc_mct")
    per = rates(speed)
    cpu = per_image_seconds()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = multi_label_share()
    out: list[dict] = []
    for dataset, n_train, n_val in datasets():
        plan = work_plan(irn, mct, n_train, n_val)
        plan.insert(1, ("IRN", "train-cam + CSD", n_train * irn.train.epochs))
        for recipe, stage, units in plan:
            where = "device"
            if "CRFs" in stage:
                seconds, where = cpu["two CRFs"] * units / cores, f"CPU, {cores} cores"
            elif stage == "train-cam + CSD":
                base = per.get("train-cam ResNet-50")
                csd = per.get(stage)
                seconds = (None if base is None or csd is None else
                           units * (base + share * max(csd - base, 0.0)))
            else:
                seconds = per[stage] * units if stage in per else None
            out.append({"dataset": dataset, "recipe": recipe, "stage": stage, "images": units,
                        "hours": None if seconds is None else seconds / 3600, "where": where})
    note = "tiny networks: code path only" if tiny else "one device, no loading stalls"
    total = {d: sum(e["hours"] or 0.0 for e in out if e["dataset"] == d) for d, _, _ in datasets()}
    rows = [Row(SECTION, f"{d}: all stages, both recipes", h, "hours", note=note)
            for d, h in total.items()]
    rows.append(Row(SECTION, "multi-label share (VOC train_aug)", share, "share",
                    note="CSD's extra work per image scales with it"))
    rows.append(Row(SECTION, "two CRFs on this CPU", cpu["two CRFs"], "s/image",
                    note=f"make-ir-label / PSA scores, over {cores} cores"))
    return out, rows


def markdown(estimates: list[dict], device: str) -> str:
    names = list(dict.fromkeys(e["dataset"] for e in estimates))
    lines = [f"Estimated hours on {device} (one device):", "",
             "| recipe | stage | " + " | ".join(names) + " | runs on |",
             "|---|---|" + "---|" * len(names) + "---|"]
    keys = list(dict.fromkeys((e["recipe"], e["stage"]) for e in estimates))
    for recipe, stage in keys:
        cells, where = [], ""
        for name in names:
            e = next(x for x in estimates if (x["dataset"], x["recipe"], x["stage"]) ==
                     (name, recipe, stage))
            cells.append("-" if e["hours"] is None else f"{e['hours']:.2f}")
            where = e["where"]
        lines.append(f"| {recipe} | {stage} | " + " | ".join(cells) + f" | {where} |")
    return "\n".join(lines)


def run(section: Section, speed: Section, tiny: bool) -> list[dict]:
    found: list[dict] = []

    def item() -> list[Row]:
        estimates, rows = estimate(speed, tiny)
        found.extend(estimates)
        return rows
    section.run("hours per stage", item)
    return found

