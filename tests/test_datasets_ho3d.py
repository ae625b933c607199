"""HO3D reader on a miniature dataset in the official layout: OpenGL -> OpenCV, joint order, objects, MANO, splits."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import roma
import torch
from helpers.drawing import blob_image, centroid, project

from amt_core.commands.datasets import check, register_real_schemes
from amt_core.data import open_dataset
from amt_core.data.crop import CropConfig, crop_matrix
from amt_core.data.ho3d import HO3DDataset
from amt_core.errors import UserError
from amt_core.hand.model import HandModel, default_hand_path
from amt_core.joints import MANO_TO_PROJECT
from amt_core.objects.catalog import get_object

W, H = 320, 240
GL = np.array([1.0, -1.0, -1.0])  # OpenGL <-> OpenCV: negate y and z
RED, GREEN = 0, 1
K = np.array([[300.0, 0.0, 159.5], [0.0, 301.0, 120.5], [0.0, 0.0, 1.0]])


def gl_hand(seed: int, model: HandModel) -> dict:
    """MANO parameters in HO3D's OpenGL frame (hand along -z) and the joints/verts they give, project order."""
    rng = np.random.default_rng(seed)
    pose = np.concatenate([rng.normal(0, 0.4, 3), rng.normal(0, 0.15, 45)])  # global 3 + 45, flat-hand relative
    beta = rng.normal(0, 0.5, 10)
    trans = np.array([rng.uniform(-0.02, 0.02), rng.uniform(0.06, 0.08), -0.7])  # fingers along -y in OpenGL
    with torch.no_grad():
        out = model(*(torch.tensor(x, dtype=torch.float32)[None] for x in (pose[3:], beta, pose[:3], trans)))
    return {
        "pose": pose,
        "beta": beta,
        "trans": trans,
        "joints": out.joints[0].double().numpy(),
        "verts": out.verts[0].double().numpy(),
    }


def write_frame(root, split, seq, frame, meta, blobs, ext) -> None:
    for sub in ("rgb", "meta"):
        (root / split / seq / sub).mkdir(parents=True, exist_ok=True)
    image = blob_image(W, H, blobs, sigma=2.0)
    if ext == "jpg":
        image.save(root / split / seq / "rgb" / f"{frame}.jpg", quality=98, subsampling=0)
    else:
        image.save(root / split / seq / "rgb" / f"{frame}.png")
    with open(root / split / seq / "meta" / f"{frame}.pkl", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)


@pytest.fixture(autouse=True)
def _no_mano_from_the_environment(monkeypatch):
    """Specs without mano= read $AMT_MANO_DIR; the tests decide for themselves."""
    monkeypatch.delenv("AMT_MANO_DIR", raising=False)


@pytest.fixture(scope="module")
def ho3d(tmp_path_factory) -> dict:
    model = HandModel()
    root = tmp_path_factory.mktemp("HO3D_v3")
    frames = [
        ("ABF10", "0000", "006_mustard_bottle"),
        ("ABF10", "0001", "099_not_in_catalog"),
        ("MC1", "0000", "025_mug"),
    ]
    truth = []
    for k, (seq, frame, obj) in enumerate(frames):
        hand = gl_hand(k, model)
        ho3d_joints = np.zeros((21, 3))
        ho3d_joints[list(MANO_TO_PROJECT)] = hand["joints"]  # HO3D's order: MANO's 16 joints, then the 5 tips
        obj_rot = np.array([[0.3], [-0.2], [1.1]])  # (3, 1) axis-angle, OpenGL frame
        obj_trans = np.array([0.05, 0.0, -0.65])
        meta = {
            "handJoints3D": ho3d_joints.astype(np.float32),
            "handPose": hand["pose"].astype(np.float32),
            "handBeta": hand["beta"].astype(np.float32),
            "handTrans": hand["trans"].astype(np.float32),
            "objRot": obj_rot.astype(np.float32),
            "objTrans": obj_trans.astype(np.float32),
            "objName": obj,
            "camMat": K,
            "handVertContact": np.arange(778 if k == 1 else len(hand["verts"])) % 7 == 0,
        }
        uv = project(hand["joints"] * GL, K)
        write_frame(root, "train", seq, frame, meta, {RED: uv[4], GREEN: uv[17]}, "jpg")
        truth.append({**hand, "obj_rot": obj_rot, "obj_trans": obj_trans})
    (root / "train.txt").write_text("ABF10/0000\nABF10/0001\nMC1/0000\n")
    # the evaluation split: only the root joint (3,) and the hand's bounding box
    eval_meta = {
        "handJoints3D": np.array([0.01, 0.07, -0.7]),
        "handBoundingBox": np.array([100.0, 60.0, 180.0, 160.0]),
        "camMat": K,
        "objRot": np.zeros((3, 1)),
        "objTrans": np.array([0.0, 0.0, -0.6]),
        "objName": "025_mug",
    }
    write_frame(root, "evaluation", "SM1", "0000", eval_meta, {}, "png")  # v2 images are png
    (root / "evaluation.txt").write_text("SM1/0000\n")
    return {"root": root, "truth": truth}


