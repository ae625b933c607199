"""DexYCB reader on a miniature dataset in the official layout: splits, PCA pose, left-hand mirroring, objects."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from helpers.drawing import blob_image, centroid, project

from amt_core.commands.datasets import check, register_real_schemes
from amt_core.data import open_dataset
from amt_core.data.crop import CropConfig
from amt_core.data.dexycb import (
    LEGACY_SUBJECTS,
    SERIALS,
    SUBJECTS,
    DexYCBDataset,
    layout_problems,
    split_rule,
)
from amt_core.errors import UserError
from amt_core.hand.model import HandModel, default_hand_path
from amt_core.objects.catalog import get_object

W, H = 128, 96
SEQS = 5  # sequences per subject (the real dataset has 100)
RED, GREEN = 0, 1


def intrinsics(camera: int) -> np.ndarray:
    return np.array([[100.0 + camera, 0.0, 63.5 + camera], [0.0, 101.0, 47.5], [0.0, 0.0, 1.0]])


def write_mano_dir(folder) -> dict:
    """The open hands as MANO files, with a random orthonormal PCA basis and a non-zero mean pose, so the PCA path
    of DexYCB's pose_m is exercised."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {}
    for k, side in enumerate(("right", "left")):
        arrays = dict(np.load(default_hand_path(side)))
        rng = np.random.default_rng(k)
        arrays["hands_components"] = np.linalg.qr(rng.normal(size=(45, 45)))[0].astype(np.float32)
        arrays["hands_mean"] = rng.normal(0, 0.1, 45).astype(np.float32)
        np.savez(folder / f"MANO_{side.upper()}.npz", **arrays)
        tables[side] = arrays
    return tables


@pytest.fixture(autouse=True)
def _no_mano_from_the_environment(monkeypatch):
    """Specs without mano= read $AMT_MANO_DIR; the tests decide for themselves."""
    monkeypatch.delenv("AMT_MANO_DIR", raising=False)


