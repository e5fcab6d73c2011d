"""Config loading: presets, dotted overrides, and errors that name the key and the fix."""
import importlib
import subprocess
import sys

import pytest
import yaml

from csdseg.config import (PRESETS_DIR, Config, ConfigError, Pattern, Registry, allowed_values,
                           choice_keys, load_config, parse_override, preset_names, save_config)
from csdseg.config.choices import _source_keys
from csdseg.config.loading import RENAMED

CONFIGS = sorted(PRESETS_DIR.glob("*.yaml"))
CHOICE_KEYS = dict(choice_keys())


def test_defaults_are_the_official_irn_recipe():
    cfg = Config()
    assert (cfg.model.name, cfg.train.batch_size, cfg.train.crop_size) == ("resnet50_cam", 16, 512)
    assert (cfg.optim.lr, cfg.optim.head_lr_mult, cfg.optim.weight_decay) == (0.1, 10.0, 1e-4)
    assert cfg.optim.momentum == 1e-4  # IRN's positional-argument quirk, reproduced
    assert cfg.train.epochs == 5 and cfg.train.resize_long == [320, 640]
    assert cfg.cam.scales == [1.0, 0.5, 1.5, 2.0] and cfg.eval.bg_threshold == 0.15
    assert (cfg.csd.lambda_fg, cfg.csd.lambda_bg) == (0.01, 0.1)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_preset_loads(path):
    assert isinstance(load_config(path), Config)


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["train.epochs=3", "data.root=/data/VOC2012", "cam.scales=[1.0, 0.5]",
                             "optim.lr=1e-3", "train.hflip=false"])
    assert cfg.train.epochs == 3 and cfg.data.root == "/data/VOC2012"
    assert cfg.cam.scales == [1.0, 0.5] and cfg.optim.lr == 1e-3 and cfg.train.hflip is False


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch' \(did you mean 'train.epochs'\?\)"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="did you mean 'data'"):
        load_config(None, ["dta.root=x"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer, got 'three'"):
        load_config(None, ["train.epochs=three"])
    with pytest.raises(ConfigError, match="train.hflip: expected true or false"):
        load_config(None, ["train.hflip=1"])


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'train.epochz'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.epochs=2", "name=x"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["train"]["epochs"] == 2


def test_every_choice_key_is_declared():
    """The settings with a fixed set of values; a new one is declared in csdseg/config/sections.py
    (Literal / Registry / Pattern) and then checked at load by the test below."""
    assert list(CHOICE_KEYS) == [
        "device", "data.dataset", "model.name", "model.detach_after", "optim.name",
        "optim.schedule", "train.augment", "cam.normalize", "cam.format", "cam.backend",
        "csd.teacher", "csd.kl_channels", "csd.apply_to", "csd.pair_by", "csd.fg_paste",
        "csd.normalizer", "csd.kl_classes",
        "csd.teacher_classes", "csd.variant", "csd.masks", "csd.bg_normalizer",
        "csd.fg_kl_terms", "csd.bg_kl_terms", "csd.reduction", "irn.backbone", "refine.method",
        "refine.crf_preset", "seg.model", "seg.output_stride", "seg.loss_at", "seg.crf_preset",
        "psa.network", "psa.walk"]


def _bad_and_good(tp):
    spec = allowed_values(tp)
    if isinstance(spec, Pattern):
        return "tpu", [spec.text], ["auto", "cpu", "cuda", "cuda:1", "CPU"]
    listed = [str(v) for v in spec if v != ""]
    bad = 99 if isinstance(spec[0], int) else f"{listed[-1]}x"
    return bad, listed, list(spec)


@pytest.mark.parametrize("key", list(CHOICE_KEYS))
def test_bad_choice_fails_at_load(key, tmp_path):
    """A value outside a setting's choices fails in load_config (before any stage runs), naming
    the key and listing the allowed values; every allowed value loads."""
    bad, listed, good = _bad_and_good(CHOICE_KEYS[key])
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}={bad}"])
    msg = str(err.value)
    assert msg.startswith(f"{key} must be ") and (f"got '{bad}'" in msg or f"got {bad}" in msg)
    assert all(value in msg for value in listed), msg
    section, _, leaf = key.rpartition(".")  # the same from a YAML file
    data = {section: {leaf: bad}} if section else {leaf: bad}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=f"^{key} must be "):
        load_config(tmp_path / "c.yaml")
    for value in good:
        cfg = load_config(None, [f"{key}={value}" if value != "" else f"{key}="])
        obj = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        assert obj == value


