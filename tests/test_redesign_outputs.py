"""The architecture redesign (issue 13) changed no result: the tiny pipeline's outputs with
today's code equal those recorded with the last commit before it (e400652), by the same script
(tests/golden/record_redesign.py) on the same data (the session's synthetic dataset).

On the recording machine they are bit-identical (every CAM, confident label, pseudo-mask and
DeepLab prediction). The test allows what another CPU's float rounding can change: CAMs within
1e-4 (they are max-normalised to [0, 1]) and at most 0.5% of any label map's pixels."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from record_redesign import collect, run_pipeline  # noqa: E402


@pytest.mark.slow
def test_the_redesign_kept_every_output(synth_root, tmp_path, one_thread):
    want = np.load(GOLDEN / "redesign.npz")
    got = collect(run_pipeline(synth_root, tmp_path))
    assert sorted(got) == sorted(want.files), "the pipeline wrote other images"
    for key in want.files:
        kind, a, b = key.split("/")[0], want[key], got[key]
        assert a.shape == b.shape and a.dtype == b.dtype, key
        if kind == "keys":
            assert np.array_equal(a, b), key
        elif kind in ("cam", "high_res"):
            np.testing.assert_allclose(b, a, atol=1e-4, err_msg=key)
        else:
            assert (a != b).mean() <= 0.005, f"{key}: {(a != b).sum()} of {a.size} pixels differ"
