"""gpu_check section 2: the device agrees with the CPU on the same weights and inputs.

Each network is built once with seeded weights, deep-copied to the device, and both copies see
the same image; the rows give the largest difference and the share of label pixels that change
(argmax against the background score each stage uses), each against the tolerance below. On
``--device cpu`` both sides are the CPU: trivial, but the code path runs. AMP rows compare the
device's autocast (float16 on CUDA; bfloat16 on the CPU, so the path runs there too) with its
own float32. Finally CSD's step under autocast with its classifier scaled so the maps are tiny
and large: the KL terms must stay finite, and GradScaler's unscaled gradients too.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from gpu_check_models import K, Sizes, aff_net, cam_net, irn_net, pair, photo, seg_net
from gpu_check_report import Row, Section, check

from csdseg.config import CsdConfig
from csdseg.csd.trainer import CSDStep
from csdseg.data.transforms import normalize
from csdseg.ops.cam import multiscale_cam
from csdseg.ops.cam_backend import torch_cam_fn
from csdseg.ops.psa_walk import psa_walk
from csdseg.ops.random_walk import random_walk, walk_to_labels
from csdseg.refiners.psa import padded_size

SECTION = "agree"
# Tolerances by device type. CUDA's float32 convolutions run in TF32 (cudnn.allow_tf32 is on by
# default: 10-bit mantissa inputs), so maps normalised to [0, 1] may differ by ~1e-3 and a few
# pixels near a tie may change label; AMP (float16) by ~1e-2; the CPU's bfloat16 by ~1e-1.
TOL = {
    "cam": {"cpu": 1e-5, "cuda": 2e-2}, "cam_labels": {"cpu": 0.0, "cuda": 0.01},
    "cam_amp": {"cpu": 0.3, "cuda": 5e-2}, "cam_amp_labels": {"cpu": 0.25, "cuda": 0.03},
    "boundary": {"cpu": 1e-5, "cuda": 1e-2}, "walk_labels": {"cpu": 0.0, "cuda": 0.005},
    "aff": {"cpu": 1e-5, "cuda": 1e-2}, "psa_labels": {"cpu": 0.0, "cuda": 0.005},
    "seg": {"cpu": 1e-5, "cuda": 1e-2}, "seg_labels": {"cpu": 0.0, "cuda": 0.01},
    "loss": {"cpu": 1e-5, "cuda": 2e-3},
}
BG = 0.15  # eval-cam's background score
KL_SCALES = (1e-4, 1.0, None)  # classifier weights x this; None: maps up to ~1e4 (fp16: 65504)
KL_CROP = 128  # CSD's masks must cover whole 16 px cells, or the fg term has no cell


def tol(key: str, device: torch.device) -> float:
    return TOL[key]["cuda" if device.type == "cuda" else "cpu"]


def changed(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) != np.asarray(b)).mean())


def cam_labels(maps: torch.Tensor) -> np.ndarray:
    return F.pad(maps, (0, 0, 0, 0, 1, 0), value=BG).argmax(0).numpy()


class Agree:
    def __init__(self, section: Section, s: Sizes, device: torch.device, root) -> None:
        self.section, self.s, self.device = section, s, device
        self.img = photo(root, s.agree_image)
        self.keys = torch.tensor([3, 14])  # replaced by each network's two strongest classes
        self.cams: dict[str, tuple[torch.Tensor, ...]] = {}  # CPU make-cam (low, high, keys)

    def row(self, item, value, key, unit="", note="") -> Row:
        return check(SECTION, item, value, tol(key, self.device), unit, note)

    def views(self, scales) -> list[torch.Tensor]:
        from csdseg.data.cam_dataset import MultiScaleDataset
        from make_cam import MemorySource

        label = np.isin(np.arange(K), self.keys.numpy()).astype(np.float32)
        return MultiScaleDataset(MemorySource([self.img], label), ["0"], list(scales))[0]["views"]

    def make_cam(self, name: str, scales, normalize_mode: str) -> list[Row]:
        cpu, dev = pair(cam_net(name), self.device)
        views, size = self.views(scales), self.img.shape[:2]
        with torch.no_grad():  # random weights leave most classes' maps at 0 after the ReLU:
            # compare the two strongest ones, or the maps would agree trivially
            keys = cpu.cam(views[0]).amax(dim=(0, 2, 3)).topk(2).indices.sort().values

        def run(model, device, amp=False):
            with torch.autocast(device.type, enabled=amp):
                return multiscale_cam(torch_cam_fn(model, device), views, size, keys,
                                      device, normalize_mode, model.upsample, model.feature_stride)
        low, high = run(cpu, torch.device("cpu"))
        self.cams[name] = (low, high, keys)
        _, d_high = run(dev, self.device)
        _, a_high = run(dev, self.device, amp=True)
        dtype = "float16" if self.device.type == "cuda" else "bfloat16"
        return [self.row(f"make-cam {name}: max |CAM diff| fp32", (d_high - high).abs().max(),
                         "cam", note=f"{len(scales)} scales + flip, maps in [0, 1], "
                         f"max {high.amax():.2f}"),
                self.row(f"make-cam {name}: label pixels changed fp32",
                         changed(cam_labels(d_high), cam_labels(high)), "cam_labels", "share"),
                self.row(f"make-cam {name}: max |CAM diff| AMP vs fp32",
                         (a_high - d_high).abs().max(), "cam_amp", note=f"autocast {dtype}"),
                self.row(f"make-cam {name}: label pixels changed AMP",
                         changed(cam_labels(a_high), cam_labels(d_high)), "cam_amp_labels",
                         "share")]

    def irn(self) -> list[Row]:
        cpu, dev = pair(irn_net(self.s.irn), self.device)
        x = torch.from_numpy(normalize(self.img))
        b_cpu = cpu.infer_boundary(x, self.s.irn_crop)
        b_dev = dev.infer_boundary(x.to(self.device), self.s.irn_crop).cpu()
        low, _, keys = self.cams[self.s.cam]
        labels = [walk_to_labels(random_walk(low.to(d), b_cpu.to(d), 10.0, self.s.walk_exp, 5),
                                 keys.numpy(), self.img.shape[:2])
                  for d in (torch.device("cpu"), self.device)]
        return [self.row("IRN boundary map: max diff", (b_dev - b_cpu).abs().max(), "boundary",
                         note="probabilities"),
                self.row("IRN random walk: label pixels changed", changed(*labels),
                         "walk_labels", "share", f"2^{self.s.walk_exp} steps, same boundary")]

    def psa(self) -> list[Row]:
        cpu, dev = pair(aff_net(self.s.aff), self.device)
        h, w = self.img.shape[:2]
        ph, pw = padded_size(h, w)
        x = F.pad(torch.from_numpy(normalize(self.img)), (0, pw - w, 0, ph - h))[None]
        with torch.no_grad():
            a_cpu, a_dev = cpu(x)[0], dev(x.to(self.device))[0].cpu()
        _, high, keys = self.cams[self.s.cam]
        labels = [psa_walk(high.to(d), keys.numpy(), a_cpu.to(d), alpha=None,
                           bg_threshold=0.39, logt=6, padded=(ph, pw))[0]
                  for d in (torch.device("cpu"), self.device)]
        return [self.row("PSA affinities: max diff", (a_dev - a_cpu).abs().max(), "aff",
                         note="affinities in (0, 1]"),
                self.row("PSA walk: label pixels changed", changed(*labels), "psa_labels",
                         "share", "same affinities")]

    def seg(self) -> list[Row]:
        cpu, dev = pair(seg_net(self.s.seg), self.device)
        x = torch.from_numpy(normalize(self.img))[None]
        with torch.no_grad():
            l_cpu, l_dev = cpu(x), dev(x.to(self.device)).cpu()
        rel = (l_dev - l_cpu).abs().max() / l_cpu.abs().max().clamp_min(1e-12)
        return [self.row("DeepLab logits: max diff / max |logit|", rel, "seg"),
                self.row("DeepLab labels: pixels changed",
                         changed(l_dev.argmax(1), l_cpu.argmax(1)),
                         "seg_labels", "share")]

    def csd_batch(self, crop: int) -> dict:
        from csd_overhead import MemorySource, build_dataset, multi_batch

        _, data = build_dataset(MemorySource(8), crop, (crop, crop))
        return multi_batch(data, 2)

    def train_loss(self) -> list[Row]:
        """One CSD training step's loss (classification + both KL terms), fp32 on both."""
        cpu = cam_net(self.s.cam).train()
        dev = copy.deepcopy(cpu).to(self.device).train()
        batch = self.csd_batch(KL_CROP)
        step = CSDStep(CsdConfig(enabled=True))
        ref = step(cpu, batch)[0].item()
        moved = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        got = step(dev, moved)[0].item()
        return [self.row("CSD train step loss fp32: relative diff",
                         abs(got - ref) / max(abs(ref), 1e-12), "loss",
                         note=f"{self.s.cam}, loss {ref:.4f}")]

    def amp_kl(self) -> list[Row]:
        """CSD's KL terms under autocast with tiny and large maps; GradScaler's gradients."""
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v
                 for k, v in self.csd_batch(KL_CROP).items()}
        rows = []
        with torch.no_grad():
            natural = cam_net(self.s.cam).to(self.device).eval()(batch["img"])["maps"]
        for scale in KL_SCALES:
            scale = scale or 1e4 / natural.abs().max().clamp_min(1e-6).item()
            model = cam_net(self.s.cam).to(self.device).train()
            with torch.no_grad():
                model.classifier.weight.mul_(scale)
            seen = []
            hook = model.register_forward_hook(
                lambda m, i, out: seen.append(out["maps"].detach().abs().max().item()))
            step = CSDStep(CsdConfig(enabled=True))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
            scaler = torch.amp.GradScaler(self.device.type)
            with torch.autocast(self.device.type):
                loss, scalars = step(model, batch)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            hook.remove()
            grads = all(torch.isfinite(p.grad).all() for p in model.parameters()
                        if p.grad is not None)
            terms = [scalars["loss_fg"], scalars["loss_bg"], float(loss)]
            finite = all(math.isfinite(t) for t in terms)
            rows.append(Row(SECTION, f"CSD KL under AMP, classifier x{scale:g}", max(seen),
                            "max |map|", ok=finite and grads,
                            note=f"smallest max |map| {min(seen):.3g}; loss_fg {terms[0]:.3g}, "
                                 f"loss_bg {terms[1]:.3g}, grads "
                                 f"{'finite' if grads else 'NOT finite'}"))
        return rows


def run(section: Section, s: Sizes, device: torch.device, root) -> None:
    a = Agree(section, s, device, root)
    section.run(f"make-cam {s.cam}", lambda: a.make_cam(s.cam, s.cam_scales, "max"))
    section.run(f"make-cam {s.mct}", lambda: a.make_cam(s.mct, s.mct_scales, "minmax"))
    section.run("IRN", a.irn)
    section.run("PSA", a.psa)
    section.run("DeepLab", a.seg)
    section.run("train step", a.train_loss)
    section.run("CSD KL under AMP", a.amp_kl)