def test_opengl_to_opencv_and_joint_order(ho3d):
    register_real_schemes()
    data = open_dataset(f"ho3d:{ho3d['root']}:train?size=80")
    assert len(data) == 3
    for index in range(3):
        sample, truth = data[index], ho3d["truth"][index]
        expected = truth["joints"] * GL  # OpenCV frame, project order
        np.testing.assert_allclose(sample["joints3d"].numpy(), expected, atol=1e-6)
        assert (sample["joints3d"][:, 2] > 0).all()  # in front of the camera after the flip
        uv = project(expected, sample["K"].double().numpy())
        np.testing.assert_allclose(sample["joints2d"].numpy(), uv, atol=1e-3)
        image = sample["image"].numpy()
        np.testing.assert_allclose(centroid(image[RED]), uv[4], atol=0.35)  # thumb tip
        np.testing.assert_allclose(centroid(image[GREEN]), uv[17], atol=0.35)  # little finger MCP


def test_objects_map_onto_the_catalog(ho3d):
    data = HO3DDataset(ho3d["root"], crop=CropConfig(size=64))
    sample, truth = data[0], ho3d["truth"][0]
    assert bool(sample["valid"]["obj"]) and int(sample["obj_class"]) == get_object("006_mustard_bottle").id
    R_gl = roma.rotvec_to_rotmat(torch.tensor(truth["obj_rot"].reshape(3))).numpy()
    np.testing.assert_allclose(sample["obj_rot"].numpy(), np.diag(GL) @ R_gl, atol=1e-5)
    np.testing.assert_allclose(sample["obj_trans"].numpy(), truth["obj_trans"] * GL, atol=1e-6)
    assert np.isclose(np.linalg.det(sample["obj_rot"].numpy()), 1.0, atol=1e-5)
    unknown = data[1]
    assert not bool(unknown["valid"]["obj"]) and int(unknown["obj_class"]) == -1
    assert int(data[2]["obj_class"]) == get_object("025_mug").id


def test_mano_parameters_reproduce_the_labels(ho3d, tmp_path):
    shutil.copy(default_hand_path("right"), tmp_path / "MANO_RIGHT.npz")  # the open hand stands in for MANO
    data = open_dataset(f"ho3d:{ho3d['root']}?size=64&mano={tmp_path}")
    model = HandModel(tmp_path / "MANO_RIGHT.npz")
    for index in (0, 2):
        sample, truth = data[index], ho3d["truth"][index]
        assert bool(sample["valid"]["mano"]) and bool(sample["valid"]["hand_verts"])
        np.testing.assert_allclose(sample["hand_verts"].numpy(), truth["verts"] * GL, atol=2e-5)
        with torch.no_grad():
            out = model(*(sample[k][None] for k in ("hand_pose", "hand_shape", "hand_rot", "hand_trans")))
        np.testing.assert_allclose(out.joints[0].numpy(), sample["joints3d"].numpy(), atol=2e-5)
        assert bool(sample["valid"]["contact"]) and int(sample["contact"].sum()) == len(
            range(0, len(truth["verts"]), 7)
        )
    without = open_dataset(f"ho3d:{ho3d['root']}?size=64&mano=none")
    assert not bool(without[0]["valid"]["mano"]) and not bool(without[0]["valid"]["hand_verts"])
    # contact labels count only when they match the hand mesh in use (frame 1 has MANO's 778, not the open hand's)
    assert bool(without[0]["valid"]["contact"]) and not bool(without[1]["valid"]["contact"])


def test_evaluation_split_has_only_root_and_box(ho3d):
    data = HO3DDataset(ho3d["root"], split="evaluation", crop=CropConfig(size=64, margin=1.0))
    sample = data[0]
    assert not bool(sample["valid"]["joints3d"]) and not bool(sample["valid"]["joints2d"])
    np.testing.assert_allclose(data.root_joint(0), np.array([0.01, -0.07, 0.7]), atol=1e-9)
    # the crop is the box (100, 60)-(180, 160) made square: its centre maps to the image centre
    A = crop_matrix(data.labels(0).box, 64)
    np.testing.assert_allclose((A @ [140.0, 110.0, 1.0])[:2], [31.5, 31.5], atol=1e-9)
    np.testing.assert_allclose(A[0, 0], 64 / 100.0)


def test_missing_files(ho3d, tmp_path):
    register_real_schemes()
    with pytest.raises(UserError, match="train.txt"):
        open_dataset(f"ho3d:{tmp_path}:train")
    partial = tmp_path / "partial"
    shutil.copytree(ho3d["root"], partial)
    (partial / "train" / "ABF10" / "meta" / "0001.pkl").unlink()
    count, problems = check(f"ho3d:{partial}?size=64", samples=10)
    assert count == 3 and problems == [f"ho3d train/ABF10/0001: missing {partial / 'train/ABF10/meta/0001.pkl'}"]
    shutil.rmtree(partial / "train" / "MC1")
    count, problems = check(f"ho3d:{partial}?size=64")
    assert count is None and any("MC1/rgb" in line for line in problems)
    with pytest.raises(UserError, match="split"):
        open_dataset(f"ho3d:{ho3d['root']}:validation")