@pytest.fixture(scope="module")
def dexycb(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dex-ycb")
    mano_dir = tmp_path_factory.mktemp("mano")
    mano_tables = write_mano_dir(mano_dir)
    models = {side: HandModel(side=side) for side in ("right", "left")}
    intr_dir = root / "calibration" / "intrinsics"
    intr_dir.mkdir(parents=True)
    for c, serial in enumerate(SERIALS):
        K = intrinsics(c)
        color = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "ppx": float(K[0, 2]), "ppy": float(K[1, 2])}
        (intr_dir / f"{serial}_640x480.yml").write_text(yaml.safe_dump({"color": color, "depth": color}))
    truth = {}
    for s, subject in enumerate(SUBJECTS):
        betas = np.random.default_rng(100 + s).normal(0, 0.5, 10)
        calib = f"20200100_{s:02d}_{subject.split('-')[1]}"
        (root / "calibration" / f"mano_{calib}").mkdir(parents=True)
        (root / "calibration" / f"mano_{calib}" / "mano.yml").write_text(yaml.safe_dump({"betas": betas.tolist()}))
        for q in range(SEQS):
            seq = root / subject / f"2020{s:02d}01_{q:06d}"
            side = "left" if (s + q) % 3 == 0 else "right"
            rng = np.random.default_rng(1000 * s + q)
            rot, pose = rng.normal(0, 0.3, 3), rng.normal(0, 0.15, 45)  # pose: flat-hand relative
            trans = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.1, -0.08), 0.5])
            with torch.no_grad():
                out = models[side](*(torch.tensor(x, dtype=torch.float32)[None] for x in (pose, betas, rot, trans)))
            joints, verts = out.joints[0].double().numpy(), out.verts[0].double().numpy()
            table = mano_tables[side]
            coeffs = (pose - table["hands_mean"]) @ table["hands_components"].astype(np.float64).T
            pose_m = np.concatenate([rot, coeffs, trans])[None].astype(np.float32)  # (1, 51)
            meta = {
                "serials": list(SERIALS),
                "num_frames": 1,
                "ycb_ids": [1, 14],
                "ycb_grasp_ind": 1,
                "mano_sides": [side],
                "mano_calib": [calib],
                "extrinsics": "x",
                "pcd_load": False,
            }
            seq.mkdir(parents=True)
            (seq / "meta.yml").write_text(yaml.safe_dump(meta))
            obj_pose = np.array([[0.0, -1.0, 0.0, 0.03], [1.0, 0.0, 0.0, 0.01], [0.0, 0.0, 1.0, 0.55]])
            for c, serial in enumerate(SERIALS):
                (seq / serial).mkdir()
                uv = project(joints, intrinsics(c))
                blob_image(W, H, {RED: uv[0], GREEN: uv[4]}, sigma=1.5).save(
                    seq / serial / "color_000000.jpg", quality=98, subsampling=0
                )
                seg = np.zeros((H, W), np.uint8)
                seg[: H // 2] = 255  # hand pixels above, the grasped mug below: the crop around the hand sees both
                seg[H // 2 :] = 14
                np.savez(
                    seq / serial / "labels_000000.npz",
                    seg=seg,
                    joint_3d=joints[None].astype(np.float32),
                    joint_2d=uv[None].astype(np.float32),
                    pose_m=pose_m,
                    pose_y=np.stack([np.zeros((3, 4)), obj_pose]).astype(np.float32),
                )
            truth[(s, q)] = {"joints": joints, "verts": verts, "side": side, "obj_pose": obj_pose}
    # a frame with no hand labelled (joint_3d all -1, pose_m zero), as in the real data
    empty = root / SUBJECTS[9] / f"2020{9:02d}01_{4:06d}" / SERIALS[0] / "labels_000000.npz"
    data = dict(np.load(empty))
    data["joint_3d"][:] = -1
    data["pose_m"][:] = 0
    np.savez(empty, **data)
    return {"root": root, "truth": truth, "mano": mano_dir}


def test_official_split_rules():
    assert split_rule("s0", "train").sequences == tuple(i for i in range(100) if i % 5 != 4)
    assert split_rule("s0", "test").subjects == tuple(range(2, 10))
    assert split_rule("s1", "test").subjects == (7, 8) and split_rule("s1", "val").subjects == (6,)
    assert split_rule("s2", "val").serials == (6,) and split_rule("s2", "test").serials == (7,)
    assert split_rule("s3", "val").sequences == (15, 16, 17, 18, 19, 95, 96, 97, 98, 99)
    assert split_rule("s3", "test").sequences == tuple(range(35, 40)) + tuple(range(55, 60)) + tuple(range(75, 80))
    for setup in ("s0", "s1", "s2", "s3"):  # every sequence of every subject and camera is in exactly one split
        seen = np.zeros((10, 8, 100), int)
        for split in ("train", "val", "test"):
            rule = split_rule(setup, split)
            seen[np.ix_(rule.subjects, rule.serials, rule.sequences)] += 1
        assert seen.max() == 1 and seen.min() == 1
    with pytest.raises(UserError, match="s0..s3"):
        split_rule("s4", "test")


def test_splits_on_the_mini_dataset(dexycb):
    register_real_schemes()
    root = dexycb["root"]
    count = {
        key: len(open_dataset(f"dexycb:{root}:{key}?strict=0&size=32"))
        for key in ("s0:train", "s0:val", "s0:test", "s1:train", "s1:val", "s1:test", "s2:train", "s2:test")
    }
    assert count["s0:train"] == 10 * 4 * 8  # sequences 0-3 of every subject, 8 cameras, 1 frame each
    assert count["s0:val"] == 2 * 1 * 8 and count["s0:test"] == 8 * 1 * 8
    assert count["s1:train"] == 7 * SEQS * 8 and count["s1:val"] == SEQS * 8 and count["s1:test"] == 2 * SEQS * 8
    assert count["s2:train"] == 10 * SEQS * 6 and count["s2:test"] == 10 * SEQS * 1
    data = DexYCBDataset(root, "s1", "test", crop=CropConfig(size=32), strict=False)
    # the toolkit's order: subject, sequence, camera, frame
    assert data.frame_id(0) == f"{SUBJECTS[7]}/20200701_000000/{SERIALS[0]}/000000"
    assert data.frame_id(1) == f"{SUBJECTS[7]}/20200701_000000/{SERIALS[1]}/000000"
    assert data.frame_id(8) == f"{SUBJECTS[7]}/20200701_000001/{SERIALS[0]}/000000"


def test_right_hand_sample(dexycb):
    data = DexYCBDataset(dexycb["root"], "s2", "test", crop=CropConfig(size=64), strict=False)  # camera 7 only
    index = next(i for i in range(len(data)) if data.side(i) == "right")
    s, q = SUBJECTS.index(data.frame_id(index).split("/")[0]), int(data.frame_id(index).split("/")[1][-6:])
    truth = dexycb["truth"][(s, q)]
    sample = data[index]
    np.testing.assert_allclose(sample["joints3d"].numpy(), truth["joints"], atol=1e-6)  # metres, our order
    uv = project(truth["joints"], sample["K"].double().numpy())
    np.testing.assert_allclose(sample["joints2d"].numpy(), uv, atol=1e-3)
    image = sample["image"].numpy()
    np.testing.assert_allclose(centroid(image[RED]), uv[0], atol=0.35)
    np.testing.assert_allclose(centroid(image[GREEN]), uv[4], atol=0.35)
    assert bool(sample["valid"]["obj"]) and int(sample["obj_class"]) == get_object("025_mug").id
    np.testing.assert_allclose(sample["obj_rot"].numpy(), truth["obj_pose"][:, :3], atol=1e-6)
    np.testing.assert_allclose(sample["obj_trans"].numpy(), truth["obj_pose"][:, 3], atol=1e-6)
    assert bool(sample["valid"]["masks"]) and sample["hand_mask"].any() and sample["obj_mask"].any()


def test_left_hand_is_mirrored(dexycb):
    data = DexYCBDataset(dexycb["root"], "s2", "test", crop=CropConfig(size=64), strict=False)
    index = next(i for i in range(len(data)) if data.side(i) == "left")
    s, q = SUBJECTS.index(data.frame_id(index).split("/")[0]), int(data.frame_id(index).split("/")[1][-6:])
    truth = dexycb["truth"][(s, q)]
    sample = data[index]
    mirrored = truth["joints"] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(sample["joints3d"].numpy(), mirrored, atol=1e-6)
    uv = project(mirrored, sample["K"].double().numpy())
    image = sample["image"].numpy()  # the flipped image still shows the wrist and thumb tip at the joints
    np.testing.assert_allclose(centroid(image[RED]), uv[0], atol=0.35)
    np.testing.assert_allclose(centroid(image[GREEN]), uv[4], atol=0.35)
    assert not bool(sample["valid"]["obj"])  # a mirrored object is not a rigid motion of its model


def test_pca_pose_and_mirrored_mano(dexycb):
    register_real_schemes()
    data = open_dataset(f"dexycb:{dexycb['root']}:s2:test?strict=0&size=32&mano={dexycb['mano']}")
    right_model = HandModel(dexycb["mano"] / "MANO_RIGHT.npz")
    for side in ("right", "left"):
        index = next(i for i in range(len(data)) if data.side(i) == side)
        s, q = SUBJECTS.index(data.frame_id(index).split("/")[0]), int(data.frame_id(index).split("/")[1][-6:])
        truth, sample = dexycb["truth"][(s, q)], data[index]
        assert bool(sample["valid"]["mano"]) and bool(sample["valid"]["hand_verts"])
        flip = np.array([-1.0, 1.0, 1.0]) if side == "left" else np.ones(3)
        np.testing.assert_allclose(sample["hand_verts"].numpy(), truth["verts"] * flip, atol=2e-5)
        # the sample's parameters reproduce its joints through the right hand layer; for a left hand that holds
        # because the stand-in left hand is the exact mirror of the right one (see docs/evaluation.md for MANO's)
        with torch.no_grad():
            out = right_model(*(sample[k][None] for k in ("hand_pose", "hand_shape", "hand_rot", "hand_trans")))
        np.testing.assert_allclose(out.joints[0].numpy(), sample["joints3d"].numpy(), atol=2e-5)
        np.testing.assert_allclose(out.verts[0].numpy(), sample["hand_verts"].numpy(), atol=2e-5)


def test_frames_without_a_hand_and_missing_files(dexycb, tmp_path):
    root = dexycb["root"]
    data = DexYCBDataset(root, "s0", "test", crop=CropConfig(size=32), strict=False)
    empty = next(
        i for i in range(len(data)) if data.frame_id(i).startswith(f"{SUBJECTS[9]}/20200901_000004/{SERIALS[0]}")
    )
    assert not bool(data[empty]["valid"]["joints3d"])
    # the strict default lists what a partial download lacks
    with pytest.raises(UserError, match="sequences, expected 100"):
        open_dataset(f"dexycb:{root}:s0:test")
    count, problems = check(f"dexycb:{root}:s1:test")
    assert count is None and problems == [
        f"{root / SUBJECTS[7]} has {SEQS} sequences, expected 100",
        f"{root / SUBJECTS[8]} has {SEQS} sequences, expected 100",
    ]
    partial = tmp_path / "partial"
    shutil.copytree(root, partial)
    label = partial / SUBJECTS[7] / "20200701_000002" / SERIALS[3] / "labels_000000.npz"
    label.unlink()
    count, problems = check(f"dexycb:{partial}:s1:test?strict=0&size=32", samples=1000)
    assert count == 2 * SEQS * 8 and problems == [
        f"{partial / SUBJECTS[7]} has {SEQS} sequences, expected 100",
        f"{partial / SUBJECTS[8]} has {SEQS} sequences, expected 100",
        f"dexycb {SUBJECTS[7]}/20200701_000002/{SERIALS[3]}/000000: missing {label}",
    ]
    shutil.rmtree(partial / SUBJECTS[8])
    _, problems = check(f"dexycb:{partial}:s1:test")
    assert any(p.startswith(f"missing subject folder {partial / SUBJECTS[8]} ") for p in problems)


def test_released_and_pre_release_subject_names(dexycb):
    """The public archives unpack to 20200709-subject-01 ...; folders with the pre-release names still open."""
    register_real_schemes()
    root = dexycb["root"]
    spec = f"dexycb:{root}:s1:test?strict=0&size=32"
    released = [open_dataset(spec).frame_id(i) for i in range(len(open_dataset(spec)))]
    assert all(frame.split("/")[0] in (SUBJECTS[7], SUBJECTS[8]) for frame in released)
    (root / SUBJECTS[7]).rename(root / LEGACY_SUBJECTS[7])
    try:
        legacy = open_dataset(spec)
        assert len(legacy) == len(released)
        assert legacy.frame_id(0).split("/")[0] == LEGACY_SUBJECTS[7]
        (root / LEGACY_SUBJECTS[7]).rename(root / "elsewhere")
        try:
            problems = layout_problems(root, split_rule("s1", "test"))
            missing = [p for p in problems if p.startswith("missing subject folder")]
            assert len(missing) == 1 and SUBJECTS[7] in missing[0] and LEGACY_SUBJECTS[7] in missing[0]
        finally:
            (root / "elsewhere").rename(root / LEGACY_SUBJECTS[7])
    finally:
        (root / LEGACY_SUBJECTS[7]).rename(root / SUBJECTS[7])


def test_a_truncated_label_file_is_one_line(dexycb, tmp_path):
    partial = tmp_path / "truncated"
    shutil.copytree(dexycb["root"], partial)
    data = DexYCBDataset(partial, "s0", "train", crop=CropConfig(size=32), strict=False)
    index = 0
    label = data.frame_files(index)[1]
    label.write_bytes(label.read_bytes()[: label.stat().st_size // 2])  # a download cut off half-way
    problems = data.check_frame(index)
    assert len(problems) == 1 and str(label) in problems[0] and "truncated or corrupt" in problems[0]
    with pytest.raises(UserError, match="truncated or corrupt") as err:
        data[index]
    assert "\n" not in str(err.value) and str(label) in str(err.value)
    label.write_bytes(b"")  # an empty file fails in numpy, not in zipfile
    with pytest.raises(UserError, match="truncated or corrupt"):
        data[index]
