"""Progress bars (csdseg.engine.progress): a log or CI output gets a few plain lines per bar, not a
carriage-return redraw every 0.1 s; a terminal still gets tqdm's bar."""
from __future__ import annotations

import io

from tqdm import tqdm

from csdseg.engine.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_thousand_updates_to_a_log_give_a_few_plain_lines():
    out = io.StringIO()
    seen = list(progress_bar(range(1000), desc="make-cam", file=out, unit="img"))
    lines = out.getvalue().splitlines()
    assert seen == list(range(1000)) and len(lines) == 4 and "\r" not in out.getvalue()
    assert [line.split()[1] for line in lines] == ["25%", "50%", "75%", "100%"]
    assert lines[-1].startswith("make-cam: 100% (1000/1000 img, ")


def test_manual_updates_postfix_and_a_resumed_start():
    out = io.StringIO()
    bar = progress_bar(total=8, desc="render", file=out, initial=6)  # 6 done before a resume
    bar.set_postfix(loss="0.1234")
    bar.update()
    bar.update()
    bar.close()
    lines = out.getvalue().splitlines()  # 75% was passed before the resume: not announced
    assert len(lines) == 1 and lines[0].startswith("render: 100% (8/8 it, ")
    assert lines[0].endswith(", loss=0.1234)")


def test_unknown_total_gives_one_line_at_the_end_and_disable_gives_none():
    out = io.StringIO()
    assert sum(progress_bar((i for i in range(50)), desc="synth", file=out)) == sum(range(50))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synth: (50 it, ")
    quiet = io.StringIO()
    assert list(progress_bar(range(5), file=quiet, disable=True)) == list(range(5))
    assert quiet.getvalue() == ""


def test_a_terminal_gets_the_tqdm_bar():
    bar = progress_bar(range(3), file=_Terminal())
    assert isinstance(bar, tqdm) and not isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2]
    assert isinstance(progress_bar(range(3), file=io.StringIO()), LineProgress)