def test_truncated_files_are_one_line(ho3d, tmp_path):
    register_real_schemes()
    partial = tmp_path / "truncated"
    shutil.copytree(ho3d["root"], partial)
    meta = partial / "train" / "ABF10" / "meta" / "0001.pkl"
    meta.write_bytes(meta.read_bytes()[:60])
    image = partial / "train" / "MC1" / "rgb" / "0000.jpg"
    image.write_bytes(image.read_bytes()[:150])
    count, problems = check(f"ho3d:{partial}?size=64", samples=10)
    assert count == 3 and len(problems) == 2, problems
    assert str(meta) in problems[0] and str(image) in problems[1]
    assert all("\n" not in line for line in problems)


def _with_evaluation_truth(ho3d, tmp_path, joints_ho3d_gl: np.ndarray) -> object:
    """A copy of the mini dataset with the evaluation split's published ground truth beside evaluation.txt."""
    import json

    root = tmp_path / "with-truth"
    shutil.copytree(ho3d["root"], root)
    (root / "evaluation_xyz.json").write_text(json.dumps([joints_ho3d_gl.tolist()]))
    verts = np.random.default_rng(9).normal(0, 0.03, (1, 778, 3)) + [0.0, 0.07, -0.7]
    (root / "evaluation_verts.json").write_text(json.dumps(verts.tolist()))
    return root


def test_evaluation_ground_truth_is_read_and_scored(ho3d, tmp_path):
    import json

    from amt_core.metrics.protocols import HO3DProtocol, protocol_for

    register_real_schemes()
    hand = gl_hand(5, HandModel())
    ho3d_order = np.zeros((21, 3))
    ho3d_order[list(MANO_TO_PROJECT)] = hand["joints"]  # as a submission: HO3D's order, OpenGL axes
    root = _with_evaluation_truth(ho3d, tmp_path, ho3d_order)
    data = HO3DDataset(root, split="evaluation", crop=CropConfig(size=64, margin=1.0))
    sample = data[0]
    assert bool(sample["valid"]["joints3d"])
    np.testing.assert_allclose(sample["joints3d"].numpy(), hand["joints"] * GL, atol=1e-6)  # OpenCV, our order
    assert not bool(sample["valid"]["hand_verts"])  # 778 MANO vertices need a MANO layer; the open hand has more
    # the crop is still the challenge's box, not one around the ground truth
    A = crop_matrix(data.labels(0).box, 64)
    np.testing.assert_allclose((A @ [140.0, 110.0, 1.0])[:2], [31.5, 31.5], atol=1e-9)

    protocol = protocol_for(f"ho3d:{root}:evaluation")
    assert isinstance(protocol, HO3DProtocol) and protocol.name == "ho3d_eval"
    batch = {key: sample[key][None] for key in ("joints3d", "hand_verts")}
    batch["valid"] = {key: sample["valid"][key][None] for key in ("joints3d", "hand_verts")}
    protocol.update(sample["joints3d"][None] + torch.tensor([0.0, 0.0, 0.01]), batch)
    out = protocol.compute()
    assert out["ho3d_eval/mpjpe_abs_mm"] == pytest.approx(10.0, abs=1e-3) and out["ho3d_eval/pa_mpjpe_mm"] < 1e-3

    # a truncated ground-truth file is one line naming it
    (root / "evaluation_xyz.json").write_text(json.dumps([ho3d_order.tolist()])[:-40])
    with pytest.raises(UserError, match="evaluation_xyz.json does not read") as err:
        HO3DDataset(root, split="evaluation", crop=CropConfig(size=64))[0]
    assert "\n" not in str(err.value)


def test_eval_command_scores_the_evaluation_split(ho3d, tmp_path, capsys, old_checkpoint):
    import json

    from amt_core.cli import main

    hand = gl_hand(6, HandModel())
    ho3d_order = np.zeros((21, 3))
    ho3d_order[list(MANO_TO_PROJECT)] = hand["joints"]
    root = _with_evaluation_truth(ho3d, tmp_path, ho3d_order)
    checkpoint = old_checkpoint
    report = tmp_path / "eval.json"
    spec = f"ho3d:{root}:evaluation?size=64"
    assert main(["eval", "--ckpt", str(checkpoint), "--data", spec, "--json", str(report), "--device", "cpu"]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["ho3d_eval/num_samples"] == 1
    for key in ("mpjpe_abs_mm", "pa_mpjpe_mm", "st_mpjpe_mm", "rr_mpjpe_mm"):
        assert metrics[f"ho3d_eval/{key}"] > 0
    # the open-hand model cannot make the challenge's MANO mesh: refused before anything runs, one line
    capsys.readouterr()
    code = main(["eval", "--ckpt", str(checkpoint), "--data", spec, "--submission", str(tmp_path / "pred.json")])
    assert code == 2 and not (tmp_path / "pred.json").exists()
    assert capsys.readouterr().err.count("\n") == 1
