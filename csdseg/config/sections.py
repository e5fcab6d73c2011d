"""The config's sections: one dataclass per stage, grouped in :class:`Config`.

Every setting with a fixed set of values declares them in its annotation, so this file is the
one list of the allowed values, checked when a config is loaded (:mod:`csdseg.config.choices`):

- ``Literal[...]``: the values themselves;
- ``Annotated[str, Registry(module, name)]``: the keys of a registry in a module that imports
  torch (the models, the CRF presets), read without importing it;
- ``Annotated[str, Pattern(regex, text)]``: a family of values (``device``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from csdseg.config.common import Pattern, Registry, SgdPoly, TrainLoop
from csdseg.errors import ConfigError  # noqa: F401  (defined in the leaf; kept importable here)

__all__ = ["Pattern", "Registry"]  # re-exported: declared in csdseg.config.common

# csd.normalizer / csd.bg_normalizer (csdseg/csd/consistency.py NORMALIZERS)
Normalizer = Literal["max", "detached_floor", "global", "class_minmax", "none"]
KlTerms = Literal["all", "pasted", "background"]
CrfPreset = Annotated[str, Registry("csdseg.ops.crf", "SOFTMAX_PRESETS")]
Device = Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")]


@dataclass
class DataConfig:
    dataset: Annotated[str, Registry("csdseg.data", "DATASETS")] = "voc"  # synthetic data: voc
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
    name: Annotated[str, Registry("csdseg.models", "MODELS")] = "resnet50_cam"
    pretrained: str = "hub"  # hub | none | path to a local weights file
    num_classes: int = 0  # 0 = take it from the dataset
    # IRN freezes the stem and detaches features after stage 2 (2); 0 trains every stage,
    # which a network trained from scratch (the synthetic demo) needs.
    detach_after: Literal[0, 1, 2] = 2
    frozen_bn: bool = True  # IRN's FixedBatchNorm; false lets batch statistics train
    # MCTformer only (official values): stochastic depth, and refining the maps with the
    # patch-to-patch attention in make-cam.
    drop_path_rate: float = 0.1
    patch_attn_refine: bool = True


@dataclass
class OptimConfig(SgdPoly):
    """train-cam's optimiser: IRN's SGD + poly (csdseg.config.common) or MCTformer's AdamW."""

    name: Literal["sgd", "adamw"] = "sgd"  # sgd (IRN) | adamw (MCTformer)
    # poly (IRN) | cosine (MCTformer: linear warm-up, cosine decay)
    schedule: Literal["poly", "cosine"] = "poly"
    warmup_epochs: int = 0  # cosine only: linear warm-up from 1e-6
    min_lr: float = 1e-5  # cosine only: the floor (DeiT/MCTformer)
    head_lr_mult: float = 10.0


@dataclass
class TrainConfig(TrainLoop):
    """train-cam's loop (its fields in csdseg.config.common) and augmentation."""

    resize_long: list[int] = field(default_factory=lambda: [320, 640])  # pixels, long side
    # irn (resize-long + crop) | mct (DeiT random-resized crop)
    augment: Literal["irn", "mct"] = "irn"
    amp: bool = True  # mixed precision, used only on CUDA
    init_from: str = ""  # a checkpoint to start from (warm start), "" = pretrained backbone


