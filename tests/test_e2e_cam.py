"""End to end on the synthetic data: synth -> train-cam -> make-cam -> eval-cam (CPU)."""
import json

import pytest

from conftest import tiny_config
from csdseg.cli import main as cli_main
from csdseg.data.synthetic import generate
from csdseg.stages import eval_cam, make_cam, train_cam


@pytest.mark.slow
def test_learned_cams_beat_trivial_predictors(tmp_path, capsys):
    root = generate(tmp_path / "data", n_train=240, n_val=40, size=64, seed=1, workers=1)
    cfg = tiny_config(root, tmp_path / "runs", "name=e2e", "train.epochs=8",
                      "train.batch_size=16", "data.infer_split=train", "data.eval_split=train")
    train_cam.run(cfg)
    make_cam.run(cfg)
    report = eval_cam.evaluate(cfg, progress=False)
    trivial = report["trivial"]
    best = report["best"]["miou"]
    with capsys.disabled():
        print(f"\nCAM mIoU {report['miou']:.3f} (best {best:.3f} at {report['best']['threshold']:.2f}); "
              f"trivial {trivial}; context ratio {report['context']['ratio']}")
    assert report["miou"] > trivial["all_background"] + 0.10
    assert report["miou"] > trivial["whole_image"] + 0.10
    # the CLI prints the same report as JSON
    capsys.readouterr()
    assert cli_main(["eval-cam", "--json", f"data.root={root}", f"run_root={tmp_path / 'runs'}",
                     "name=e2e", "data.eval_split=train", "device=cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert abs(printed["miou"] - report["miou"]) < 1e-9
