"""Typed configuration: one dataclass per stage, grouped in :class:`Config`.

A config is built from the defaults, then a YAML preset (``-c configs/voc_irn.yaml``), then
dotted command-line overrides (``train.epochs=3``). Every key and every value is checked: an
unknown key or a value of the wrong type raises :class:`ConfigError` naming the key and the
closest valid one, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message says which and how to fix it."""


@dataclass
class DataConfig:
    dataset: str = "voc"  # voc | coco | custom (the synthetic data uses the voc layout)
    root: str = "data/VOC2012"
    train_split: str = "train_aug"  # images the classifier is trained on
    infer_split: str = "train_aug"  # images make-cam writes maps for (IRN: train_aug)
    eval_split: str = "train"  # images eval-cam scores (IRN: VOC train, 1,464 masks)
    label_file: str = ""  # "" = the dataset's default (built-in for VOC, root/cls_labels.npy else)
    mask_dir: str = ""  # "" = the dataset's default ground-truth folder
    csv: str = ""  # custom datasets: the image,labels CSV
    num_workers: int = 2
    skip_bad_images: bool = False  # decode every image upfront, leave out (and log) unreadable ones


@dataclass
class ModelConfig:
    name: str = "resnet50_cam"  # a key of csdseg.models.MODELS
    pretrained: str = "hub"  # hub | none | path to a local weights file
    num_classes: int = 0  # 0 = take it from the dataset
    # IRN freezes the stem and detaches features after stage 2 (2); 0 trains every stage,
    # which a network trained from scratch (the synthetic demo) needs.
    detach_after: int = 2
    frozen_bn: bool = True  # IRN's FixedBatchNorm; false lets batch statistics train
    # MCTformer only (official values): stochastic depth, and refining the maps with the
    # patch-to-patch attention in make-cam.
    drop_path_rate: float = 0.1
    patch_attn_refine: bool = True


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (IRN) | adamw (MCTformer)
    schedule: str = "poly"  # poly (IRN) | cosine (MCTformer: linear warm-up, cosine decay)
    warmup_epochs: int = 0  # cosine only: linear warm-up from 1e-6
    min_lr: float = 1e-5  # cosine only: the floor (DeiT/MCTformer)
    lr: float = 0.1
    head_lr_mult: float = 10.0
    weight_decay: float = 1e-4
    # IRN passes weight decay positionally into the momentum slot of torch.optim.SGD, so the
    # official recipe trains with momentum 1e-4. Kept for fidelity; 0.9 is the usual choice.
    momentum: float = 1e-4
    poly_power: float = 0.9


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 16
    crop_size: int = 512
    resize_long: list[int] = field(default_factory=lambda: [320, 640])
    hflip: bool = True
    augment: str = "irn"  # irn (resize-long + crop) | mct (DeiT random-resized crop)
    amp: bool = True  # mixed precision, used only on CUDA
    max_steps: int = 0  # 0 = no limit; a cap for smoke tests
    log_every: int = 20
    save_every: int = 200  # steps between resumable checkpoints (and at every epoch end)
    init_from: str = ""  # a checkpoint to start from (warm start), "" = pretrained backbone


@dataclass
class CamConfig:
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 1.5, 2.0])
    flip: bool = True
    normalize: str = "max"  # per-class normalisation: max (IRN) | minmax (MCTformer)
    format: str = "npy"  # cam/<id>.npy: npy (NumPy arrays) | irn (torch tensors, as official IRN)


@dataclass
class EvalConfig:
    bg_threshold: float = 0.15
    sweep_start: float = 0.0
    sweep_stop: float = 0.60
    sweep_step: float = 0.01


