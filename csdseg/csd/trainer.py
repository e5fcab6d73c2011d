"""CSD as a plug-in to train-cam: the dataset wrapper, the collate function and the step.

One student forward on [X_m (B); X_sm_fg (M); X_sm_bg (M)]; the teacher pass on X_s (M) is
separate: eval mode without gradient (teacher=detached), an EMA copy (ema), the baseline
checkpoint that made the masks, never updated (frozen), or appended to the student batch with
gradient in train mode (joint). Works with any model of the CAM contract
(csdseg/models/__init__.py): only ``logits``/``maps`` and ``classification_loss`` are used.
``csd.variant`` is resolved once (csdseg/csd/variants.py) by :func:`check_config`,
:func:`mask_dir` and :class:`CSDStep`; everything here reads the resolved options.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from csdseg.config import Config, ConfigError, CsdConfig
from csdseg.csd.consistency import (NORMALIZERS, cell_log_probs, cell_mask, channel_mask,
                                    dead_share, masked_kl, normalize_maps, teacher_confidence)
from csdseg.csd.counts import CsdCounts
from csdseg.csd.masks import mask_place
from csdseg.csd.dataset import CSDDataset, MaskStore, csd_collate
from csdseg.csd.pairing import build_sampler
from csdseg.csd.variants import resolve_variant
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.source import Source
from csdseg.engine.checkpoint import load_weights, unwrap
from csdseg.runs import MissingInputError, RunDir
from csdseg.stages.cam_model import build_cam_model

log = logging.getLogger("csdseg.csd")
KL_TERMS = ("all", "pasted", "background")

CHOICES = {"teacher": ("detached", "joint", "ema", "frozen"), "kl_channels": ("all", "pasted"),
           "apply_to": ("multi", "all"), "pair_by": ("cooccurrence", "context"),
           "fg_paste": ("same_location", "random"),
           "normalizer": tuple(NORMALIZERS), "kl_classes": ("all", "present"),
           "teacher_classes": ("all", "pasted"), "bg_normalizer": ("", *NORMALIZERS),
           "fg_kl_terms": KL_TERMS, "bg_kl_terms": KL_TERMS, "reduction": ("cells", "images")}


def check_config(cfg: CsdConfig) -> None:
    """Checks the options of ``cfg`` once its variant is resolved (ConfigError)."""
    cfg = resolve_variant(cfg)
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"csd.{key} must be one of {', '.join(allowed)}, "
                              f"got '{getattr(cfg, key)}'")
    if cfg.temperature <= 0 or cfg.tau < 0 or not 0 <= cfg.ema_momentum < 1:
        raise ConfigError("csd.temperature must be > 0, csd.tau >= 0, csd.ema_momentum in [0, 1)")
    if cfg.context_k < 1:
        raise ConfigError(f"csd.context_k must be >= 1, got {cfg.context_k}")
    if cfg.start_epoch < 0:
        raise ConfigError(f"csd.start_epoch must be >= 0, got {cfg.start_epoch}")
    if cfg.fg_kl_terms == "background" and not cfg.fg_background:
        raise ConfigError("csd.fg_kl_terms=background needs the background channel: "
                          "csd.fg_background=true")
    if cfg.teacher == "frozen" and not cfg.from_run:
        raise ConfigError("csd.teacher=frozen needs csd.from_run: the baseline run whose "
                          "checkpoints/cam.pt made the masks is the teacher")


def load_frozen_teacher(cfg: Config, num_classes: int) -> nn.Module:
    """The baseline classifier of ``csd.from_run`` (its checkpoints/cam.pt, loaded as
    train.init_from loads a warm start): eval mode, no gradient, never updated."""
    base = cfg.csd.from_run
    if not base or base == cfg.name:
        raise ConfigError(f"csd.teacher=frozen needs csd.from_run naming the baseline run, not "
                          f"this run ('{cfg.name}'), whose checkpoint changes as it trains")
    path = RunDir(Path(cfg.run_root) / base).checkpoint("cam")
    if not path.is_file():
        raise MissingInputError(f"csd.teacher=frozen: the baseline checkpoint {path} does not "
                                f"exist; train the baseline first (csdseg train-cam name={base})")
    # its weights replace the ImageNet ones: build without them (no hub access needed)
    teacher = build_cam_model(dataclasses.replace(cfg.model, pretrained="none"), num_classes)
    load_weights(teacher, path, expect={"model": cfg.model.name, "num_classes": num_classes})
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("csd: frozen teacher from %s", path)
    return teacher.eval()


def mask_dir(cfg: Config) -> tuple[Path, str]:
    """The folder of fg/bg label PNGs and the command that makes it (csdseg/csd/masks.py)."""
    place = mask_place(cfg)
    return place.folder, place.command


def kl_terms(mode: str, onehot: torch.Tensor, background: bool = True) -> torch.Tensor | None:
    """Which channels' KL terms a term sums: None (all), or bool [M, C] (C = K + 1 with the
    background channel last, else K) for pasted (class c, ``onehot`` [M, K]) / background."""
    if mode == "all":
        return None
    if mode not in KL_TERMS or (mode == "background" and not background):
        raise ValueError(f"kl terms must be one of {', '.join(KL_TERMS)} (background needs the "
                         f"background channel), got '{mode}'")
    cls = onehot if mode == "pasted" else torch.zeros_like(onehot)
    if not background:
        return cls
    return torch.cat([cls, torch.full_like(onehot[:, :1], mode == "background")], 1)


class CSDStep:
    """step_fn(model, batch) -> (loss, scalars); keeps the EMA teacher and per-epoch counts."""

    def __init__(self, cfg: CsdConfig, frozen: nn.Module | None = None) -> None:
        if cfg.teacher == "frozen" and frozen is None:
            raise ValueError("csd.teacher=frozen: pass the baseline model (load_frozen_teacher)")
        self.cfg = resolve_variant(cfg)
        self.ema: nn.Module | None = None
        self._ema_saved: dict[str, torch.Tensor] | None = None  # from a checkpoint, not yet built
        self.frozen = frozen  # teacher=frozen: never trained, never in the optimiser
        self.counts, self.warned = CsdCounts(), False

    # --- resumable state: the training loop stores it in the checkpoint's ``extra`` ----------
    def state_dict(self) -> dict:
        """What a resumed run needs to continue as an uninterrupted one: the EMA teacher's
        weights (None before its first step) and the per-epoch counts the log reports."""
        ema = self.ema.state_dict() if self.ema is not None else self._ema_saved
        return {"ema": ema, "counts": self.counts.state_dict(), "warned": self.warned}

    def load_state_dict(self, state: dict) -> None:
        # the EMA copy is built from the student at its next step (its architecture and
        # device), then takes these weights
        self.ema, self._ema_saved = None, state.get("ema")
        self.counts = CsdCounts()
        self.counts.load_state_dict(state.get("counts", {}))
        self.warned = state.get("warned", False)

    # --- teacher -----------------------------------------------------------------------------
    def _update_ema(self, model: nn.Module) -> nn.Module:
        net = unwrap(model)
        if self.ema is None:
            self.ema = copy.deepcopy(net).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)
            if self._ema_saved is None:  # the first step: the EMA starts as the student
                return self.ema
            self.ema.load_state_dict(self._ema_saved)  # resumed: the saved EMA, then this step's
            self._ema_saved = None
        # called before this step's update: the EMA follows the weights of the last step
        m = self.cfg.ema_momentum
        with torch.no_grad():
            for e, p in zip(self.ema.state_dict().values(), net.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(m).add_(p.detach(), alpha=1 - m)
                else:
                    e.copy_(p)
        return self.ema

    def _teacher_maps(self, model: nn.Module, x_s: torch.Tensor) -> torch.Tensor:
        if self.cfg.teacher == "frozen":
            net = self.frozen.to(x_s.device).eval()  # .to: a no-op after the first step
        else:
            net = self._update_ema(model) if self.cfg.teacher == "ema" else unwrap(model)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            maps = net(x_s)["maps"]
        net.train(was_training)
        return maps

    # --- the step ----------------------------------------------------------------------------
    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        x_m, labels = batch["img"], batch["label"]
        B, M = x_m.shape[0], batch["x_s"].shape[0]
        epoch = int(batch["epoch"][0])
        if epoch < cfg.start_epoch:  # before it: the baseline's step on X_m
            M = 0
        self.counts.add(epoch, M, int(batch["skipped"]))
        parts = [x_m, batch["x_fg"], batch["x_bg"]] if M else [x_m]
        if M and cfg.teacher == "joint":
            parts.append(batch["x_s"])
        out = model(torch.cat(parts))
        n = len(out["maps"])  # every per-sample output (MCTformer v2 has patch_logits too)
        first = {k: v[:B] for k, v in out.items() if torch.is_tensor(v) and v.shape[:1] == (n,)}
        loss_cls = unwrap(model).classification_loss(first, labels)
        maps = out["maps"]
        dead, present = dead_share(maps[:B], labels)
        share = dead / present if present else 0.0
        self._warn(share)
        scalars = {"loss_cls": float(loss_cls.detach()), "csd_samples": float(M),
                   "dead_cam_share": share, "csd_skipped": float(batch["skipped"]),
                   "csd_skipped_epoch": float(self.counts.skipped_in(epoch))}
        if not M:
            scalars.update(loss_fg=0.0, loss_bg=0.0)
            return loss_cls, scalars
        if cfg.teacher == "joint":  # with gradient: the KL also moves the teacher
            t_maps = maps[B + 2 * M:]
        else:
            t_maps = self._teacher_maps(model, batch["x_s"])
        loss_fg, loss_bg = self.terms(maps[B:B + M], maps[B + M:B + 2 * M], t_maps, batch,
                                      labels[batch["rows"]])
        loss = loss_cls + cfg.lambda_fg * loss_fg + cfg.lambda_bg * loss_bg
        scalars.update(loss_fg=float(loss_fg.detach()), loss_bg=float(loss_bg.detach()))
        return loss, scalars

    def terms(self, s_fg: torch.Tensor, s_bg: torch.Tensor, t_maps: torch.Tensor, batch: dict,
              labels_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fg and bg KL terms from the student maps of X_sm_fg / X_sm_bg and the teacher
        maps of X_s, all [M, K, h, w]; ``labels_m`` [M, K] the classes of the X_m rows;
        ``batch`` gives ``cls`` [M] and the pixel masks ``m_fg`` / ``m_bg`` [M, H, W]."""
        cfg = self.cfg
        M, K, h, w = t_maps.shape
        norm = lambda m, mode=cfg.normalizer: normalize_maps(m, mode, cfg.norm_floor)  # noqa: E731
        a_t, a_fg = norm(t_maps), norm(s_fg)
        bg_mode = cfg.bg_normalizer or cfg.normalizer
        a_t_bg = a_t if bg_mode == cfg.normalizer else norm(t_maps, bg_mode)
        a_bg = norm(s_bg, bg_mode)
        onehot = torch.zeros(M, K, dtype=torch.bool, device=t_maps.device)
        onehot[torch.arange(M), batch["cls"]] = True
        present = onehot | (labels_m > 0)
        fg_cls = present if cfg.kl_classes == "present" else None
        bg_cls = fg_cls
        if cfg.kl_channels == "pasted":  # fg: class c; bg: X_m's classes (what it carries)
            fg_cls = onehot if fg_cls is None else fg_cls & onehot
            bg_cls = (labels_m > 0) if bg_cls is None else bg_cls & (labels_m > 0)
        keep_fg = channel_mask(M, K, fg_cls, t_maps.device)
        keep_bg = channel_mask(M, K, bg_cls, t_maps.device)
        a_t_fg = a_t * onehot[:, :, None, None] if cfg.teacher_classes == "pasted" else a_t

        def lp(a: torch.Tensor, keep: torch.Tensor, bg: bool = True, scale: float = 1.0):
            return cell_log_probs(a, cfg.beta, cfg.temperature, keep, bg, scale)

        fg_bg = cfg.fg_background
        confident = (None if cfg.fg_teacher_threshold is None else
                     teacher_confidence(t_maps, batch["cls"]) > cfg.fg_teacher_threshold)
        loss_fg = masked_kl(lp(a_t_fg, keep_fg, fg_bg, cfg.fg_teacher_scale),
                            lp(a_fg, keep_fg, fg_bg), cell_mask(batch["m_fg"], (h, w)),
                            kl_terms(cfg.fg_kl_terms, onehot, fg_bg), confident, cfg.reduction)
        loss_bg = masked_kl(lp(a_t_bg, keep_bg), lp(a_bg, keep_bg, scale=cfg.bg_student_scale),
                            cell_mask(batch["m_bg"], (h, w)), kl_terms(cfg.bg_kl_terms, onehot),
                            None, cfg.reduction)
        return loss_fg, loss_bg

    # --- bookkeeping -------------------------------------------------------------------------
    def summary(self) -> str:
        """train-cam's end-of-training line: how much CSD ran (csdseg/csd/counts.py)."""
        return self.counts.summary()

    def _warn(self, share: float) -> None:
        if share > self.cfg.dead_warn and not self.warned:
            log.warning("csd: %.0f%% of the present classes in this batch have an all-zero CAM "
                        "(collapse?); see docs/csd.md for the stability options", 100 * share)
        self.warned = share > self.cfg.dead_warn


