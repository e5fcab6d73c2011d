"""The HTML report: structure, self-containedness, and rendering in a real headless browser.

The runs are made by hand from the ground truth (no training): the "csd" run's CAMs are the
masks themselves, the baseline's add a constant activation over the whole image for its first
class, so every number in the table is known in advance.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from csdseg.data import build_source
from csdseg.engine.logger import RunLogger
from csdseg.files.cam import save_cam
from csdseg.report.html import build_report
from csdseg.csd.counts import CsdCounts
from csdseg.files.atomic import atomic_write_json
from csdseg.report.table import summarise, write_table
from csdseg.runs import RunDir, eval_report_path
from csdseg.stages import eval_cam, eval_sem_seg
from csdseg.files.labels import save_label_png

DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _fake_run(cfg, over_activate: bool) -> None:
    source = build_source(cfg.data, cfg.data.infer_split)
    rd = RunDir.from_config(cfg)
    for image_id in source.ids:
        gt = source.load_mask(image_id)
        keys = np.flatnonzero(source.label(image_id))
        high = np.stack([(gt == k + 1).astype(np.float32) for k in keys])
        if over_activate:
            high[0] = np.maximum(high[0], 0.5)
        save_cam(rd.cam_dir / f"{image_id}.npy", keys, high[:, ::4, ::4], high)
        save_label_png(rd.sem_seg_dir / f"{image_id}.png",
                       np.where(gt == 255, 0, gt).astype(np.uint8))
    logger = RunLogger(rd.log("train_cam"))
    for step in range(1, 6):
        extra = {"loss_fg": 0.1 / step, "loss_bg": 0.2 / step} if not over_activate else {}
        logger.log(step, epoch=0, loss_cls=1.0 / step, **extra)
    logger.close()
    eval_cam.evaluate(cfg, progress=False)
    eval_sem_seg.evaluate(cfg, progress=False)


@pytest.fixture(scope="module")
def runs(synth_root, tmp_path_factory):
    run_root = tmp_path_factory.mktemp("runs")
    common = ("data.infer_split=train", "data.eval_split=train")
    base = tiny_config(synth_root, run_root, "name=base", *common)
    csd = tiny_config(synth_root, run_root, "name=base_csd", "csd.enabled=true",
                      "csd.from_run=base", *common)
    ctl = tiny_config(synth_root, run_root, "name=base_ctl", *common)
    _fake_run(base, over_activate=True)
    _fake_run(ctl, over_activate=True)
    _fake_run(csd, over_activate=False)
    counts = CsdCounts()  # what train-cam leaves in a CSD run: 3 batches over 2 epochs
    for epoch, samples, skipped in ((0, 3, 0), (0, 0, 1), (1, 5, 0)):
        counts.add(epoch, samples, skipped)
    atomic_write_json(RunDir.from_config(csd).report("csd_counts"), counts.totals())
    table, markdown = write_table(base, ctl, csd)
    path = build_report(base, ctl, csd, table, n_gallery=4)
    return base, csd, table, markdown, path


def test_table_reads_the_reports(runs):
    base, csd, table, markdown, _ = runs
    rows = {r["key"]: r for r in table}
    cam_b = json.loads(eval_report_path(base, "eval_cam").read_text())
    cam_c = json.loads(eval_report_path(csd, "eval_cam").read_text())
    assert rows["cam_miou"]["baseline"] == rows["cam_miou"]["control"] == cam_b["miou"]
    assert rows["cam_miou"]["csd"] == cam_c["miou"] == pytest.approx(1.0)
    # delta is CSD - control (the control here over-activates like the baseline)
    assert rows["cam_miou"]["delta"] == pytest.approx(cam_c["miou"] - cam_b["miou"])
    assert rows["cam_miou"]["delta"] > 0.05
    assert rows["cam_best_miou"]["baseline"] == cam_b["best"]["miou"]
    assert rows["cam_context_ratio"]["baseline"] == cam_b["context"]["ratio"]
    assert rows["pseudo_miou"]["baseline"] == rows["pseudo_miou"]["csd"] == pytest.approx(1.0)
    assert rows["seg_miou"]["baseline"] is None and rows["seg_miou"]["delta"] is None
    saved = json.loads(RunDir.from_config(base).report("pipeline").read_text())
    assert saved["rows"] == table and saved["csd"] == "base_csd" and saved["control"] == "base_ctl"
    md = (RunDir.from_config(base).root / "reports" / "pipeline.md").read_text()
    assert md.strip() == markdown.strip()
    line = next(l for l in markdown.splitlines() if l.startswith("| CAM mIoU @bg"))
    assert line == (f"| CAM mIoU @bg threshold | {100 * cam_b['miou']:.1f} | "
                    f"{100 * cam_b['miou']:.1f} | 100.0 | {100 * (1 - cam_b['miou']):+.1f} |")
    assert "| segmentation mIoU (seg.eval_split) | - | - | - | - |" in markdown
    assert markdown.splitlines()[0] == ("| metric | baseline (base) | control (base_ctl) | "
                                        "CSD (base_csd) | CSD - control |")
    # how much CSD ran, beside the CSD run only: samples per epoch [3, 5], 2 of 3 batches
    assert rows["csd_samples_per_epoch"]["csd"] == 4.0
    assert rows["csd_touched_share"]["csd"] == pytest.approx(2 / 3)
    assert rows["csd_touched_share"]["control"] is None and rows["csd_touched_share"]["delta"] is None
    assert "| CSD samples with views per epoch | - | - | 4 | - |" in markdown
    assert "| share of batches CSD touched | - | - | 66.7 | - |" in markdown
    # without a CSD run the rows are left out, not shown empty
    assert not {"csd_samples_per_epoch", "csd_touched_share"} & {r["key"] for r in summarise(base)}


def test_report_is_self_contained_with_every_section(runs):
    *_, path = runs
    assert path == RunDir.from_config(runs[0]).root / "report.html"
    html = path.read_text()
    for heading in ("Summary", "Per-class IoU", "Training curves", "Gallery"):
        assert f"<h2>{heading}" in html
    # baseline, control and CSD side by side, with CSD - control
    for head in ("baseline (base)", "control (base_ctl)", "CSD (base_csd)", "CSD - control"):
        assert f"<th>{head}</th>" in html
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(http|file|/)', html)
    # 2 IoU charts (CAMs, pseudo-masks; no eval-seg yet), 1 curve, 4 rows x 8 gallery cells
    # (image, gt, then a CAM and a pseudo-mask for each of the three runs)
    assert len(srcs) == 2 + 1 + 4 * 8
    assert html.count('class="chart"') == 3
    assert "no report yet (eval_seg)" in html
    for payload in DATA_URI.findall(html):
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        image.load()
        assert min(image.size) >= 100  # gallery cells enlarged from 64 px
    assert "<td>100.0</td>" in html  # the csd run's CAM mIoU


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK = """<script>
window.addEventListener('load', () => {
  const sizes = Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1);
  const out = document.createElement('pre');
  out.id = 'imgcheck';
  out.textContent = 'IMGCHECK ' + JSON.stringify(sizes);
  document.body.appendChild(out);
});
</script></body>"""


def test_report_renders_in_headless_chromium(runs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install -y chromium)")
    html = runs[-1].read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHECK))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r"IMGCHECK (\[[^\]]*\])", out.stdout)
    assert match, f"no probe output; rc {out.returncode}, stderr: {out.stderr[-2000:]}"
    widths = json.loads(match.group(1))
    assert len(widths) == html.count("<img ")
    assert all(w > 0 for w in widths), widths
