"""End to end on the synthetic data with the MCTformer preset: its maps beat trivial predictors."""
from pathlib import Path

import pytest

from csdseg.config import load_config
from csdseg.data.synthetic import generate
from csdseg.stages import eval_cam, make_cam, train_cam

PRESET = Path(__file__).resolve().parents[1] / "csdseg/config/presets/synthetic_mct.yaml"


@pytest.mark.slow
def test_tiny_mctformer_maps_beat_trivial_predictors(tmp_path, capsys, one_thread):
    root = generate(tmp_path / "data", n_train=400, n_val=10, size=128, seed=3, workers=1)
    cfg = load_config(PRESET, [f"data.root={root}", f"run_root={tmp_path / 'runs'}", "name=mct",
                               "device=cpu", "data.num_workers=0", "train.epochs=8"])
    train_cam.run(cfg)
    make_cam.run(cfg)
    report = eval_cam.evaluate(cfg, progress=False)
    trivial, best = report["trivial"], report["best"]
    with capsys.disabled():
        print(f"\nMCTformer-V2 tiny maps: mIoU {report['miou']:.3f} at 0.15, best "
              f"{best['miou']:.3f} at {best['threshold']:.2f}; trivial {trivial}")
    assert best["miou"] > trivial["whole_image"] + 0.05
    assert best["miou"] > trivial["all_background"] + 0.15
