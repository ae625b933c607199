"""`amt-core predict --ckpt PATH IMAGE|DIR ... --out DIR`: run a checkpoint on image files.

Per image it writes NAME.json (joints, hand pose, object, contacts), NAME_hand.ply and NAME_object.ply (meshes in
the camera frame, metres) and NAME_overlay.png (the input with the predicted skeleton in the finger colours and the
object box). Images are centre-cropped to a square and resized to the model's input size; the camera is a pinhole
with focal length --focal (pixels of the original image, default 1.5 x its longer side) at the image centre, and
the 3D depth of the predictions depends on it. Any image mode is read as the file means it (16-bit and 32-bit
greyscale scaled, alpha composited over grey, palette and CMYK converted: `amt_core.data.crop.to_rgb`).

Each NAME.json has a `hand` section: `joint_std_mm`, the model's own uncertainty (the mean standard deviation of its
joints, from `joints3d_logvar`), and `present`, true while that is at most `HAND_STD_THRESHOLD_MM`. The models trained
so far are not taught their own error (their uncertainty only has a KL pull to a 10 mm prior), so today it sits at
10 mm for any image, a hand or none: `present` is the model's claim, not a detector. A model without the output
reports null.

A file that cannot be read (not an image, truncated, too small, too large) is skipped with one line and the others
are predicted. Exit codes: 0 every image predicted, 1 some skipped, 2 bad input (none readable, a bad checkpoint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE|DIR", help="image files or folders of them")
    parser.add_argument("--ckpt", required=True, help="a checkpoint folder, or a run directory (its latest checkpoint)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--focal", type=float, help="focal length in pixels of the original image")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.epilog = (
        "Each NAME.json has a 'hand' section: joint_std_mm, the model's own uncertainty (mean standard deviation of "
        f"its joints), and present, true while that is at most {HAND_STD_THRESHOLD_MM:g} mm (twice the 10 mm prior "
        "the uncertainty is pulled towards). The models trained so far are not taught their own error, so it stays "
        "near 10 mm for any image: present is the model's claim, not a hand detector. Files that cannot be read are "
        "skipped with one line; exit 0 all predicted, 1 some skipped, 2 none readable or bad input."
    )


def collect_images(inputs: list[Path]) -> list[Path]:
    """Image files named directly or found (not recursively) in folders, sorted per folder."""
    from amt_core.errors import UserError

    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise UserError(f"input {path} does not exist")
    return images


MIN_IMAGE_SIDE = 16  # pixels: below this a centre crop holds no recognisable hand
HAND_STD_THRESHOLD_MM = 20.0
"""`hand.present` is true while the model's mean joint standard deviation is at most this: twice the 10 mm prior its
uncertainty is pulled towards in training (`SigmaReparamConfig.prior_std`); above it the model says it does not know
where the joints are."""


def load_image(path: Path, size: int, focal: float | None):
    """(3, size, size) float image in [0, 1], its K (3, 3) and the uint8 crop (size, size, 3)."""
    import warnings

    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from amt_core.data.crop import to_rgb
    from amt_core.errors import UserError, short

    try:
        with warnings.catch_warnings():
            # PIL warns (and above twice the limit refuses) on decompression bombs; one line, not a raw warning
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                rgb = to_rgb(img)  # 16-bit greyscale, alpha, palette, CMYK: as the file means them
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise UserError(f"image {path} has more than {limit:.0f} megapixels; downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"cannot read image {path} ({short(str(err), 100)}); give PNG or JPEG files") from None
    width, height = rgb.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UserError(
            f"image {path} is {width}x{height} pixels; give at least {MIN_IMAGE_SIDE} pixels on the short side "
            "(the hand is cropped from its centre square)"
        )
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    crop = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(crop, dtype=np.uint8)
    focal_px = (focal if focal else 1.5 * max(width, height)) * size / side
    K = torch.tensor([[focal_px, 0.0, (size - 1) / 2], [0.0, focal_px, (size - 1) / 2], [0.0, 0.0, 1.0]])
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
    return image, K, pixels


def run(args: argparse.Namespace) -> int:
    from amt_core.errors import UserError

    if args.focal is not None and not args.focal > 0:
        raise UserError(f"--focal must be > 0 pixels (got {args.focal})")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder")
    images = collect_images(args.inputs)

    import torch

    from amt_core.errors import summarise_keys
    from amt_core.train import parts
    from amt_core.train.parts import resolve_device
    from amt_core.train.progress import CountProgress

    device = resolve_device(args.device)
    model, _, _ = parts.model_from_checkpoint(args.ckpt, device)
    size = int(model.config.backbone.img_size)
    faces = parts.hand_faces(model)
    skipped: list[str] = []
    held: list[str] = []  # skips before the first prediction: if none comes, the one error line speaks for them
    with CountProgress("predict", len(images), "images") as progress:
        for done, path in enumerate(images, start=1):
            try:
                image, K, pixels = load_image(path, size, args.focal)
            except UserError as err:  # one unreadable file does not cost the folder its predictions
                skipped.append(str(path))
                if len(skipped) < done:  # something was predicted: the folder goes on without this file
                    progress.print(f"skipped: {err}")
                else:
                    held.append(str(err))
                progress.update(done)
                continue
            for reason in held:
                progress.print(f"skipped: {reason}")
            held = []
            batch = {"image": image[None].to(device), "K": K[None].to(device)}
            with torch.no_grad():
                output = model(batch)
            try:
                args.out.mkdir(parents=True, exist_ok=True)
                hand = write_prediction(args.out / path.stem, output, K, pixels, faces)["hand"]
            except OSError as err:  # cli.main's handler writes the line; a write() names no file, so name the folder
                if err.filename is None:
                    err.filename = str(args.out)
                raise
            verdict = "no hand" if hand["present"] is False else "hand"
            std = "-" if hand["joint_std_mm"] is None else f"{hand['joint_std_mm']:.1f}"
            print(f"{path} -> {args.out / path.stem}.json ({verdict}, joint std {std} mm)")  # above a live bar
            progress.update(done)
    if len(skipped) == len(images):
        raise UserError(
            held[0] if len(held) == 1 else f"none of the {len(held)} images could be read; first, {held[0]}"
        )
    if skipped:
        print(f"predicted {len(images) - len(skipped)} of {len(images)} images; skipped {summarise_keys(skipped)}")
        return 1
    return 0


def hand_presence(output) -> dict:
    """The `hand` section of NAME.json (batch of 1): the model's mean joint standard deviation in millimetres and
    whether it is within `HAND_STD_THRESHOLD_MM`; nulls for a model without an uncertainty output."""
    logvar = output.joints3d_logvar
    if logvar is None:
        return {"joint_std_mm": None, "present": None, "threshold_mm": HAND_STD_THRESHOLD_MM}
    std_mm = float((0.5 * logvar[0].detach().float()).exp().mean()) * 1000.0
    return {"joint_std_mm": std_mm, "present": std_mm <= HAND_STD_THRESHOLD_MM, "threshold_mm": HAND_STD_THRESHOLD_MM}


def write_prediction(stem: Path, output, K, pixels, faces) -> dict:
    """NAME.json, NAME_hand.ply, NAME_object.ply and NAME_overlay.png for one image's output (batch of 1); returns
    the JSON's record."""
    import numpy as np
    import trimesh

    from amt_core.joints import JOINT_NAMES

    record: dict = {
        "K": K.tolist(),
        "joint_names": list(JOINT_NAMES),
        "joints3d_m": _first(output.joints3d).tolist(),
        "joints2d_px": _first(output.joints2d).tolist(),
        "hand": hand_presence(output),
    }
    for name in ("hand_pose", "hand_shape", "hand_rot", "hand_trans"):
        value = _first(getattr(output, name))
        if value is not None:
            record[name] = value.tolist()
    obj_mesh = None
    if output.obj_rot is not None:
        record["object"], obj_mesh = _object_record(output)
    if output.contact_points is not None:
        record["contacts"] = {
            "points_m": _first(output.contact_points).tolist(),
            "confidence": _first(output.contact_conf).tolist() if output.contact_conf is not None else None,
            "forces_n": _first(output.contact_forces).tolist() if output.contact_forces is not None else None,
            "vertices_in_contact": (
                np.flatnonzero(_first(output.contact_prob) > 0.5).tolist() if output.contact_prob is not None else None
            ),
        }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
    if output.hand_verts is not None and faces is not None:
        mesh = trimesh.Trimesh(_first(output.hand_verts), faces.cpu().numpy(), process=False)
        mesh.export(stem.with_name(stem.name + "_hand.ply"))
    if obj_mesh is not None:
        obj_mesh.export(stem.with_name(stem.name + "_object.ply"))
    draw_overlay(pixels, _first(output.joints2d), record.get("object", {}).get("box_px")).save(
        stem.with_name(stem.name + "_overlay.png")
    )
    return record


