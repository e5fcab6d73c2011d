"""The declared stage contract (csdseg/stages/registry.py): one list of commands for the CLI
and the pipeline, and "done" = outputs complete *and* made with today's settings, so a changed
setting reruns exactly the stages it shapes (and those after them), and nothing else."""
from __future__ import annotations

import os
import time

import pytest

from csdseg.cli import build_parser
from csdseg.config import load_config, save_config
from csdseg.data import build_source
from csdseg.runs import RunDir, eval_report_path
from csdseg.stages import pipeline
from csdseg.stages.registry import BY_NAME, PIPELINE, STAGES, fingerprint_keys

PRESET = "synthetic_irn"
# a baseline's own stages (the preset's refine.method=rw does not need train-aff: tested apart)
EVERY = [s for s in PIPELINE if s not in ("make-csd-masks", "train-aff")]
PSA_EVERY = [s for s in PIPELINE if s not in ("make-csd-masks", "make-ir-label", "train-irn")]


def tiny(root, runs, *extra):
    return load_config(PRESET, [f"data.root={root}", f"run_root={runs}", "name=b", *extra])


def fake_outputs(cfg) -> None:
    """Every stage's outputs present and recorded with ``cfg``, as a finished run leaves them."""
    rd = RunDir.from_config(cfg)
    ids = build_source(cfg.data, cfg.data.infer_split).ids
    for name in ("cam", "irn", "aff", "seg"):
        rd.checkpoint(name).parent.mkdir(parents=True, exist_ok=True)
        rd.checkpoint(name).write_bytes(b"weights")
    for folder, ext in ((rd.cam_dir, ".npy"), (rd.ir_label_dir, ".png"), (rd.sem_seg_dir, ".png")):
        folder.mkdir(parents=True, exist_ok=True)
        for i in ids:
            (folder / f"{i}{ext}").write_bytes(b"x")
    old = time.time() - 100
    for path in [*rd.root.rglob("*.npy"), *rd.root.rglob("*.png"), *rd.root.rglob("*.pt")]:
        os.utime(path, (old, old))
    for stage in ("eval_cam", "eval_sem_seg", "eval_seg"):
        eval_report_path(cfg, stage).parent.mkdir(parents=True, exist_ok=True)
        eval_report_path(cfg, stage).write_text("{}")
    for stage in [*EVERY, "train-aff"]:
        save_config(cfg, rd.config(stage))


def to_rerun(cfg, stages=EVERY) -> set[str]:
    return {s for s in stages if pipeline.done_reason(s, cfg) is None}


def test_cli_and_pipeline_read_one_list():
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "stage"]
    assert list(sub.choices) == [s.name for s in STAGES]
    assert list(pipeline.ORDER) == PIPELINE  # --from/--to and the plan follow the registry
    assert PIPELINE.index("train-cam") < PIPELINE.index("make-cam") < PIPELINE.index("train-seg")


@pytest.mark.parametrize("override, expected", [
    ("data.num_workers=0", set()),  # how, not what
    ("train.log_every=3", set()),
    ("csd.lambda_fg=0.5", set()),  # CSD off: its settings shape nothing
    ("eval.bg_threshold=0.2", {"eval-cam"}),
    ("seg.lr=0.5", {"train-seg", "eval-seg"}),
    ("seg.crf=true", {"eval-seg"}),
    ("refine.bg_threshold=0.3", {"make-sem-seg", "eval-sem-seg", "train-seg", "eval-seg"}),
    ("ir_label.fg_threshold=0.4", {"make-ir-label", "train-irn", "make-sem-seg", "eval-sem-seg",
                                   "train-seg", "eval-seg"}),
    ("cam.scales=[1.0]", set(EVERY) - {"train-cam"}),
    ("optim.lr=0.5", set(EVERY)),
])
def test_a_changed_setting_reruns_exactly_the_stages_it_shapes(synth_root, tmp_path, override,
                                                               expected):
    fake_outputs(tiny(synth_root, tmp_path))
    assert to_rerun(tiny(synth_root, tmp_path)) == set()
    assert to_rerun(tiny(synth_root, tmp_path, override)) == expected


AFTER_PSEUDO = {"make-sem-seg", "eval-sem-seg", "train-seg", "eval-seg"}


