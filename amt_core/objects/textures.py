"""Procedural surface colours for the object catalog: labels on cans and boxes, speckles, grain, seams.

Each texture is a small frozen dataclass called with points in the object frame `(N, 3)` metres and returning
albedo `(N, 3)` in [0, 1]. Dataclasses, not closures, so object classes pickle into data-loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]


def smooth_noise(points: np.ndarray, frequency: float, seed: int = 0) -> np.ndarray:
    """Deterministic smooth noise in about [-1, 1]: a sum of sinusoids with fixed random directions.

    Args:
        points: (N, 3) metres.
        frequency: cycles per metre of the dominant wave.
        seed: picks the directions and phases.

    Returns:
        (N,) values.
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(6, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    scales = frequency * np.array([1.0, 1.3, 1.7, 2.3, 2.9, 3.7])
    phases = rng.uniform(0, 2 * np.pi, size=6)
    waves = np.sin(points @ (directions * scales[:, None] * 2 * np.pi).T + phases)  # (N, 6)
    return waves @ np.array([0.35, 0.25, 0.15, 0.1, 0.08, 0.07]) / 0.6


def _mix(a: np.ndarray, b: RGB | np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend colours: a (N, 3) or (3,), b (3,) or (N, 3), weight t (N,) of b."""
    return np.asarray(a) * (1 - t[:, None]) + np.asarray(b) * t[:, None]


def _finish(colors: np.ndarray, count: int) -> np.ndarray:
    return np.clip(np.broadcast_to(colors, (count, 3)), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Solid:
    """One colour with a faint mottling, so flat faces still show texture to the network."""

    color: RGB

    def __call__(self, points: np.ndarray) -> np.ndarray:
        shade = 1 + 0.04 * smooth_noise(points, 60.0, seed=1)
        return _finish(np.asarray(self.color) * shade[:, None], len(points))


@dataclass(frozen=True)
class CanLabel:
    """A can: metal rims outside the label band; the band has a stripe near each edge and a logo oval in front."""

    metal: RGB
    label: RGB
    stripe: RGB
    logo: RGB
    band: tuple[float, float]  # label z range in the object frame, metres

    def __call__(self, points: np.ndarray) -> np.ndarray:
        z = points[:, 2]
        lo, hi = self.band
        height = hi - lo
        angle = np.arctan2(points[:, 1], points[:, 0])  # radians; the logo faces +x
        colors = np.tile(np.asarray(self.label, dtype=np.float64), (len(points), 1))
        stripes = (np.abs(z - lo - 0.12 * height) < 0.04 * height) | (np.abs(z - hi + 0.12 * height) < 0.04 * height)
        colors[stripes] = self.stripe
        oval = (angle / 0.9) ** 2 + ((z - (lo + hi) / 2) / (0.22 * height)) ** 2 < 1
        colors[oval] = self.logo
        text = oval & (np.sin(angle * 40) > 0.6) & (np.abs(z - (lo + hi) / 2) < 0.06 * height)
        colors[text] = self.stripe
        metal = (z < lo) | (z > hi)
        shine = 0.85 + 0.15 * np.cos(angle * 3)[metal]
        colors[metal] = np.asarray(self.metal) * shine[:, None]
        return _finish(colors, len(points))


@dataclass(frozen=True)
class BoxPrint:
    """A printed carton: base colour, a band near the bottom, a logo disc on the two large faces (y = +-depth/2)."""

    base: RGB
    band: RGB
    logo: RGB
    extents: tuple[float, float, float]  # (x, y, z) metres

    def __call__(self, points: np.ndarray) -> np.ndarray:
        ex, _, ez = self.extents
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        colors = np.tile(np.asarray(self.base, dtype=np.float64), (len(points), 1))
        colors[(z > -0.40 * ez) & (z < -0.22 * ez)] = self.band
        large_face = np.abs(np.abs(y) - self.extents[1] / 2) < 1e-4
        disc = large_face & ((x / (0.32 * ex)) ** 2 + ((z - 0.12 * ez) / (0.22 * ez)) ** 2 < 1)
        colors[disc] = self.logo
        lines = disc & (np.abs(np.sin(z * 2 * np.pi / (0.05 * ez))) > 0.92)
        colors[lines] = self.band
        return _finish(colors, len(points))


@dataclass(frozen=True)
class Bottle:
    """A bottle: body colour, a label band with a logo, a cap of another colour above cap_z."""

    body: RGB
    label: RGB
    cap: RGB
    cap_z: float  # cap starts here, object frame z metres
    band: tuple[float, float]  # label z range

    def __call__(self, points: np.ndarray) -> np.ndarray:
        z = points[:, 2]
        colors = np.tile(np.asarray(self.body, dtype=np.float64), (len(points), 1))
        lo, hi = self.band
        in_band = (z > lo) & (z < hi) & (points[:, 1] > 0)
        colors[in_band] = self.label
        logo = in_band & ((points[:, 0] / 0.02) ** 2 + ((z - (lo + hi) / 2) / (0.3 * (hi - lo))) ** 2 < 1)
        colors[logo] = self.body
        colors[z > self.cap_z] = self.cap
        return _finish(colors, len(points))


@dataclass(frozen=True)
class Speckled:
    """A fruit skin: base colour, darker speckles, and darker tips beyond |x| > tip_x (banana)."""

    base: RGB
    speck: RGB
    tip: RGB
    tip_x: float  # metres; tips are where |x| exceeds this
    speck_frequency: float = 400.0  # cycles per metre

    def __call__(self, points: np.ndarray) -> np.ndarray:
        fine = smooth_noise(points, self.speck_frequency, seed=3)
        colors = _mix(np.asarray(self.base), self.speck, np.clip((fine - 0.6) * 4, 0, 1))
        tip = np.clip((np.abs(points[:, 0]) - self.tip_x) / 0.008, 0, 1)
        return _finish(_mix(colors, self.tip, tip), len(points))


@dataclass(frozen=True)
class AppleSkin:
    """An apple: red with yellow streaks running from pole to pole."""

    red: RGB
    yellow: RGB

    def __call__(self, points: np.ndarray) -> np.ndarray:
        lon = np.arctan2(points[:, 1], points[:, 0])
        coords = np.stack([np.cos(lon) * 0.02, np.sin(lon) * 0.02, points[:, 2] * 0.15], axis=1)
        streaks = smooth_noise(coords, 300.0, seed=5)
        blush = 0.5 + 0.5 * smooth_noise(points, 12.0, seed=6)
        t = np.clip(0.35 * (streaks + 0.1) + 0.45 * (1 - blush), 0, 1) * 0.6
        return _finish(_mix(np.asarray(self.red), self.yellow, t), len(points))


@dataclass(frozen=True)
class TennisBall:
    """Fluorescent felt with the white seam (the classic curve on a sphere)."""

    felt: RGB
    seam: RGB
    seam_width: float = 0.15  # radians of arc across the seam

    def __call__(self, points: np.ndarray) -> np.ndarray:
        t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        a, b = 0.75, 0.25
        curve = np.stack(
            [a * np.cos(t) + b * np.cos(3 * t), a * np.sin(t) - b * np.sin(3 * t), 2 * np.sqrt(a * b) * np.sin(2 * t)],
            1,
        )
        curve /= np.linalg.norm(curve, axis=1, keepdims=True)  # (256, 3) on the unit sphere
        directions = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-9)
        near = (directions @ curve.T).max(axis=1) > np.cos(self.seam_width / 2)
        shade = 1 + 0.06 * smooth_noise(points, 500.0, seed=7)  # fuzz
        colors = np.asarray(self.felt) * shade[:, None]
        colors[near] = self.seam
        return _finish(colors, len(points))


@dataclass(frozen=True)
class WoodGrain:
    """Growth rings about the z axis with a wavy perturbation; symmetric under the block's own symmetries."""

    light: RGB
    dark: RGB
    ring_spacing: float = 0.006  # metres

    def __call__(self, points: np.ndarray) -> np.ndarray:
        radius = np.hypot(points[:, 0], points[:, 1])
        wobble = 0.0015 * np.sin(np.abs(points[:, 2]) * 90.0) + 0.001 * np.sin(radius * 700.0)
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (radius + wobble) / self.ring_spacing)
        return _finish(_mix(np.asarray(self.light), self.dark, rings**3 * 0.8), len(points))


@dataclass(frozen=True)
class Glaze:
    """A mug or vessel: one glaze outside, another inside the cavity (radius below inner_radius, above floor_z)."""

    outer: RGB
    inner: RGB
    inner_radius: float  # metres
    floor_z: float  # metres, object frame

    def __call__(self, points: np.ndarray) -> np.ndarray:
        radius = np.hypot(points[:, 0], points[:, 1])
        inside = (radius < self.inner_radius + 1e-4) & (points[:, 2] > self.floor_z - 1e-4)
        colors = np.where(inside[:, None], np.asarray(self.inner), np.asarray(self.outer))
        shade = 1 + 0.03 * smooth_noise(points, 80.0, seed=2)
        return _finish(colors * shade[:, None], len(points))


@dataclass(frozen=True)
class Regions:
    """Colours by axis-aligned boxes in the object frame (tools: grip, chuck, blades); first match wins."""

    default: RGB
    boxes: tuple[tuple[tuple[float, float, float], tuple[float, float, float], RGB], ...]  # (lo, hi, colour)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        colors = np.tile(np.asarray(self.default, dtype=np.float64), (len(points), 1))
        taken = np.zeros(len(points), dtype=bool)
        for lo, hi, color in self.boxes:
            hit = ~taken & np.all((points >= np.asarray(lo)) & (points <= np.asarray(hi)), axis=1)
            colors[hit] = color
            taken |= hit
        shade = 1 + 0.03 * smooth_noise(points, 80.0, seed=4)
        return _finish(colors * shade[:, None], len(points))