@dataclass
class CsdConfig:
    """Cross-domain Semantic Decoupling, a plug-in to train-cam (see docs/method.md)."""

    enabled: bool = False
    from_run: str = ""  # baseline run whose CAMs give the fg/bg masks ("" = this run's name)
    mask_source: str = ""  # a folder of pseudo-mask PNGs instead of the baseline's CRF masks
    lambda_fg: float = 0.01  # lambda1, on the fg-paste term
    lambda_bg: float = 0.1  # lambda2, on the bg-paste term
    tau: float = 0.1  # co-occurrence softmax temperature
    beta: float = 0.15  # constant background score in the per-cell distribution
    temperature: float = 0.1  # softmax temperature T of the per-cell distribution
    teacher: str = "detached"  # detached | joint | ema | frozen (from_run's checkpoints/cam.pt)
    kl_channels: str = "all"  # all | pasted
    apply_to: str = "multi"  # multi | all
    fg_paste: str = "same_location"  # same_location | random
    # Stability options (docs/csd.md): how maps are normalised before the per-cell softmax,
    # which classes enter the KL, which teacher classes the fg term keeps.
    normalizer: str = "global"  # max (per-class, differentiable) | detached_floor | global
    norm_floor: float = 1.0  # normalizer=detached_floor: floor of the detached per-class max
    kl_classes: str = "all"  # all | present (the two images' classes + background)
    teacher_classes: str = "all"  # all | pasted (teacher maps zeroed except class c, fg term)
    ema_momentum: float = 0.999  # teacher=ema
    dead_warn: float = 0.2  # warn when this share of present classes has an all-zero map
    # The pipeline warm-starts the CSD run from the baseline at optim.lr x this factor (a
    # fine-tuning rate; restarting the poly schedule at the full rate undoes the baseline).
    finetune_lr_mult: float = 0.1
    # Readings of Algorithm 1 (docs/csd.md). variant=authors fixes the options below (and
    # normalizer, beta, temperature, kl_*) to the authors' code, csdseg/csd/variants.py; each
    # option also works on its own with variant=ours. The defaults here are ours, bit for bit.
    variant: str = "ours"  # ours | authors (PSD_WSSS engine.py's training loop)
    masks: str = ""  # "" = the variant's: ours confident (ir_label/), authors final (sem_seg/)
    start_epoch: int = 0  # epochs (0-based) before this one train without CSD (X_m only)
    bg_normalizer: str = ""  # the bg term's normaliser; "" = csd.normalizer
    fg_background: bool = True  # false: the fg term's distribution has no background channel
    fg_teacher_scale: float = 1.0  # fg term: the teacher's logits x this (after / temperature)
    bg_student_scale: float = 1.0  # bg term: the student's logits x this (after / temperature)
    fg_kl_terms: str = "all"  # all | pasted (class c) | background: channels whose KL terms sum
    bg_kl_terms: str = "all"  # the same for the bg term
    # fg cells kept only where the teacher's map of class c, min-max normalised over its cells,
    # exceeds this; None = the variant's (ours: all cells, authors: 0.5)
    fg_teacher_threshold: float | None = None
    reduction: str = "cells"  # cells: mean over all covered cells | images: per image, then mean


@dataclass
class IrLabelConfig:
    """Confident labels from CAMs: two dense CRFs (IRN's cam_to_ir_label)."""

    fg_threshold: float = 0.30  # background score for the confident-foreground CRF
    bg_threshold: float = 0.05  # background score for the confident-background CRF
    crf_iters: int = 10
    workers: int = 0  # 0 = one per CPU core


@dataclass
class IrnConfig:
    """The inter-pixel relation network (IRN's train_irn) and its random walk."""

    backbone: str = "resnet50.tv_in1k"  # or resnet18 / resnet10t for CPU demos
    pretrained: str = "hub"  # hub | none | path to local ImageNet weights for the backbone
    epochs: int = 3
    batch_size: int = 32
    crop_size: int = 512
    rescale: list[float] = field(default_factory=lambda: [0.5, 1.5])
    hflip: bool = True
    lr: float = 0.1
    dp_lr_mult: float = 10.0  # IRN: the displacement branch learns at 10x the boundary branch
    weight_decay: float = 1e-4
    momentum: float = 1e-4  # IRN's PolyOptimizer passes weight decay into SGD's momentum slot
    poly_power: float = 0.9
    max_steps: int = 0  # 0 = no limit; a cap for smoke tests
    path_radius: int = 10
    beta: float = 10.0
    exp_times: int = 8
    walk_radius: int = 5
    sem_seg_bg_threshold: float = 0.25
    method: str = "rw"  # make-sem-seg: rw (IRN random walk) | crf (CAM + dense CRF)
    crf_preset: str = "deeplab_v2"  # method=crf: a key of csdseg.ops.crf.SOFTMAX_PRESETS
    crf_bg_threshold: float = 0.15  # method=crf: constant background score before the CRF
    walk_threads: int = 1  # CPU threads per random walk (0 = torch's default)
    # Deviation for from-scratch runs (synthetic presets): start IRN's frozen backbone from this
    # run's CAM classifier (same architecture) instead of ImageNet weights.
    backbone_from_cam: bool = False
    # Deviation for from-scratch runs: the backbone learns with the branches (IRN freezes it).
    train_backbone: bool = False


