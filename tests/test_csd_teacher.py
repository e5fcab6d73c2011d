"""csd.teacher=frozen: the baseline checkpoint that made the masks, loaded into its own copy of
the model, eval mode, no gradient, never updated, gives the teacher's maps of X_s."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from csdseg.config import ConfigError, CsdConfig, load_config
from csdseg.csd.trainer import CSDStep, check_config, load_frozen_teacher
from csdseg.engine.checkpoint import load_weights, save_final
from csdseg.errors import StageError
from csdseg.stages.cam_model import build_cam_model
from csdseg.runs import MissingInputError

pytestmark = pytest.mark.usefixtures("one_thread")
K = 4


def _config(tmp_path, *overrides):
    return load_config(None, [
        "name=csd", f"run_root={tmp_path / 'runs'}", "model.name=resnet10t_cam",
        "model.pretrained=none", "model.detach_after=0", "model.frozen_bn=false",
        "csd.enabled=true", "csd.teacher=frozen", "csd.from_run=base", "csd.lambda_fg=1",
        "csd.lambda_bg=1", *overrides])


def _baseline(cfg, name="resnet10t_cam"):
    """A 'trained' baseline: random weights with non-trivial batch-norm statistics, saved as
    train-cam saves runs/base/checkpoints/cam.pt."""
    torch.manual_seed(1)
    model = build_cam_model(cfg.model, K).train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64) * 2 + 0.5)  # moves the running statistics
    path = Path(cfg.run_root) / "base" / "checkpoints" / "cam.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_final(path, model, {"model": name, "num_classes": K})
    return path


def _batch() -> dict:
    """B = 2 multi-label X_m with M = 2 views; fg masks on the top-left quarter (4 cells)."""
    g = torch.Generator().manual_seed(0)
    img, x_s = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    m_fg = torch.zeros(2, 64, 64, dtype=torch.bool)
    m_fg[:, :32, :32] = True
    x_fg = torch.where(m_fg[:, None], x_s, img)
    x_bg = torch.where(~m_fg[:, None], x_s, img)
    return {"img": img, "label": torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0]]),
            "index": torch.tensor([0, 1]), "epoch": torch.tensor([0, 0]),
            "skipped": torch.tensor(0), "rows": torch.tensor([0, 1]), "x_s": x_s, "x_fg": x_fg,
            "x_bg": x_bg, "m_fg": m_fg, "m_bg": ~m_fg, "cls": torch.tensor([2, 1]),
            "label_fg": torch.tensor([[0.0, 0, 1, 0], [0, 1, 0, 0]]),
            "source_index": torch.tensor([5, 6])}


def test_frozen_teacher_is_the_baseline_and_never_moves(tmp_path):
    cfg = _config(tmp_path)
    path = _baseline(cfg)
    teacher = load_frozen_teacher(cfg, K)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = build_cam_model(cfg.model, K)
    load_weights(student, path)  # the CSD run warm-starts from the same baseline
    student.train()
    optimizer = torch.optim.SGD(student.param_groups(cfg.optim.lr, cfg.optim.weight_decay,
                                                    cfg.optim.head_lr_mult), lr=0.5, momentum=0.9)
    step, batch = CSDStep(cfg.csd, teacher), _batch()
    start = {k: v.clone() for k, v in student.state_dict().items()}
    for _ in range(3):
        loss, scalars = step(student, batch)
        assert scalars["loss_fg"] > 0 and scalars["loss_bg"] > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and student.training
    moved = [k for k, v in student.state_dict().items() if not torch.equal(start[k], v)]
    assert len(moved) > len(start) // 2  # the student learns
    # the teacher's maps of X_s are the baseline checkpoint's, eval mode
    baseline = build_cam_model(cfg.model, K)
    load_weights(baseline, path)
    with torch.no_grad():
        expected = baseline.eval()(batch["x_s"])["maps"]
    assert torch.equal(step._teacher_maps(student, batch["x_s"]), expected)
    # ... which the student's own (teacher=detached) maps no longer are
    own = CSDStep(CsdConfig(teacher="detached"))._teacher_maps(student, batch["x_s"])
    assert not torch.allclose(own, expected) and student.training


def test_teacher_choice_and_frozen_inputs_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="csd.teacher must be one of detached, joint, ema, "
                                          "frozen, got 'baseline'"):
        check_config(CsdConfig(teacher="baseline"))
    with pytest.raises(ConfigError, match="csd.teacher=frozen needs csd.from_run"):
        check_config(CsdConfig(teacher="frozen"))
    check_config(CsdConfig(teacher="frozen", from_run="base"))
    with pytest.raises(ValueError, match="load_frozen_teacher"):
        CSDStep(CsdConfig(teacher="frozen", from_run="base"))
    with pytest.raises(ConfigError, match="not this run"):
        load_frozen_teacher(_config(tmp_path, "csd.from_run=csd"), K)
    cfg = _config(tmp_path)
    with pytest.raises(MissingInputError, match=r"runs/base/checkpoints/cam.pt does not exist; "
                                                r"train the baseline first"):
        load_frozen_teacher(cfg, K)
    _baseline(cfg, name="resnet18_cam")  # made for another model: refused, as a warm start
    with pytest.raises(StageError, match="trained with model='resnet18_cam'"):
        load_frozen_teacher(cfg, K)