def _first(value):
    """The first sample of a batched output field as a float numpy array (None stays None)."""
    return None if value is None else value[0].detach().float().cpu().numpy()


def _object_record(output):
    """The JSON record of the predicted object (class, probabilities, pose, box) and its catalog mesh posed in the
    camera frame (None for a class the catalog does not have)."""
    import numpy as np

    from amt_core.objects.catalog import catalog

    classes = catalog()
    probs = _first(output.obj_logits.softmax(-1)) if output.obj_logits is not None else None
    class_id = int(probs.argmax()) if probs is not None else -1
    rot, trans = _first(output.obj_rot), _first(output.obj_trans)
    record = {
        "class_id": class_id,
        "class_name": classes[class_id].name if 0 <= class_id < len(classes) else None,
        "class_prob": float(probs[class_id]) if probs is not None else None,
        "present_prob": float(1 / (1 + np.exp(-_first(output.obj_present))))
        if output.obj_present is not None
        else None,
        "rot": rot.tolist(),
        "trans_m": trans.tolist(),
        "box_px": _first(output.obj_box).tolist() if output.obj_box is not None else None,
    }
    if not 0 <= class_id < len(classes):
        return record, None
    mesh = classes[class_id].mesh.copy()
    mesh.apply_transform(np.block([[rot, trans[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]))
    return record, mesh


def draw_overlay(pixels, joints2d, box, min_side: int = 256):
    """The image (upscaled to at least `min_side`) with the skeleton in FINGER_COLORS and the object box."""
    from PIL import Image, ImageDraw

    from amt_core.joints import BONES, FINGER_COLORS, finger_of

    image = Image.fromarray(pixels)
    scale = max(1, -(-min_side // image.width))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    points = [(float(u) * scale, float(v) * scale) for u, v in joints2d]
    if box is not None:
        draw.rectangle([c * scale for c in box], outline=(255, 255, 255), width=2)
    for parent, child in BONES:
        draw.line([points[parent], points[child]], fill=FINGER_COLORS[finger_of(child)], width=3)
    for index, (u, v) in enumerate(points):
        color = (255, 255, 255) if index == 0 else FINGER_COLORS[finger_of(index)]
        draw.ellipse([u - 3, v - 3, u + 3, v + 3], fill=color)
    return image
