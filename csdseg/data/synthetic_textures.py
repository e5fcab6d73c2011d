"""Appearance of the synthetic dataset: one texture per class, one background per context.

Every texture is a pattern field t in [0, 1] (stripes, checker, spots, rings, value noise,
waves, wood grain, bricks) mixing two colours. Classes that share a context share a palette
family (the grass animals are browns and creams, the road vehicles share a dark grey), so they
differ mostly in pattern; contexts borrow colours from their classes (sky is close to the
aeroplane's blue-grey, the tabletop is the dining table's wood) so that a CAM classifier can
latch onto the background. All arrays are float32 [S, S] or [S, S, 3] in 0..255.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

CONTEXTS: list[str] = ["sky", "water", "grass", "rails", "road", "indoor", "kitchen", "street"]

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ClassStyle:
    context: int  # index into CONTEXTS: the preferred background
    a: Colour  # colour at t = 0
    b: Colour  # colour at t = 1
    kind: str  # pattern kind, a key of PATTERNS
    freq: float  # cycles (or noise cells) per image width
    angle: float  # degrees; jittered by +-25 per instance


# In VOC_CLASSES order. Comments give the look each style aims at.
CLASS_STYLES: list[ClassStyle] = [
    ClassStyle(0, (205, 210, 220), (120, 160, 210), "stripes", 3, 0),  # aeroplane: grey-white, sky blue
    ClassStyle(4, (40, 90, 185), (60, 60, 66), "stripes", 10, 45),  # bicycle: thin blue/grey diagonals
    ClassStyle(0, (105, 125, 170), (195, 170, 135), "spots", 6, 20),  # bird: slate blue, buff spots
    ClassStyle(1, (232, 232, 236), (40, 80, 150), "stripes", 5, 90),  # boat: white/navy bands
    ClassStyle(6, (50, 135, 75), (185, 215, 195), "stripes", 6, 0),  # bottle: green glass highlights
    ClassStyle(4, (230, 180, 40), (66, 66, 76), "stripes", 4, 90),  # bus: yellow with window band
    ClassStyle(4, (190, 40, 40), (90, 90, 96), "noise", 5, 0),  # car: mottled red paint
    ClassStyle(5, (215, 140, 70), (120, 80, 45), "stripes", 8, 80),  # cat: orange tabby
    ClassStyle(5, (105, 68, 40), (165, 115, 68), "grain", 9, 90),  # chair: dark wood grain
    ClassStyle(2, (120, 85, 55), (235, 230, 220), "spots", 4, 10),  # cow: brown with white patches
    ClassStyle(6, (150, 105, 60), (100, 66, 38), "grain", 14, 0),  # diningtable: fine wood grain
    ClassStyle(5, (165, 115, 72), (70, 50, 35), "spots", 8, 30),  # dog: tan, dark spots
    ClassStyle(2, (135, 92, 56), (78, 54, 34), "stripes", 7, 30),  # horse: brown sheen
    ClassStyle(4, (155, 155, 165), (30, 30, 36), "rings", 6, 0),  # motorbike: chrome and black
    ClassStyle(7, (225, 180, 150), (50, 60, 110), "stripes", 2.5, 90),  # person: skin over denim
    ClassStyle(6, (60, 140, 50), (170, 90, 60), "spots", 8, 45),  # pottedplant: leaves, terracotta
    ClassStyle(2, (222, 212, 188), (150, 130, 100), "noise", 14, 0),  # sheep: cream wool
    ClassStyle(5, (140, 48, 60), (98, 38, 48), "checker", 8, 0),  # sofa: maroon plaid
    ClassStyle(3, (150, 150, 162), (175, 70, 50), "checker", 5, 0),  # train: steel and rust windows
    ClassStyle(5, (35, 35, 40), (70, 95, 140), "waves", 5, 0),  # tvmonitor: black with blue screen
]
CLASS_CONTEXT: list[int] = [style.context for style in CLASS_STYLES]


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates u (x), v (y) in [0, 1), each float32 [S, S], read-only."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    v, u = np.meshgrid(axis, axis, indexing="ij")
    u.flags.writeable = False
    v.flags.writeable = False
    return u, v


def value_noise(rng: np.random.Generator, size: int, cells: float) -> np.ndarray:
    """Smooth noise in [0, 1], float32 [S, S], with about ``cells`` features per image width."""
    n = max(2, int(round(cells)) + 1)
    lattice = rng.random((n, n), dtype=np.float32)
    return np.clip(cv2.resize(lattice, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _rotated(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return u * c + v * s, v * c - u * s


def _square(x: np.ndarray, sharp: float) -> np.ndarray:
    """A sine made squarer: 0.5 + 0.5 * clip(sharp * x)."""
    return 0.5 + 0.5 * np.clip(sharp * x, -1.0, 1.0)


def pattern(kind: str, rng: np.random.Generator, size: int, freq: float, angle: float) -> np.ndarray:
    """Pattern field t in [0, 1], float32 [S, S]; ``angle`` in radians, random phase."""
    u, v = grid(size)
    p, q = _rotated(u, v, angle)
    two_pi_f = np.float32(2 * np.pi * freq)
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    if kind == "stripes":
        return _square(np.sin(two_pi_f * p + phase), 2.0)
    if kind == "checker":
        return _square(np.sin(two_pi_f * p + phase) * np.sin(two_pi_f * q), 3.0)
    if kind == "spots":
        warp = (value_noise(rng, size, 3) - 0.5) * np.float32(0.6 / freq)
        s = np.sin(two_pi_f * (p + warp) + phase) * np.sin(two_pi_f * (q - warp))
        return np.clip((s - 0.3) * 4.0, 0.0, 1.0)
    if kind == "rings":
        cx, cy = rng.uniform(0.3, 0.7, 2).astype(np.float32)
        r = np.sqrt((u - cx) ** 2 + (v - cy) ** 2)
        return _square(np.sin(two_pi_f * r + phase), 2.0)
    if kind == "noise":
        return np.clip((value_noise(rng, size, freq) - 0.5) * 2.5 + 0.5, 0.0, 1.0)
    if kind == "waves":
        return _square(np.sin(two_pi_f * p + 2.0 * np.sin(np.float32(np.pi * freq) * q + phase)), 1.5)
    if kind == "grain":
        warp = (value_noise(rng, size, 3) - 0.5) * np.float32(2.0 / freq)
        return _square(np.sin(two_pi_f * (p + warp) + phase), 1.2)
    raise ValueError(f"unknown pattern kind {kind!r}; allowed: {', '.join(PATTERNS)}")


PATTERNS = ("stripes", "checker", "spots", "rings", "noise", "waves", "grain")


def _jitter(rng: np.random.Generator, colour: Colour, sigma: float) -> np.ndarray:
    return np.asarray(colour, np.float32) + rng.normal(0.0, sigma, 3).astype(np.float32)


def _mix(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[..., None]


def _shading(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """A linear brightness ramp [S, S, 1] around 1 in a random direction (imperfect lighting)."""
    u, v = grid(size)
    p, _ = _rotated(u, v, rng.uniform(0, 2 * np.pi))
    gain = rng.uniform(0.88, 1.12)
    return (gain * (1.0 + np.float32(strength) * (p - p.mean())))[..., None].astype(np.float32)


def render_class(cls: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One instance's texture over the whole image, float32 [S, S, 3] (the caller masks it)."""
    style = CLASS_STYLES[cls]
    freq = style.freq * rng.uniform(0.8, 1.25)
    angle = np.deg2rad(style.angle + rng.uniform(-25.0, 25.0))
    t = pattern(style.kind, rng, size, freq, angle)
    return _mix(t, _jitter(rng, style.a, 12.0), _jitter(rng, style.b, 12.0)) * _shading(rng, size, 0.3)


