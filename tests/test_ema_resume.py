"""csd.teacher=ema survives a resume: the EMA teacher goes into the resumable checkpoint (the
loop's ``extra``), so a run killed mid-training and resumed ends with the same student *and*
the same teacher, bit for bit, as an uninterrupted run. Without it the resumed run would
restart the EMA from the student's weights at the resume step."""
from __future__ import annotations

import pytest
import torch

from csdseg.config import CsdConfig
from csdseg.csd.trainer import CSDStep
from csdseg.engine.checkpoint import load_checkpoint
from csdseg.engine.logger import read_log
from csdseg.engine.loop import TrainSpec, train
from csdseg.models import build_model
from csdseg.runs import RunDir

# bit-exact comparisons need one thread count on both sides (see tests/test_resume.py)
pytestmark = pytest.mark.usefixtures("one_thread")
K, S, N, BATCH, EPOCHS = 4, 48, 8, 2, 2  # 4 steps an epoch, 8 in all
KILL_AFTER = 5  # in the second epoch: the skip count's epoch bookkeeping is resumed too


class Pastes(torch.utils.data.Dataset):
    """(epoch, index) -> a multi-label X_m and a single-label X_s, a pure function of the key."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        g = torch.Generator().manual_seed(100 * epoch + i)
        label = torch.zeros(K)
        label[[i % K, (i + 1) % K]] = 1.0
        return {"img": torch.randn(3, S, S, generator=g), "x_s": torch.randn(3, S, S, generator=g),
                "label": label, "cls": (i + 2) % K, "epoch": epoch}


def collate(items: list[dict]) -> dict:
    """One paste per X_m: the fg mask is X_s's top-left quarter, as train-cam's CSD batch."""
    img = torch.stack([it["img"] for it in items])
    x_s = torch.stack([it["x_s"] for it in items])
    m_fg = torch.zeros(len(items), S, S, dtype=torch.bool)
    m_fg[:, :S // 2, :S // 2] = True
    return {"img": img, "label": torch.stack([it["label"] for it in items]), "x_s": x_s,
            "x_fg": torch.where(m_fg[:, None], x_s, img), "x_bg": torch.where(~m_fg[:, None], x_s, img),
            "m_fg": m_fg, "m_bg": ~m_fg, "cls": torch.tensor([it["cls"] for it in items]),
            "rows": torch.arange(len(items)), "epoch": torch.tensor([it["epoch"] for it in items]),
            "skipped": torch.tensor(0)}


class Killed(Exception):
    pass


class KilledAfter(CSDStep):
    """The CSD step of a process that dies after ``steps`` steps (their checkpoints written)."""

    def __init__(self, cfg: CsdConfig, steps: int) -> None:
        super().__init__(cfg)
        self.left = steps

    def __call__(self, model, batch):
        if self.left == 0:
            raise Killed
        self.left -= 1
        return super().__call__(model, batch)


def run(folder, step_fn: CSDStep) -> dict:
    torch.manual_seed(0)
    model = build_model("resnet10t_cam", K, "none", detach_after=0, frozen_bn=False)
    optimizer = torch.optim.SGD(model.param_groups(0.05, 1e-4, 10.0), lr=0.05, momentum=0.9)
    return train(TrainSpec(
        stage="train_cam", ckpt_name="cam", model=model, optimizer=optimizer, dataset=Pastes(),
        batch_size=BATCH, epochs=EPOCHS, lr_at=lambda step, total: 0.05 * (1 - step / total),
        step_fn=step_fn, device=torch.device("cpu"), run=RunDir(folder), save_every=KILL_AFTER,
        log_every=1, collate_fn=collate))


def test_a_resumed_ema_run_ends_as_an_uninterrupted_one(tmp_path):
    cfg = CsdConfig(enabled=True, teacher="ema", ema_momentum=0.8, lambda_fg=1.0, lambda_bg=1.0)
    whole = CSDStep(cfg)
    run(tmp_path / "whole", whole)

    with pytest.raises(Killed):
        run(tmp_path / "cut", KilledAfter(cfg, KILL_AFTER))
    saved = load_checkpoint(RunDir(tmp_path / "cut").checkpoint("cam_last"))
    assert saved["step"] == KILL_AFTER and saved["extra"]["step_fn"]["ema"] is not None
    resumed = CSDStep(cfg)  # a new process: nothing of the killed one but its checkpoint
    assert run(tmp_path / "cut", resumed)["step"] == EPOCHS * N // BATCH

    for a, b in ((whole.ema.state_dict(), resumed.ema.state_dict()),
                 (load_checkpoint(RunDir(tmp_path / "whole").checkpoint("cam"))["model"],
                  load_checkpoint(RunDir(tmp_path / "cut").checkpoint("cam"))["model"])):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [read_log(RunDir(tmp_path / d).log("train_cam"), "step") for d in ("whole", "cut")]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
    assert [r["csd_skipped_epoch"] for r in logs[0]] == [r["csd_skipped_epoch"] for r in logs[1]]
    # the teacher did move away from the student: the comparison above is not vacuous
    student = load_checkpoint(RunDir(tmp_path / "whole").checkpoint("cam"))["model"]
    ema = whole.ema.state_dict()
    assert not all(torch.equal(ema[k], student[k]) for k in ema if ema[k].is_floating_point())


def test_a_resumed_run_with_stochastic_layers_ends_as_an_uninterrupted_one(tmp_path):
    """MCTformer's drop path draws from the global torch RNG every step; a resumed run restores
    that RNG, and nothing between the restore and the next step may draw from it (a DataLoader
    iterator started mid-epoch did: the fault harness's MCTformer + CSD episodes caught it)."""
    def run_mct(folder, step_fn):
        torch.manual_seed(0)
        model = build_model("mctformer_v2_tiny", K, "none")  # drop_path_rate 0.1
        optimizer = torch.optim.AdamW(model.param_groups(1e-3, 1e-4, 10.0), lr=1e-3)
        return train(TrainSpec(
            stage="train_cam", ckpt_name="cam", model=model, optimizer=optimizer,
            dataset=Pastes(), batch_size=BATCH, epochs=EPOCHS, lr_at=lambda step, total: 1e-3,
            step_fn=step_fn, device=torch.device("cpu"), run=RunDir(folder),
            save_every=KILL_AFTER, log_every=1, collate_fn=collate))

    cfg = CsdConfig(enabled=True)
    run_mct(tmp_path / "whole", CSDStep(cfg))
    with pytest.raises(Killed):
        run_mct(tmp_path / "cut", KilledAfter(cfg, KILL_AFTER))
    run_mct(tmp_path / "cut", CSDStep(cfg))
    a, b = (load_checkpoint(RunDir(tmp_path / d).checkpoint("cam"))["model"] for d in ("whole", "cut"))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    logs = [read_log(RunDir(tmp_path / d).log("train_cam"), "step") for d in ("whole", "cut")]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
