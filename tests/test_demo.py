"""The demo's closing lines (csdseg/stages/demo.py): one seed at demo size, then the study.

The study's figures live once, in ``demo.STUDY``; these tests read them back from
docs/csd_study.md so that a new round of the study cannot leave the demo quoting old numbers.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from csdseg.stages import demo

ROOT = Path(__file__).resolve().parents[1]
STUDY_MD = ROOT / "docs" / "csd_study.md"


def _defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args([])


def _rows(delta: float | None) -> list[dict]:
    # the shape csdseg.report.table.summarise returns: fractions, delta = CSD - control
    return [{"key": "cam_miou", "metric": "CAM mIoU @bg threshold", "baseline": 0.41,
             "control": 0.424, "csd": None if delta is None else 0.424 + delta, "delta": delta},
            {"key": "seg_miou", "metric": "segmentation mIoU", "baseline": 0.127,
             "control": 0.118, "csd": 0.128, "delta": 0.01}]


def _study_table() -> dict[str, list[str]]:
    """The cells of the table under "## Where the study ends", keyed by their first two cells."""
    text = STUDY_MD.read_text()
    section = text[text.index("## Where the study ends"):]
    section = section[:section.index("\n## ", 3)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 7 and not cells[0].startswith("---"):
            rows[f"{cells[0]} | {cells[1]}"] = cells
    return rows


def _mean_std(cell: str) -> tuple[float, float]:
    m = re.match(r"([+-]\d+\.\d) ± (\d+\.\d)", cell)
    assert m, cell
    return float(m.group(1)), float(m.group(2))


def _percent(cell: str) -> int:
    m = re.search(r"\(([+-]?\d+)%\)", cell)
    assert m, cell
    return int(m.group(1))


@pytest.mark.parametrize("baseline", list(demo.PRESETS))
def test_the_study_figures_match_docs_csd_study(baseline):
    fig, table = demo.STUDY[baseline], _study_table()
    key = next(k for k in table if k.startswith(f"{fig['row']} | literal `{fig['setting']}`"))
    _, _, cam, cooc, gap, context, _ = table[key]
    assert _mean_std(cam) == fig["cam_miou"]
    assert _percent(cooc) == fig["cooc"]
    assert _mean_std(gap)[0] == fig["gap"] and "wider" in gap
    assert _percent(context) == fig["context"]
    # the closing lines say "none down by more than 8%": true of this row
    assert min(fig["cooc"], fig["context"]) >= -8


def test_the_study_regime_matches_its_protocol():
    protocol = STUDY_MD.read_text().split("### Each table from one command")[0]
    protocol = " ".join(protocol.split())  # the doc wraps its lines anywhere
    reg = demo.STUDY_REGIME
    assert f"{reg['n_train']:,} train / 250 val images of {reg['size']} px" in protocol
    assert (f"{demo.STUDY['irn']['epochs']} epochs (IRN) or {demo.STUDY['mct']['epochs']} "
            "(tiny MCTformer-V2)") in protocol
    assert f"train {reg['extra_epochs']} more epochs" in protocol
    assert "confirmation seeds 3, 4, 5" in protocol.lower() and reg["seeds"] == 3


@pytest.mark.parametrize("delta", [-0.040, -0.001, 0.023, 0.090])
def test_verdict_labels_one_seed_and_quotes_the_study(delta):
    for baseline in demo.PRESETS:
        line = demo.verdict(_rows(delta), baseline)
        fig = demo.STUDY[baseline]
        assert line.startswith(f"{fig['name']}, CSD - control on CAM mIoU: {100 * delta:+.1f} "
                               "points, one seed at demo size; the study's 3-seed figure is ")
        assert demo.study_figure(baseline) in line and "docs/csd_study.md" in line
        # one seed cannot say which way CSD moves the metric, whatever its size
        assert not re.search(r"helped|hurt|no measurable effect", line)


def test_verdict_with_a_missing_run():
    assert demo.verdict(_rows(None), "irn") == (
        "IRN, CSD - control on CAM mIoU: not available (a run is missing).")


def test_takeaway_gives_both_regimes_the_study_and_where_to_read():
    args = _defaults()
    lines = demo.takeaway({"irn": -4.0, "mct": None}, args)
    text = " ".join(lines)
    assert max(map(len, lines)) <= 110
    assert f"{args.n_train} train images of {args.size} px" in text
    assert "1,000 train images of 128 px" in text and "may differ from the study's" in text
    assert "this demo (1 seed, demo size)   the study (3 seeds, full synthetic size)" in text
    assert "  IRN        -4.0 points                     +0.7 +- 0.3 points" in lines
    assert "  MCTformer  n/a (a run is missing)          +2.3 +- 0.1 points" in lines
    assert "+0.7 +- 0.3 points" in text and "+2.3 +- 0.1 points" in text
    assert "none of the errors it targets by more than 8%" in text
    assert "co-occurrence confusion 0% / 0%, context over-activation -8% / -3%" in text
    assert lines[-1].startswith("Read more: docs/csd_study.md")
    assert not re.search(r"helped|hurt", text)


def test_main_ends_with_the_takeaway(monkeypatch, tmp_path, capsys):
    """main() prints the tables, the times, then the takeaway last (no training: stubbed)."""
    import csdseg.data.synthetic as synthetic
    import csdseg.stages.pipeline as pipeline

    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: tmp_path)
    monkeypatch.setattr(pipeline, "run_pipeline", lambda preset, overrides, **k: {
        "table": _rows(-0.04 if preset == "synthetic_irn" else 0.01), "report": "r.html",
        "names": {"baseline": "b", "control": "c", "csd": "d"}})
    args = _defaults()
    args.threads = 0  # leave torch's threads to the test process
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    assert "IRN: baseline / control / CSD, one seed at demo size" in out
    assert "MCTformer, CSD - control on CAM mIoU: +1.0 points, one seed at demo size" in out
    tail = out.rstrip().splitlines()
    assert tail[-1].startswith("Read more: docs/csd_study.md")
    assert out.index("times:") < out.index("What to take away")