@dataclass
class SegConfig:
    """The segmentation network trained on pseudo-masks (DeepLab)."""

    model: str = "deeplabv2_resnet101"  # a key of csdseg.models.deeplab.SEG_MODELS
    backbone: str = ""  # timm backbone, "" = the model's (ResNet-101 resnet101.tv_in1k)
    pretrained: str = "hub"  # hub | none | path to a local timm state dict
    output_stride: int = 0  # 0 = the model's default (8 DeepLab-v2, 16 DeepLab-v3+)
    freeze_bn: bool = True  # DeepLab-v2 only: batch-norm statistics frozen, as in the release
    pseudo_dir: str = ""  # "" = this run's pseudo-masks
    epochs: int = 20
    batch_size: int = 10
    crop_size: int = 0  # 0 = the model's default (321 DeepLab-v2, 512 DeepLab-v3+)
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    hflip: bool = True
    lr: float = 2.5e-4
    lr_head_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    loss_at: str = "input"  # input: logits upsampled to the crop | logits: labels downsampled
    amp: bool = True  # mixed precision, used only on CUDA
    num_workers: int = 2
    max_steps: int = 0  # 0 = no limit; a cap for smoke tests
    log_every: int = 20
    save_every: int = 200  # steps between resumable checkpoints (and at every epoch end)
    val_every: int = 1  # validate on eval_split every N epochs (0 = never)
    eval_split: str = "val"  # split eval-seg scores and train-seg validates on
    scales: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])
    flip: bool = True
    crf: bool = False
    crf_preset: str = "deeplab_v2"  # a key of csdseg.ops.crf.SOFTMAX_PRESETS


@dataclass
class Config:
    name: str = "default"
    run_root: str = "runs"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    csd: CsdConfig = field(default_factory=CsdConfig)
    ir_label: IrLabelConfig = field(default_factory=IrLabelConfig)
    irn: IrnConfig = field(default_factory=IrnConfig)
    seg: SegConfig = field(default_factory=SegConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / self.name


# --------------------------------------------------------------------------------------------
# Building, validating and saving


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only where it is lossless."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list like [1, 2], got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a programming error


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    types_ = _field_types(type(obj))
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in types_:
            valid = [f"{prefix}{k}" for k in types_]
            raise ConfigError(f"unknown config key '{full}'{_closest(full, valid)}")
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping of {tp.__name__} keys")
            _apply(getattr(obj, key), value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, tp, full))


def parse_override(text: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (``key=value`` strings)."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; presets are in configs/")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys at the top level")
        try:
            _apply(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for text in overrides or []:
        _apply(cfg, parse_override(text))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    if cfg.data.dataset not in ("voc", "coco", "custom"):
        raise ConfigError(f"data.dataset must be voc, coco or custom, got '{cfg.data.dataset}'")
    if len(cfg.train.resize_long) != 2 or cfg.train.resize_long[0] > cfg.train.resize_long[1]:
        raise ConfigError("train.resize_long must be [min, max] with min <= max")
    if cfg.train.augment not in ("irn", "mct"):  # csdseg.data.augment.CAM_RECIPES
        raise ConfigError(f"train.augment must be irn or mct, got '{cfg.train.augment}'")
    if not cfg.cam.scales or any(s <= 0 for s in cfg.cam.scales):
        raise ConfigError("cam.scales must be a non-empty list of positive numbers")
    if cfg.cam.format not in ("npy", "irn"):  # csdseg.cam_file.FORMATS
        raise ConfigError(f"cam.format must be npy or irn, got '{cfg.cam.format}'")
    if cfg.optim.name not in ("sgd", "adamw") or cfg.optim.schedule not in ("poly", "cosine"):
        raise ConfigError("optim.name must be sgd or adamw; optim.schedule poly or cosine")
    if cfg.train.batch_size < 1 or cfg.train.epochs < 0:
        raise ConfigError("train.batch_size must be >= 1 and train.epochs >= 0")
    from csdseg.csd.variants import resolve_variant  # noqa: PLC0415 (config has no torch)
    resolve_variant(cfg.csd)  # an unknown csd.variant or an option contradicting it


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), so a run records what it used."""
    from csdseg.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
