"""train-aff (PSA's AffinityNet training): its samples, a few steps on the synthetic data, and a
stop mid-training resumed to the same weights, bit for bit, as an uninterrupted run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.config import ConfigError, load_config
from csdseg.data import build_source
from csdseg.data.colour_jitter import colour_jitter
from csdseg.engine.checkpoint import load_checkpoint
from csdseg.engine.logger import read_log
from csdseg.errors import StageError
from csdseg.refiners.psa_scores import load_scores, save_scores, score_dir
from csdseg.runs import RunDir
from csdseg.stages import train_aff
from psa_helpers import fake_cams, psa_config

# bit-exact comparisons need one thread count on both sides (see tests/test_resume.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_colour_jitter_is_a_function_of_the_rng():
    img = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    a = colour_jitter(img, np.random.default_rng(5))
    assert np.array_equal(a, colour_jitter(img, np.random.default_rng(5)))
    assert not np.array_equal(a, colour_jitter(img, np.random.default_rng(6)))
    assert a.shape == img.shape and a.dtype == np.uint8 and not np.array_equal(a, img)
    assert np.array_equal(colour_jitter(img, np.random.default_rng(5), 0, 0, 0, 0), img)


def test_score_files_round_trip_and_name_the_fix(tmp_path):
    low = np.random.default_rng(0).random((3, 10, 12)).astype(np.float32)
    save_scores(tmp_path / "a.npz", low, 1 - low, np.array([4, 7]))
    got_low, got_high = load_scores(tmp_path / "a.npz", (10, 12))
    assert np.abs(got_low - low).max() <= 2 ** -11 and got_high.dtype == np.float32
    with pytest.raises(StageError, match=r"for an image of \(10, 13\).*rerun `csdseg train-aff`"):
        load_scores(tmp_path / "a.npz", (10, 13))
    (tmp_path / "b.npz").write_bytes(b"x")
    with pytest.raises(StageError, match="is not a PSA score file"):
        load_scores(tmp_path / "b.npz", (10, 12))


def test_bad_crop_is_refused_before_any_work(synth_root, tmp_path):
    with pytest.raises(ConfigError, match="psa.crop_size must be a multiple of 8 and at least 72"):
        train_aff.run(psa_config(synth_root, tmp_path, "psa.crop_size=64"))
    assert load_config(None, []).psa.momentum == 5e-4  # PSA's effective momentum


def test_a_sample_crops_image_and_scores_together(synth_root, tmp_path):
    """Padding (64 px images, 72 px crop) is black before normalising; flat background scores
    give bg-bg pairs only; the crop is a pure function of (seed, epoch, index)."""
    cfg = psa_config(synth_root, tmp_path)
    source = build_source(cfg.data, "val")
    folder = score_dir(RunDir.from_config(cfg))
    for i in source.ids:  # flat scores: background everywhere inside the image
        one = np.zeros((2, 64, 64), np.float32)
        one[0] = 1.0
        save_scores(folder / f"{i}.npz", one, one, np.array([0]))
    data = train_aff.AffDataset(source, folder, cfg.psa, seed=0)
    a, b = data[(0, 3)], data[(0, 3)]
    assert all(torch.equal(a[k], b[k]) for k in a) and a["img"].shape == (3, 72, 72)
    assert a["bg_pos"].shape == (34, (9 - 4) * (9 - 8)) and a["fg_pos"].sum() == 0
    black = torch.from_numpy((0 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225])
    rows = [r for r in range(72) if torch.allclose(a["img"][:, r, :].mean(1).double(), black)]
    assert rows, "the 8 px of padding is black after normalising"
    assert a["neg"].sum() == 0 and a["bg_pos"].sum() > 0
    assert set(torch.unique(a["bg_pos"]).tolist()) <= {0.0, 1.0}


def _run(cfg, stop_after: int | None = None) -> dict:
    """train-aff in-process; ``stop_after`` steps: the process dies there (a kill)."""
    step = train_aff.AffStep.__call__
    left = [stop_after]

    def dying(self, model, batch):
        if left[0] == 0:
            raise KeyboardInterrupt
        if left[0] is not None:
            left[0] -= 1
        return step(self, model, batch)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_aff.AffStep, "__call__", dying)
        try:
            return train_aff.run(cfg)
        finally:
            RunDir.from_config(cfg).release()


def test_train_aff_trains_and_resumes_bit_exactly(synth_root, tmp_path):
    whole = psa_config(synth_root, tmp_path, "name=whole")
    fake_cams(whole)
    out = _run(whole)
    assert out["step"] == 8 and np.isfinite(out["last"]["loss"])
    rd = RunDir.from_config(whole)
    ckpt = load_checkpoint(rd.checkpoint("aff"))
    assert ckpt["meta"] == {"model": "affinitynet", "network": "affinitynet_tiny"}
    assert len(list(score_dir(rd).glob("*.npz"))) == 8
    counts = read_log(rd.log("train_aff"), "step")
    assert all(r["bg_count"] + r["fg_count"] + r["neg_count"] > 1 for r in counts)

    cut = psa_config(synth_root, tmp_path, "name=cut")
    fake_cams(cut)
    with pytest.raises(KeyboardInterrupt):
        _run(cut, stop_after=5)  # in the second epoch; the last checkpoint is the first's end
    cut_rd = RunDir.from_config(cut)
    assert load_checkpoint(cut_rd.checkpoint("aff_last"))["step"] == 4
    assert not cut_rd.checkpoint("aff").exists()
    assert _run(cut)["step"] == 8
    a, b = ckpt["model"], load_checkpoint(cut_rd.checkpoint("aff"))["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(whole.seed)  # the weights did move: the comparison is not vacuous
    init = train_aff.build_network(whole.psa).state_dict()
    assert not torch.equal(init["f9.weight"], a["f9.weight"])
    assert not torch.equal(init["b7.conv_branch2a.weight"], a["b7.conv_branch2a.weight"])
