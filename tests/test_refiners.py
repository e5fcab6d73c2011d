"""The refiner registry (csdseg.refiners): its entries, the config check, make-sem-seg's dispatch."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from csdseg.files.cam import CamRecord
from csdseg.config import ConfigError, IrnConfig, PsaConfig, RefineConfig, load_config
from csdseg.config.choices import allowed_values, choice_keys
from csdseg.refiners import REFINERS, Refiner, get_refiner, needs_training, training_stages


def test_config_choices_are_the_registry():
    """Every refiner the config accepts exists, and every refiner is accepted."""
    tp = dict(choice_keys())["refine.method"]
    assert tuple(allowed_values(tp)) == tuple(REFINERS) == ("rw", "crf", "psa")
    assert RefineConfig().method in REFINERS


def test_unknown_refiner_fails_at_load_with_the_allowed_list():
    with pytest.raises(ConfigError, match=r"^refine.method must be one of rw, crf, psa, got 'xyz'$"):
        load_config(None, ["refine.method=xyz"])
    with pytest.raises(ConfigError, match=r"^refine.method must be one of rw, crf, psa, got 'xyz'$"):
        get_refiner("xyz")  # a Config built in code meets the same message in make-sem-seg


def test_entries_describe_themselves():
    fields = {section: {f.name for f in dataclasses.fields(cls)}
              for section, cls in (("irn", IrnConfig), ("psa", PsaConfig),
                                           ("refine", RefineConfig))}
    for name, refiner in REFINERS.items():
        assert isinstance(refiner, Refiner) and refiner.name == name
        assert refiner.description and "\n" not in refiner.description
        assert callable(refiner.prepare) and callable(refiner.refine) and callable(refiner.check)
        for key in refiner.settings:
            section, _, leaf = key.partition(".")
            assert leaf in fields[section], key
    assert needs_training("rw") == "train-irn" and REFINERS["rw"].checkpoint == "irn"
    assert needs_training("crf") is None and REFINERS["crf"].checkpoint is None
    assert needs_training("psa") == "train-aff" and REFINERS["psa"].checkpoint == "aff"
    assert training_stages() == ("train-irn", "train-aff")


def test_trained_by_and_checkpoint_go_together():
    with pytest.raises(ValueError, match="trained_by and checkpoint go together"):
        Refiner("x", "x", "train-x", None, prepare=lambda c, r: None,
                refine=lambda s, r, i: None, parallel=False)


def test_crf_refiner_maps_channels_to_class_indices():
    """Background where the CAMs are weak, class index + 1 where one is strong."""
    img = np.full((32, 32, 3), 40, np.uint8)
    img[8:24, 8:24] = (220, 60, 60)  # the object, where its CAM is strong
    high = np.zeros((1, 32, 32), np.float32)
    high[0, 8:24, 8:24] = 1.0
    record = CamRecord(np.array([6]), np.ascontiguousarray(high[:, ::4, ::4]), high)
    crf = REFINERS["crf"]
    labels = crf.refine(crf.prepare(load_config(None, []), None), record, img)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 7}
    assert labels[16, 16] == 7 and labels[0, 0] == 0


def test_the_registry_imports_without_torch():
    """The pipeline asks needs_training; the config check reads the keys from source."""
    import subprocess
    import sys

    code = ("import sys, csdseg.refiners as r; r.needs_training('rw'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

