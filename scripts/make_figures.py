"""Makes the README figures with the project's own ray-cast renderer: the synthetic preview, the catalog, hand poses.

Run `python scripts/make_figures.py [--out docs/images]`. Deterministic (fixed seeds); each PNG stays small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TILE = 160
LIGHT_SEED = 2  # one light set-up for every hand tile, so they compare


def _look(points: np.ndarray, view: np.ndarray, up: np.ndarray, size: int, share: float = 0.8):
    """Camera (R, t, K) looking at `points` (N, 3) from direction `view`, the points spanning `share` of the image."""
    from amt_core.synth.world import crop_intrinsics, look_at

    center = (points.min(0) + points.max(0)) / 2
    rot, trans = look_at(center, view / np.linalg.norm(view), up, 0.6, 0.0)
    K = crop_intrinsics(points @ rot.T + trans, size, share, np.zeros(2))
    return rot, trans, K


def _plain_background(size: int, shade: float = 0.93) -> np.ndarray:
    v = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(shade - 0.12 * v, (size, size, 3)).astype(np.float32).copy()


def _tile(rgb: np.ndarray, label: str | None = None):
    from PIL import Image, ImageDraw

    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    if label:
        draw = ImageDraw.Draw(image)
        draw.text((5, image.height - 14), label, fill=(30, 30, 30))
    return image


def _grid(tiles: list, columns: int):
    from PIL import Image

    rows = (len(tiles) + columns - 1) // columns
    gap = 2
    sheet = Image.new("RGB", (columns * (TILE + gap) + gap, rows * (TILE + gap) + gap), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (gap + (i % columns) * (TILE + gap), gap + (i // columns) * (TILE + gap)))
    return sheet


def catalog_figure():
    """Every object class, rendered in a three-quarter view with its albedo."""
    from amt_core.objects import catalog
    from amt_core.synth.render import OBJECT, MeshInstance, RenderConfig, Renderer

    renderer = Renderer(RenderConfig(ambient=(0.45, 0.45), key_light=(0.75, 0.75), noise_std=0.0))
    tiles = []
    for obj in catalog():
        verts = np.asarray(obj.mesh.vertices)
        rot, trans, K = _look(verts, np.array([1.0, -1.4, 0.9]), np.array([0.0, 0.0, 1.0]), TILE, 0.72)
        mesh = MeshInstance(
            verts=verts @ rot.T + trans,
            faces=np.asarray(obj.mesh.faces),
            kind=OBJECT,
            albedo=obj.albedo,
            to_local=(rot, trans),
            shininess=30.0,
            specular=0.2,
        )
        out = renderer.render([mesh], K, TILE, TILE, np.random.default_rng(obj.id), _plain_background(TILE))
        tiles.append(_tile(out.rgb, f"{obj.id} {obj.name}"))
    return _grid(tiles, 7)


def hand_poses_figure():
    """The open hand: flat, relaxed, spread, pinch, power grasp, fist, and two random plausible poses."""
    import torch

    from amt_core.hand import HandModel
    from amt_core.hand.limits import flexion_pose, sample_pose
    from amt_core.synth.render import HAND, SKIN_TONES, MeshInstance, RenderConfig, Renderer

    hand = HandModel()
    named = {
        "flat": flexion_pose(np.zeros((1, 5)))[0],
        "relaxed": flexion_pose(np.full((1, 5), 0.3))[0],
        "spread": flexion_pose(np.zeros((1, 5)), np.ones((1, 5)))[0],
        "pinch": flexion_pose(np.array([[0.7, 0.65, 0.2, 0.2, 0.2]]))[0],
        "power": flexion_pose(np.full((1, 5), 0.65), np.array([[0.8, 0, 0, 0, 0]]))[0],
        "fist": flexion_pose(np.ones((1, 5)))[0],
    }
    rng = np.random.default_rng(4)
    for k, pose in enumerate(sample_pose(2, rng)):
        named[f"random {k + 1}"] = pose
    poses = torch.tensor(np.stack(list(named.values()))).float()
    with torch.no_grad():
        verts = hand(poses).verts.numpy().astype(np.float64)
    renderer = Renderer(RenderConfig(ambient=(0.4, 0.4), key_light=(0.8, 0.8), noise_std=0.0))
    tiles = []
    for k, name in enumerate(named):
        # Template frame: fingers +y, palm +z; look at the palm from the thumb side, fingers up in the image.
        rot, trans, K = _look(verts[k], np.array([0.8, -0.3, 0.9]), np.array([0.0, 1.0, 0.0]), TILE, 0.8)
        colors = np.tile(SKIN_TONES[1 + k % 4], (len(verts[k]), 1)).astype(np.float32)
        mesh = MeshInstance(verts=verts[k] @ rot.T + trans, faces=hand.faces, kind=HAND, vertex_colors=colors)
        out = renderer.render([mesh], K, TILE, TILE, np.random.default_rng(LIGHT_SEED), _plain_background(TILE))
        tiles.append(_tile(out.rgb, name))
    return _grid(tiles, 4)


def preview_figure(seed: int):
    """The 16-sample contact sheet of the synthetic world (as `amt-core synth --preview --num 16`)."""
    from amt_core.data.synthetic import SynthLiveDataset
    from amt_core.synth.preview import contact_sheet
    from amt_core.synth.world import WorldConfig

    dataset = SynthLiveDataset(seed=seed, num=16, world_config=WorldConfig(size=160, hand_only_share=0.1))
    return contact_sheet([dataset[i] for i in range(16)], tile=TILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    parser.add_argument("--seed", type=int, default=1, help="seed of the preview's samples")
    parser.add_argument("--only", choices=("preview", "catalog", "hands"), default=None)
    args = parser.parse_args()
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    figures = {
        "preview": ("synth_preview.png", lambda: preview_figure(args.seed)),
        "catalog": ("catalog.png", catalog_figure),
        "hands": ("hand_poses.png", hand_poses_figure),
    }
    for key, (name, make) in figures.items():
        if args.only and key != args.only:
            continue
        path = args.out / name
        # An adaptive 256-colour palette keeps the noisy renders small (the README wants each under 500 KB).
        make().quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