def test_bad_choice_suggests_the_closest_value():
    with pytest.raises(ConfigError, match=r"^refine.method must be one of rw, crf, psa, got 'rww' "
                                          r"\(did you mean 'rw'\?\)$"):
        load_config(None, ["refine.method=rww"])
    with pytest.raises(ConfigError, match=r"seg.model must be one of deeplabv2_resnet101, .*"
                                          r"\(did you mean 'deeplabv3plus'\?\)"):
        load_config(None, ["seg.model=deeplabv3"])
    with pytest.raises(ConfigError, match=r"seg.output_stride must be one of 0, 8, 16, got 32$"):
        load_config(None, ["seg.output_stride=32"])


def test_declared_choices_match_the_code():
    """The values declared in sections.py are the ones the code accepts: registries are read from
    their module's source (no torch at load), tuples the stages check against are the same."""
    for key, tp in CHOICE_KEYS.items():
        for meta in getattr(tp, "__metadata__", ()):
            if isinstance(meta, Registry):
                live = tuple(getattr(importlib.import_module(meta.module), meta.name))
                assert _source_keys(meta.module, meta.name) == live, key
    from csdseg.files.cam import FORMATS
    from csdseg.csd.trainer import CHOICES
    from csdseg.csd.variants import MASK_KINDS, VARIANTS
    from csdseg.data.augment import CAM_RECIPES

    mirrored = {f"csd.{k}": tuple(v) for k, v in CHOICES.items()}
    mirrored.update({"csd.variant": VARIANTS, "csd.masks": ("",) + MASK_KINDS,
                     "cam.format": FORMATS, "train.augment": tuple(CAM_RECIPES)})
    for key, values in mirrored.items():
        assert allowed_values(CHOICE_KEYS[key]) == values, key


def test_presets_are_found_by_name(tmp_path, monkeypatch):
    """``-c voc_irn``, ``-c voc_irn.yaml`` and the old ``-c configs/voc_irn.yaml`` load the packaged
    preset from any folder; a file on disk wins; an unknown name lists the presets."""
    monkeypatch.chdir(tmp_path)
    assert "voc_irn" in preset_names() and "synthetic_irn" in preset_names()
    for spelling in ("voc_irn", "voc_irn.yaml", "configs/voc_irn.yaml"):
        assert load_config(spelling).name == "voc_irn"
    (tmp_path / "voc_irn.yaml").write_text("name: mine\n")
    assert load_config("voc_irn.yaml").name == "mine"
    with pytest.raises(ConfigError, match=r"config file voc_irm does not exist; the presets "
                                          r"\(-c NAME\) are coco_irn, .*voc_mct \(did you mean "
                                          r"'voc_irn'\?\)"):
        load_config("voc_irm")


