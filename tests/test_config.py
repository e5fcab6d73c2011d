"""Config loading: presets, dotted overrides, and errors that name the key and the fix."""
from pathlib import Path

import pytest
import yaml

from csdseg.config import Config, ConfigError, load_config, parse_override, save_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


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