@pytest.mark.parametrize("override, expected", [
    ("psa.lr=0.5", {"train-aff"} | AFTER_PSEUDO),
    ("psa.low_alpha=2", {"train-aff"} | AFTER_PSEUDO),  # the cached scores are retired too
    ("psa.walk=mct", AFTER_PSEUDO),
    # PSA makes its own confident labels: IRN's (make-ir-label) are not needed, and their
    # settings rerun nothing
    ("ir_label.fg_threshold=0.4", set()),
    ("irn.lr=0.5", set()),
    ("cam.scales=[1.0]", set(PSA_EVERY) - {"train-cam"}),
])
def test_psa_settings_rerun_train_aff_or_the_walk(synth_root, tmp_path, override, expected):
    fake_outputs(tiny(synth_root, tmp_path, "refine.method=psa"))
    assert to_rerun(tiny(synth_root, tmp_path, "refine.method=psa"), PSA_EVERY) == set()
    assert to_rerun(tiny(synth_root, tmp_path, "refine.method=psa", override), PSA_EVERY) == expected
    assert "psa_scores" in {p.name for p in BY_NAME["train-aff"].made(RunDir(tmp_path / "b"))}


def test_why_names_the_changed_keys(synth_root, tmp_path):
    fake_outputs(tiny(synth_root, tmp_path))
    why = pipeline.stale_reason("make-cam", tiny(synth_root, tmp_path, "cam.flip=false"))
    assert why == "settings changed since it ran: cam.flip"
    assert set(fingerprint_keys("make-cam")) >= {"cam", "model", "train", "seed"}


def test_a_newer_warm_start_makes_the_fine_tuned_run_stale(synth_root, tmp_path):
    base = tiny(synth_root, tmp_path)
    fake_outputs(base)
    ft = tiny(synth_root, tmp_path, "name=ft", f"train.init_from={base.run_dir}")
    fake_outputs(ft)
    assert pipeline.done_reason("train-cam", ft) is not None
    later = time.time() + 10  # the baseline retrained after the fine-tuned run started
    os.utime(RunDir.from_config(base).checkpoint("cam"), (later, later))
    assert "is newer than this stage's outputs" in pipeline.stale_reason("train-cam", ft)


def test_stale_outputs_are_moved_aside_never_deleted(synth_root, tmp_path, monkeypatch):
    cfg = tiny(synth_root, tmp_path)
    fake_outputs(cfg)
    changed = tiny(synth_root, tmp_path, "cam.scales=[1.0]")
    ran = []
    monkeypatch.setattr(pipeline, "run_stage", lambda stage, c: ran.append(stage))
    [record] = pipeline.execute([pipeline.Step("make-cam", changed)], echo=False)
    assert record["status"] == "ran" and ran == ["make-cam"]
    rd = RunDir.from_config(cfg)
    [moved] = list((rd.root / "stale").iterdir())
    assert moved.name.startswith("make-cam-") and len(list((moved / "cam").iterdir())) == \
        len(build_source(cfg.data, "train").ids)
    assert not rd.cam_dir.exists()
    # a partial stage with unchanged settings (a killed run) is resumed, not moved
    fake_outputs(cfg)
    (rd.cam_dir / sorted(os.listdir(rd.cam_dir))[0]).unlink()
    pipeline.execute([pipeline.Step("make-cam", cfg)], echo=False)
    assert len(list((rd.root / "stale").iterdir())) == 1 and rd.cam_dir.is_dir()


def test_old_runs_keep_their_records(synth_root, tmp_path):
    """A run made before the file names were made consistent (configs/make-ir-label.yaml) or
    before an option existed still counts as done."""
    cfg = tiny(synth_root, tmp_path)
    fake_outputs(cfg)
    rd = RunDir.from_config(cfg)
    new = rd.config("make-ir-label")
    assert new.name == "make_ir_label.yaml"
    legacy = new.with_name("make-ir-label.yaml")
    text = "\n".join(l for l in new.read_text().splitlines() if "reduction" not in l)
    legacy.write_text(text)  # an older record, without csd.reduction
    new.unlink()
    assert rd.config("make-ir-label") == legacy
    assert pipeline.done_reason("make-ir-label", cfg) is not None