@dataclass
class CamConfig:
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 1.5, 2.0])
    flip: bool = True
    normalize: Literal["max", "minmax"] = "max"  # per class: max (IRN) | minmax (MCTformer)
    format: Literal["npy", "irn"] = "npy"  # npy (NumPy arrays) | irn (torch tensors, as IRN)
    # the engine of make-cam's forward passes (csdseg/ops/cam_backend.py): torch | onnxruntime
    # (CPU, optional extra; maps within 1e-5 of torch's) | auto (onnxruntime where installed)
    backend: Literal["torch", "onnxruntime", "auto"] = "torch"
    # refuse (before any work) images larger than this: memory grows with the pixel count,
    # ~2 GiB per megapixel with IRN's ResNet-50 and 4 scales (docs/datasets.md); 0 = no limit
    max_pixels: int = 4_000_000


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
    # frozen: the teacher is from_run's checkpoints/cam.pt, never updated
    teacher: Literal["detached", "joint", "ema", "frozen"] = "detached"
    kl_channels: Literal["all", "pasted"] = "all"
    apply_to: Literal["multi", "all"] = "multi"
    # context: X_s of another class with the most alike background colours, not co-occurrence
    # (csdseg's extension beyond the paper, meant with apply_to=all; docs/csd.md)
    pair_by: Literal["cooccurrence", "context"] = "cooccurrence"
    context_k: int = 5  # pair_by=context: X_s drawn uniformly among the k nearest contexts
    fg_paste: Literal["same_location", "random"] = "same_location"
    # Stability options (docs/csd.md): how maps are normalised before the per-cell softmax,
    # which classes enter the KL, which teacher classes the fg term keeps.
    normalizer: Normalizer = "global"  # max: per-class, differentiable
    norm_floor: float = 1.0  # normalizer=detached_floor: floor of the detached per-class max
    kl_classes: Literal["all", "present"] = "all"  # present: the two images' + background
    # pasted: the teacher's maps zeroed except class c (fg term)
    teacher_classes: Literal["all", "pasted"] = "all"
    ema_momentum: float = 0.999  # teacher=ema
    dead_warn: float = 0.2  # warn when this share of present classes has an all-zero map
    # The pipeline warm-starts the CSD run from the baseline at optim.lr x this factor (a
    # fine-tuning rate; restarting the poly schedule at the full rate undoes the baseline).
    finetune_lr_mult: float = 0.1
    # Readings of Algorithm 1 (docs/csd.md). variant=authors fixes the options below (and
    # normalizer, beta, temperature, kl_*) to the authors' code, csdseg/csd/variants.py; each
    # option also works on its own with variant=ours. The defaults here are ours, bit for bit.
    variant: Literal["ours", "authors"] = "ours"  # authors: PSD_WSSS engine.py's loop
    # "" = the variant's: ours confident (ir_label/), authors final (sem_seg/)
    masks: Literal["", "confident", "final"] = ""
    start_epoch: int = 0  # epochs (0-based) before this one train without CSD (X_m only)
    bg_normalizer: Literal["", Normalizer] = ""  # the bg term's; "" = csd.normalizer
    fg_background: bool = True  # false: the fg term's distribution has no background channel
    fg_teacher_scale: float = 1.0  # fg term: the teacher's logits x this (after / temperature)
    bg_student_scale: float = 1.0  # bg term: the student's logits x this (after / temperature)
    # the channels whose KL terms sum: all | pasted (class c) | background
    fg_kl_terms: KlTerms = "all"
    bg_kl_terms: KlTerms = "all"  # the same for the bg term
    # fg cells kept only where the teacher's map of class c, min-max normalised over its cells,
    # exceeds this; None = the variant's (ours: all cells, authors: 0.5)
    fg_teacher_threshold: float | None = None
    # cells: mean over all covered cells | images: per image, then mean
    reduction: Literal["cells", "images"] = "cells"


@dataclass
class IrLabelConfig:
    """Confident labels from CAMs: two dense CRFs (IRN's cam_to_ir_label)."""

    fg_threshold: float = 0.30  # background score for the confident-foreground CRF
    bg_threshold: float = 0.05  # background score for the confident-background CRF
    crf_iters: int = 10
    num_workers: int = 0  # CRF processes; 0 = one per CPU core


@dataclass
class IrnConfig(TrainLoop, SgdPoly):
    """The inter-pixel relation network (IRN's train_irn): its loop and SGD + poly
    (csdseg.config.common), with IRN's epochs and batch."""

    epochs: int = 3
    batch_size: int = 32
    # resnet18 / resnet10t for CPU demos
    backbone: Annotated[str, Registry("csdseg.models.irn", "BACKBONES")] = "resnet50.tv_in1k"
    pretrained: str = "hub"  # hub | none | path to local ImageNet weights for the backbone
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.5])  # random rescale
    dp_lr_mult: float = 10.0  # IRN: the displacement branch learns at 10x the boundary branch
    path_radius: int = 10
    # Deviation for from-scratch runs (synthetic presets): start IRN's frozen backbone from this
    # run's CAM classifier (same architecture) instead of ImageNet weights.
    backbone_from_cam: bool = False
    # Deviation for from-scratch runs: the backbone learns with the branches (IRN freezes it).
    train_backbone: bool = False