def test_loading_a_config_imports_no_torch():
    code = ("import sys; from csdseg.config import load_config, preset_names\n"
            "[load_config(n, ['seg.model=deeplabv3plus']) for n in preset_names()]\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def _other_value(key: str):
    """A valid value of ``key`` other than its default (the renamed settings' types)."""
    from csdseg.config import Config, allowed_values, field_types

    section, leaf = key.split(".")
    default = getattr(getattr(Config(), section), leaf)
    choices = allowed_values(field_types(type(getattr(Config(), section)))[leaf])
    if choices:
        return next(v for v in choices if v != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, list):
        return [v * 0.5 for v in default]
    return default + 3


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_a_renamed_setting_is_read_under_its_old_name_with_a_warning(old, tmp_path, caplog):
    """Every renamed setting (seg.lr_head_mult -> seg.head_lr_mult, the refiners' irn.* ->
    refine.*, ...) still loads under its old name, from overrides, files and older runs'
    recorded configs, even into another section, and the warning names the new key."""
    import yaml

    from csdseg.config import fingerprint, load_config, save_config

    new = RENAMED[old]
    (old_section, old_leaf), (section, leaf) = old.split("."), new.split(".")
    value = _other_value(new)
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    with caplog.at_level("WARNING", logger="csdseg.config"):
        cfg = load_config(None, [f"{old}={text}"])
    assert getattr(getattr(cfg, section), leaf) == value
    assert f"'{old}' is now '{new}'" in caplog.text
    file = tmp_path / "old.yaml"
    file.write_text(yaml.safe_dump({old_section: {old_leaf: value}}))
    assert getattr(getattr(load_config(file), section), leaf) == value
    # a run's record as an older csdseg wrote it: the value under the old section and name
    record = tmp_path / "stage.yaml"
    save_config(load_config(None, [f"{new}={text}"]), record)
    written = yaml.safe_load(record.read_text())
    written[old_section][old_leaf] = written[section].pop(leaf)
    if section != old_section and not written[section]:
        del written[section]
    record.write_text(yaml.safe_dump(written))
    assert fingerprint.recorded_settings(record)[section][leaf] == value


def test_the_training_sections_share_one_loop_and_one_sgd_definition():
    """epochs / batch_size / crop_size / hflip / max_steps and lr / momentum / weight_decay /
    poly_power are declared once (csdseg.config.common) and inherited; each section keeps its
    official recipe's defaults."""
    import dataclasses

    from csdseg.config import (IrnConfig, OptimConfig, PsaConfig, SegConfig, SgdPoly,
                               TrainConfig, TrainLoop)

    for cls in (TrainConfig, IrnConfig, SegConfig, PsaConfig):
        assert issubclass(cls, TrainLoop), cls
    for cls in (OptimConfig, IrnConfig, SegConfig, PsaConfig):
        assert issubclass(cls, SgdPoly), cls
    defaults = {cls.__name__: {f.name: (f.default if f.default is not dataclasses.MISSING
                                        else f.default_factory())
                               for f in dataclasses.fields(cls)}
                for cls in (TrainConfig, IrnConfig, SegConfig, PsaConfig)}
    assert defaults["IrnConfig"]["epochs"] == 3 and defaults["IrnConfig"]["batch_size"] == 32
    assert (defaults["SegConfig"]["lr"], defaults["SegConfig"]["momentum"]) == (2.5e-4, 0.9)
    assert (defaults["PsaConfig"]["momentum"], defaults["PsaConfig"]["crop_size"]) == (5e-4, 448)
    assert defaults["TrainConfig"]["crop_size"] == 512 and defaults["TrainConfig"]["epochs"] == 5


def test_a_setting_under_both_its_old_and_new_name_must_agree(tmp_path):
    both = tmp_path / "both.yaml"
    both.write_text("irn:\n  method: psa\nrefine:\n  method: crf\n")
    with pytest.raises(ConfigError, match=r"'irn.method' \('psa'\) and 'refine.method' \('crf'\) "
                       r"are the same setting under its old and new names; keep only"):
        load_config(both)
    both.write_text("irn:\n  method: crf\nrefine:\n  method: crf\n")
    assert load_config(both).refine.method == "crf"
    # in different sources the later one wins, as for any key: the override here
    assert load_config(None, ["irn.method=psa", "refine.method=crf"]).refine.method == "crf"