def build_csd_training(cfg: Config, source: Source, dataset: ClassificationDataset,
                       run_dir: RunDir) -> tuple[CSDDataset, CSDStep, object]:
    """train-cam's hook: (dataset, step_fn, collate_fn) for csd.enabled=true."""
    check_config(cfg.csd)
    csd = resolve_variant(cfg.csd)
    folder, command = mask_dir(cfg)
    store = MaskStore(folder)
    missing = store.missing(source.ids) if folder.is_dir() else list(source.ids)
    if missing:
        raise MissingInputError(
            f"CSD needs fg/bg masks in {folder} for every image of split "
            f"'{cfg.data.train_split}', {len(missing)} of {len(source)} are missing "
            f"(e.g. {missing[0]}.png); run `{command}` first")
    sampler = build_sampler(csd, source, store)
    n_multi = int(((source.labels > 0).sum(1) > 1).sum())
    excluded = [source.class_names[k] for k in np.flatnonzero(~sampler.eligible)]
    log.info("csd: masks from %s; %d multi-label of %d images; %d classes never pasted%s",
             folder, n_multi, len(source), len(excluded),
             f" ({', '.join(excluded[:8])}{'...' if len(excluded) > 8 else ''})" if excluded else "")
    csd_data = CSDDataset(dataset, store, sampler, csd.apply_to, csd.fg_paste)
    frozen = load_frozen_teacher(cfg, source.num_classes) if csd.teacher == "frozen" else None
    log.info("csd: variant %s, X_s paired by %s (options: docs/csd.md)", csd.variant,
             csd.pair_by)
    return csd_data, CSDStep(csd, frozen), csd_collate