@dataclass
class RefineConfig:
    """make-sem-seg: CAMs -> pseudo-masks by one refiner (csdseg/refiners), and its settings."""

    # a key of REFINERS in csdseg/refiners/__init__.py: rw (IRN's walk) | crf | psa (PSA's walk,
    # whose own settings are psa.*)
    method: Annotated[str, Registry("csdseg.refiners", "REFINERS")] = "rw"
    bg_threshold: float = 0.25  # rw: background score against the walked maps (IRN's 0.25)
    beta: float = 10.0  # rw: affinity = (1 - boundary)^beta
    exp_times: int = 8  # rw: 2^exp_times steps
    walk_radius: int = 5  # rw: the affinity's neighbourhood, in stride-4 cells
    walk_threads: int = 1  # rw, psa: CPU threads per random walk (0 = torch's default)
    crf_preset: CrfPreset = "deeplab_v2"  # crf: the dense CRF's settings
    crf_bg_threshold: float = 0.15  # crf: constant background score before the CRF


@dataclass
class SegConfig(TrainLoop, SgdPoly):
    """The segmentation network trained on pseudo-masks (DeepLab); its loop and SGD + poly
    (csdseg.config.common) with DeepLab's values."""

    epochs: int = 20
    batch_size: int = 10
    crop_size: int = 0  # 0 = the model's default (321 DeepLab-v2, 512 DeepLab-v3+)
    lr: float = 2.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    model: Annotated[str, Registry("csdseg.models.deeplab", "SEG_MODELS")] = "deeplabv2_resnet101"
    backbone: str = ""  # timm backbone, "" = the model's (ResNet-101 resnet101.tv_in1k)
    pretrained: str = "hub"  # hub | none | path to a local timm state dict
    output_stride: Literal[0, 8, 16] = 0  # 0 = the model's default (8 DeepLab-v2, 16 DeepLab-v3+)
    frozen_bn: bool = True  # DeepLab-v2 only: batch-norm statistics frozen, as in the release
    pseudo_dir: str = ""  # "" = this run's pseudo-masks; gt = the true masks (the ceiling)
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.5])  # random rescale
    head_lr_mult: float = 10.0  # the head at 10x the backbone (as optim.head_lr_mult)
    # input: logits upsampled to the crop | logits: labels downsampled
    loss_at: Literal["input", "logits"] = "input"
    amp: bool = True  # mixed precision, used only on CUDA
    num_workers: int = 2
    val_every: int = 1  # validate on eval_split every N epochs (0 = never)
    eval_split: str = "val"  # split eval-seg scores and train-seg validates on
    scales: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])
    flip: bool = True
    crf: bool = False
    crf_preset: CrfPreset = "deeplab_v2"


@dataclass
class PsaConfig(TrainLoop, SgdPoly):
    """PSA's AffinityNet (train-aff; its loop and SGD + poly in csdseg.config.common) and its
    random walk (refine.method=psa); the defaults are jiwoon-ahn/psa's, voc_mct.yaml sets
    MCTformer's (docs/method.md)."""

    epochs: int = 8  # MCTformer 5
    batch_size: int = 8
    crop_size: int = 448  # random crop, zero-padded; a multiple of 8, at least 72
    lr: float = 0.1  # MCTformer 0.01
    weight_decay: float = 5e-4
    momentum: float = 5e-4  # PSA's PolyOptimizer: weight decay in SGD's momentum slot
    # resnet38d_aff (PSA's) | affinitynet_tiny (CPU-sized, csdseg/models/affinitynet.py)
    network: Annotated[str, Registry("csdseg.models.affinitynet", "AFF_NETWORKS")] = \
        "resnet38d_aff"
    # none (random init: the CPU variant) | res38_cls.pth (MCTformer) | the ImageNet .npz
    weights: str = "none"
    low_alpha: float = 4.0  # confident fg: (1 - max CAM)^alpha background before the CRF (MCT 1)
    high_alpha: float = 32.0  # confident bg (MCTformer 12)
    head_lr_mult: float = 10.0  # the new convs f8_*, f9
    colour_jitter: list[float] = field(default_factory=lambda: [0.3, 0.3, 0.3, 0.1])  # b, c, s, h
    walk: Literal["psa", "mct"] = "psa"  # background: psa (1 - max)^alpha | mct a constant
    alpha: float = 16.0  # walk=psa
    bg_threshold: float = 0.39  # walk=mct
    beta: float = 8.0
    logt: int = 0  # 2^logt steps; 0 = the walk's own (psa 8, mct 6)


@dataclass
class Config:
    name: str = "default"
    run_root: str = "runs"
    device: Device = "auto"
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
    refine: RefineConfig = field(default_factory=RefineConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    psa: PsaConfig = field(default_factory=PsaConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / self.name
