"""FreiHAND reader on a miniature dataset in the official layout: labels, crop and K, versions, MANO, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers.drawing import blob_image, centroid, project
from PIL import Image

from amt_core.commands.datasets import check, register_real_schemes
from amt_core.data import open_dataset
from amt_core.data.crop import CropConfig, crop_matrix
from amt_core.data.freihand import FreiHANDDataset
from amt_core.errors import UserError
from amt_core.hand.model import HandModel, default_hand_path

N = 3  # labelled frames
SIZE = 224  # FreiHAND's image size
RED, GREEN = 0, 1


def hand_joints(seed: int, model: HandModel) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A posed hand about 0.6 m in front of the camera: joints (21, 3), verts (V, 3) and its parameters."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.15, 45)
    shape = rng.normal(0, 0.5, 10)
    rot = rng.normal(0, 0.4, 3)
    trans = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.1, -0.08), 0.7])  # fingers point along +y
    with torch.no_grad():
        out = model(*(torch.tensor(x, dtype=torch.float32)[None] for x in (pose, shape, rot, trans)))
    return out.joints[0].double().numpy(), out.verts[0].double().numpy(), (pose, shape, rot, trans)


@pytest.fixture(autouse=True)
def _no_mano_from_the_environment(monkeypatch):
    """Specs without mano= read $AMT_MANO_DIR; the tests decide for themselves."""
    monkeypatch.delenv("AMT_MANO_DIR", raising=False)


@pytest.fixture(scope="module")
def hand_model() -> HandModel:
    return HandModel()


@pytest.fixture(scope="module")
def freihand(tmp_path_factory, hand_model) -> dict:
    """PATH/training_{xyz,K,mano}.json, training/rgb/%08d.jpg for 4 versions, training/mask; evaluation likewise."""
    root = tmp_path_factory.mktemp("FreiHAND")
    truth = {}
    for set_name, versions in (("training", 4), ("evaluation", 1)):
        xyz, Ks, manos, verts_all = [], [], [], []
        (root / set_name / "rgb").mkdir(parents=True)
        for i in range(N):
            joints, verts, (pose, shape, rot, trans) = hand_joints(
                i + (10 if set_name == "evaluation" else 0), hand_model
            )
            K = np.array([[480.0 + 10 * i, 0.0, 111.5], [0.0, 482.0, 112.0], [0.0, 0.0, 1.0]])
            uv = project(joints, K)
            for version in range(versions):
                image = blob_image(SIZE, SIZE, {RED: uv[0], GREEN: uv[12]}, sigma=2.5)
                image.save(
                    root / set_name / "rgb" / f"{i + N * version:08d}.jpg", quality=98, subsampling=0
                )  # no chroma subsampling: blobs keep their place
            # FreiHAND's 61 numbers: pose relative to MANO's mean pose (open hand's hands_mean), shape, uv root, scale
            theta = np.concatenate([rot, pose, shape, uv[9], [1.0]])
            xyz.append(joints.tolist())
            Ks.append(K.tolist())
            manos.append([theta.tolist()])
            verts_all.append(verts)
        for kind, value in (("xyz", xyz), ("K", Ks), ("mano", manos)):
            (root / f"{set_name}_{kind}.json").write_text(json.dumps(value))
        truth[set_name] = (np.array(xyz), np.array(Ks), np.array(verts_all))
    (root / "training" / "mask").mkdir()
    for i in range(N):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[50:150, 60:160] = 255
        Image.fromarray(mask).save(root / "training" / "mask" / f"{i:08d}.jpg")
    return {"root": root, "truth": truth}


def test_counts_versions_and_splits(freihand):
    register_real_schemes()
    root = freihand["root"]
    assert len(open_dataset(f"freihand:{root}?size=64")) == 4 * N
    assert len(open_dataset(f"freihand:{root}:train?size=64&versions=gs,auto")) == 2 * N
    assert len(open_dataset(f"freihand:{root}:eval?size=64")) == N
    data = FreiHANDDataset(root, versions=("hom",), crop=CropConfig(size=64))
    assert data.frame_files(1)[0].name == f"{1 + N:08d}.jpg"  # version k of frame i is image k * N + i


def test_sample_joints_units_and_projection_after_crop(freihand):
    root = freihand["root"]
    xyz, Ks, _ = freihand["truth"]["training"]
    data = FreiHANDDataset(root, crop=CropConfig(size=96))
    for index in (0, 2 * N + 1):  # a green-screen and a 'sample' version
        sample = data[index]
        label = index % N
        assert sample["image"].shape == (3, 96, 96) and sample["image"].dtype == torch.float32
        assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
        np.testing.assert_allclose(sample["joints3d"].numpy(), xyz[label], atol=1e-6)  # metres, same order
        assert bool(sample["valid"]["joints3d"]) and bool(sample["valid"]["joints2d"])
        assert not bool(sample["valid"]["mano"]) and not bool(sample["valid"]["obj"])
        # joints2d is the projection by the new K, and the blobs drawn at the wrist and middle tip land there
        uv = project(sample["joints3d"].double().numpy(), sample["K"].double().numpy())
        np.testing.assert_allclose(sample["joints2d"].numpy(), uv, atol=1e-3)
        image = sample["image"].numpy()
        np.testing.assert_allclose(centroid(image[RED]), uv[0], atol=0.35)
        np.testing.assert_allclose(centroid(image[GREEN]), uv[12], atol=0.35)
        # K is the crop's affine map applied to the dataset's K
        box = data.labels(index).box
        np.testing.assert_allclose(sample["K"].double().numpy(), crop_matrix(box, 96) @ Ks[label], atol=1e-3)


def test_mask_is_cropped_with_the_image(freihand):
    data = FreiHANDDataset(freihand["root"], crop=CropConfig(size=64))
    sample = data[0]
    assert bool(sample["valid"]["masks"]) and not sample["obj_mask"].any()
    box = data.labels(0).box
    A = crop_matrix(box, 64)
    inside = np.linalg.solve(A, np.array([32.0, 32.0, 1.0]))[:2]  # source pixel under the crop centre
    expected = 60 <= inside[0] < 160 and 50 <= inside[1] < 150
    assert bool(sample["hand_mask"][32, 32]) == expected


def test_real_mano_reproduces_vertices(freihand, tmp_path):
    mano_dir = tmp_path / "mano"
    mano_dir.mkdir()
    # the open hand in MANO's layout stands in for a licensed MANO file
    shutil.copy(default_hand_path("right"), mano_dir / "MANO_RIGHT.npz")
    hands_mean = np.load(mano_dir / "MANO_RIGHT.npz")["hands_mean"]
    root = freihand["root"]
    xyz, _, verts = freihand["truth"]["training"]
    # the test data stored pose relative to the flat hand; FreiHAND stores it relative to the mean pose
    theta = np.array(json.loads((root / "training_mano.json").read_text()))
    shifted = root.parent / "freihand_mean"
    shutil.copytree(root, shifted)
    theta[:, 0, 3:48] -= hands_mean
    (shifted / "training_mano.json").write_text(json.dumps(theta.tolist()))
    data = open_dataset(f"freihand:{shifted}?size=64&mano={mano_dir}")
    sample = data[1]
    assert bool(sample["valid"]["mano"]) and bool(sample["valid"]["hand_verts"])
    assert sample["hand_verts"].shape == verts[1].shape
    np.testing.assert_allclose(sample["hand_verts"].numpy(), verts[1], atol=2e-4)
    np.testing.assert_allclose(sample["hand_pose"].numpy(), theta[1, 0, 3:48] + hands_mean, atol=1e-5)


def test_missing_files_are_named(tmp_path, freihand):
    register_real_schemes()
    with pytest.raises(UserError, match="training_K.json"):
        open_dataset(f"freihand:{tmp_path}")
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(f"freihand:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="split"):
        open_dataset(f"freihand:{freihand['root']}:validation")
    # a half-downloaded copy: images missing
    partial = tmp_path / "partial"
    shutil.copytree(freihand["root"], partial)
    (partial / "training" / "rgb" / "00000001.jpg").unlink()
    count, problems = check(f"freihand:{partial}?size=64", samples=100)
    assert count == 4 * N
    assert problems == [f"freihand training/00000001: missing {partial / 'training' / 'rgb' / '00000001.jpg'}"]
    count, problems = check(f"freihand:{freihand['root']}?size=64", samples=100)
    assert (count, problems) == (4 * N, [])


def test_check_reports_joints_outside_the_image(tmp_path, freihand):
    broken = tmp_path / "broken"
    shutil.copytree(freihand["root"], broken)
    Ks = json.loads((broken / "training_K.json").read_text())
    Ks[0][0][2] = 5000.0  # a principal point far outside the image
    (broken / "training_K.json").write_text(json.dumps(Ks))
    _, problems = check(f"freihand:{broken}?size=64&versions=gs", samples=10)
    assert len(problems) == 1 and "project outside" in problems[0] and "00000000" in problems[0]


def test_bad_options_are_user_errors(freihand, tmp_path):
    register_real_schemes()
    root = freihand["root"]
    with pytest.raises(UserError, match="crop size must be in 16..2048"):
        open_dataset(f"freihand:{root}?size=8")
    with pytest.raises(UserError, match="unknown option"):
        open_dataset(f"freihand:{root}?sise=64")
    with pytest.raises(UserError, match="versions"):
        open_dataset(f"freihand:{root}?versions=gs,sepia")
    with pytest.raises(UserError, match="MANO folder"):
        open_dataset(f"freihand:{root}?mano={tmp_path / 'no_mano'}")
    with pytest.raises(UserError, match="no MANO_RIGHT.npz"):
        open_dataset(f"freihand:{root}?mano={tmp_path}")


def test_truncated_files_are_one_line(tmp_path, freihand):
    register_real_schemes()
    partial = tmp_path / "truncated"
    shutil.copytree(freihand["root"], partial)
    image = partial / "training" / "rgb" / "00000002.jpg"
    image.write_bytes(image.read_bytes()[:200])
    count, problems = check(f"freihand:{partial}?size=64", samples=100)
    assert count == 4 * N and len(problems) == 1 and str(image) in problems[0], problems
    image.write_bytes((freihand["root"] / "training" / "rgb" / "00000002.jpg").read_bytes())
    mask = partial / "training" / "mask" / "00000001.jpg"  # shared by the frame's four versions
    mask.write_bytes(mask.read_bytes()[:100])
    count, problems = check(f"freihand:{partial}?size=64", samples=100)
    assert len(problems) == 4 and all(str(mask) in line and "\n" not in line for line in problems), problems
    labels = partial / "training_xyz.json"
    labels.write_text(labels.read_text()[:-50])
    with pytest.raises(UserError, match="training_xyz.json is not valid JSON"):
        open_dataset(f"freihand:{partial}")