def _horizon(rng: np.random.Generator, size: int, lo: float, hi: float) -> np.ndarray:
    """Bool [S, S]: below a slightly tilted horizon line."""
    u, v = grid(size)
    return v > rng.uniform(lo, hi) + rng.uniform(-0.1, 0.1) * (u - 0.5)


def render_context(ctx: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One background of context ``ctx``, float32 [S, S, 3]."""
    u, v = grid(size)
    j = lambda colour, sigma=10.0: _jitter(rng, colour, sigma)  # noqa: E731 - local shorthand
    name = CONTEXTS[ctx]
    if name == "sky":
        image = _mix(v, j((110, 165, 230)), j((185, 215, 245)))
        clouds = np.clip((value_noise(rng, size, 4) - 0.55) * 4.0, 0.0, 0.8)
        image = _mix(clouds, image, j((240, 242, 248), 4.0)[None, None])
    elif name == "water":
        t = pattern("waves", rng, size, rng.uniform(8, 12), np.deg2rad(90 + rng.uniform(-10, 10)))
        image = _mix(t * 0.6 + v * 0.4, j((90, 160, 200)), j((30, 85, 135)))
    elif name == "grass":
        t = pattern("grain", rng, size, rng.uniform(18, 26), np.deg2rad(rng.uniform(-15, 15)))
        image = _mix(t, j((68, 132, 48)), j((110, 168, 62)))
        patches = np.clip((value_noise(rng, size, 3) - 0.62) * 5.0, 0.0, 0.9)
        image = _mix(patches, image, j((138, 110, 70))[None, None])
    elif name == "rails":
        image = _mix(value_noise(rng, size, 20), j((100, 96, 90)), j((150, 145, 135)))
        angle = np.deg2rad(rng.uniform(-15, 15))
        p, q = _rotated(u, v, angle)
        sleepers = np.sin(np.float32(2 * np.pi * rng.uniform(6, 8)) * q) > 0.4
        image[sleepers] = j((88, 62, 45))
        centre = rng.uniform(0.35, 0.65)
        for offset in (-0.15, 0.15):
            image[np.abs(p - centre - offset) < 0.025] = j((178, 178, 188), 6.0)
    elif name == "road":
        image = _mix(value_noise(rng, size, 30), j((68, 68, 74)), j((102, 102, 108)))
        p, q = _rotated(u, v, np.deg2rad(rng.uniform(-30, 30)))
        lane = (np.abs(p - rng.uniform(0.3, 0.7)) < 0.02) & (np.sin(np.float32(2 * np.pi * 4) * q) > 0)
        image[lane] = j((230, 225, 210)) if rng.random() < 0.5 else j((222, 188, 60))
    elif name == "indoor":
        wallpaper = pattern("stripes", rng, size, rng.uniform(6, 10), 0.0)
        image = _mix(wallpaper, j((208, 188, 158)), j((186, 162, 132)))
        floor = _horizon(rng, size, 0.55, 0.75)
        carpet = _mix(value_noise(rng, size, 12), j((140, 88, 70)), j((110, 66, 52)))
        image[floor] = carpet[floor]
    elif name == "kitchen":
        tiles = pattern("checker", rng, size, rng.uniform(6, 10), 0.0)
        image = _mix(tiles, j((226, 226, 216)), j((192, 198, 192)))
        table = _horizon(rng, size, 0.3, 0.6)
        wood = _mix(pattern("grain", rng, size, rng.uniform(5, 7), 0.0), j((168, 122, 76)), j((128, 86, 50)))
        image[table] = wood[table]
    elif name == "street":
        rows = rng.uniform(8, 12)
        row = np.floor(v * rows)
        across = u * rows / 2 + 0.5 * (row % 2)
        mortar = ((v * rows) % 1.0 < 0.12) | (across % 1.0 < 0.06)
        image = np.where(mortar[..., None], j((192, 186, 176)), j((165, 88, 66)))
        pavement = _horizon(rng, size, 0.6, 0.8)
        image[pavement] = _mix(value_noise(rng, size, 16), j((130, 130, 132)), j((160, 158, 155)))[pavement]
    else:  # pragma: no cover - CONTEXTS and this function are edited together
        raise ValueError(f"unknown context {ctx}")
    return image.astype(np.float32) * _shading(rng, size, 0.2)
