#!/usr/bin/env bash
# Fault campaign (issues 13 and 23): bad inputs through the real CLI (full and read-only disks included, as real tmpfs
# mounts), pickle payloads against every pickle reader, kill -9, SIGTERM and SIGUSR1 during training (checkpoint
# writes included), synth killed mid-write, and the bit-exact resume tests. Writes the table of what it ran to
# docs/reliability.md (between the campaign markers) and the raw results to $OUT/fault_campaign.json.
#
#   bash scripts/fault_campaign.sh                               # KILLS=10 SIGNALS=8 SYNTH_KILLS=6
#   KILLS=50 SIGNALS=16 SYNTH_KILLS=12 bash scripts/fault_campaign.sh
#
# CPU only; run it as root (the disk cases mount two small tmpfs under $OUT; without root they are left out and the
# table says so), under `nice` on a shared machine. About 10 minutes plus 15 s a round on the 2-core dev box.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILLS="${KILLS:-10}" SIGNALS="${SIGNALS:-8}" SYNTH_KILLS="${SYNTH_KILLS:-6}" OUT="${OUT:-$(mktemp -d)}"
export CUDA_VISIBLE_DEVICES="" PYTHONHASHSEED=0
echo "fault campaign: kills=$KILLS signals=$SIGNALS synth kills=$SYNTH_KILLS, scratch $OUT"
trap 'umount "$OUT/full" "$OUT/ro" 2>/dev/null || true' EXIT  # the disk cases' mounts, if the run stopped early
python - <<'PY'
import contextlib, io, json, os, pickle, random, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import numpy.testing._private.utils as np_test_utils

OUT = Path(os.environ["OUT"])
KILLS, SIGNALS, SYNTH_KILLS = (int(os.environ[k]) for k in ("KILLS", "SIGNALS", "SYNTH_KILLS"))
MAX_LINE = 300  # characters: a bad input's one line is shorter
results = {"bad_inputs": [], "payloads": [], "kills": [], "signals": [], "synth_kills": [], "resume": None}

from amt_core.cli import main  # in-process: the same entry point as the amt-core script, without a torch import per case


class CaseTimeout(BaseException):
    """A case that has not answered in its time (SIGALRM): recorded as a failure, the campaign goes on."""


def _alarm(signum, frame):
    raise CaseTimeout


def cli(args, stream="err", timeout_s=300):
    """(exit code, lines of stderr, or of stdout with stream="out") of one amt-core command."""
    err, out = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = exc.code
        except CaseTimeout:
            code = f"no answer in {timeout_s} s"
        except BaseException as exc:  # noqa: BLE001 - a crash is a result here, recorded as a failure
            code = f"raised {type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    text = err.getvalue() if stream == "err" else out.getvalue() + err.getvalue()
    return code, [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- a good checkpoint for eval/predict cases
run = OUT / "good_run"
code = main(["train", "--preset", "micro", "--run-dir", str(run), "--max-steps", "2", "--set", "trainer.progress=none"])
assert code == 0, "the micro run for the campaign's checkpoint failed"
ckpt = sorted((run / "checkpoints").glob("step_*"))[-1]

# ---------------------------------------------------------------- untrusted pickles: payloads with marker files
class Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

marker = OUT / "PAYLOAD_RAN"
second = OUT / "second.pkl"
second.write_bytes(pickle.dumps(Call(os.system, f"touch {marker}"), protocol=2))
write = f"open({str(marker)!r}, 'w').write('ran')"
import builtins, subprocess as sp
payloads = {
    "os.system": Call(os.system, f"touch {marker}"),
    "numpy.testing runstring": Call(np_test_utils.runstring, write, {}),
    "numpy.load(path, None, True)": Call(np.load, str(second), None, True),
    "builtins.exec": Call(builtins.exec, write),
    "builtins.eval": Call(builtins.eval, write),
    "subprocess.check_call": Call(sp.check_call, ["touch", str(marker)]),
}
from PIL import Image
for name, payload in payloads.items():
    for protocol in (0, 2, 4, 5):
        for reader in ("import-mano", "datasets check ho3d"):
            marker.unlink(missing_ok=True)
            case = OUT / f"payload_{len(results['payloads'])}"
            case.mkdir()
            if reader == "import-mano":
                src = case / "MANO_RIGHT.pkl"
                src.write_bytes(pickle.dumps({"v_template": np.zeros((778, 3)), "f": payload}, protocol=protocol))
                (case / "out").mkdir()
                code, lines = cli(["import-mano", str(src), "--out", str(case / "out" / "MANO_RIGHT.npz")])
            else:
                for sub in ("rgb", "meta"):
                    (case / "train" / "S" / sub).mkdir(parents=True)
                (case / "train.txt").write_text("S/0000\n")
                Image.new("RGB", (32, 32)).save(case / "train" / "S" / "rgb" / "0000.png")
                meta = {"camMat": np.eye(3), "handJoints3D": payload}
                (case / "train" / "S" / "meta" / "0000.pkl").write_bytes(pickle.dumps(meta, protocol=protocol))
                code, lines = cli(["datasets", "check", f"ho3d:{case}"], stream="out")  # its report is on stdout
            ran = marker.exists()
            results["payloads"].append({"reader": reader, "payload": name, "protocol": protocol, "exit": code,
                                        "ran": ran, "refused": any("refusing to load" in l for l in lines)})

# ---------------------------------------------------------------- bad inputs: each one line, exit 2
bad = OUT / "bad"
bad.mkdir()
(bad / "empty.pkl").write_bytes(b"")
(bad / "garbage.pkl").write_bytes(os.urandom(4096))
(bad / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
(bad / "MANO_RIGHT_nokeys.pkl").write_bytes(pickle.dumps({"f": np.zeros((1538, 3), dtype=np.int64)}))
(bad / "MANO_RIGHT_shape.pkl").write_bytes(pickle.dumps({"v_template": np.zeros((10, 3)), "f": np.zeros((3, 3))}))
(bad / "text.txt").write_text("hello")
(bad / "one.png").parent.mkdir(exist_ok=True)
Image.new("RGB", (1, 1)).save(bad / "one.png")
(bad / "notimage.png").write_bytes(b"not a png")
(bad / "zero.png").write_bytes(b"")
good_png = io.BytesIO()
Image.new("RGB", (128, 128), (200, 150, 120)).save(good_png, format="PNG")
(bad / "truncated.png").write_bytes(good_png.getvalue()[:100])
(bad / "text.jpg").write_text("just text with a .jpg name")
(bad / "only_bad_dir").mkdir()
(bad / "only_bad_dir" / "broken.png").write_bytes(b"not a png")
(bad / "mixed_dir").mkdir()
(bad / "mixed_dir" / "hand.png").write_bytes(good_png.getvalue())
(bad / "mixed_dir" / "broken.png").write_bytes(b"not a png")
(bad / "empty_dir").mkdir()
import shutil
corrupt = bad / "corrupt_ckpt"
shutil.copytree(ckpt, corrupt)
(corrupt / "model.safetensors").write_bytes((corrupt / "model.safetensors").read_bytes()[:64])
badstate = bad / "badstate_ckpt"
shutil.copytree(ckpt, badstate)
(badstate / "state.pt").write_bytes(b"PK\x03\x04garbage")
badrun = bad / "badstate_run"  # a run whose latest checkpoint's state.pt is garbage: names the fallback
shutil.copytree(run, badrun, ignore=shutil.ignore_patterns("lock", "control.json"))
latest_bad = (badrun / "checkpoints" / (badrun / "checkpoints" / "latest").read_text().strip())
(latest_bad / "state.pt").write_bytes(b"PK\x03\x04garbage")
badcfg = bad / "badcfg_ckpt"
shutil.copytree(ckpt, badcfg)
(badcfg / "config.json").write_text("{not json")
missing = bad / "missing_ckpt"
shutil.copytree(ckpt, missing)
(missing / "state.pt").unlink()
(bad / "events_run").mkdir()
(bad / "events_run" / "events.jsonl").write_text("{}\n")
(bad / "file_not_dir").write_text("x")


def ckpt_variant(name, edit=None, weights=None):
    """A copy of the good checkpoint with its run config edited (edit(dict) -> dict) or its weights replaced."""
    folder = bad / name
    shutil.copytree(ckpt, folder)
    if edit is not None:
        stored = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(edit(stored)))
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def drop_model(stored):
    del stored["config"]["model"]
    return stored


def set_model(path, value):
    def edit(stored):
        node = stored["config"]["model"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return stored
    return edit


from safetensors.torch import load_file, save as save_tensors
import torch

tensors = load_file(ckpt / "model.safetensors")
nomodel = ckpt_variant("nomodel_ckpt", drop_model)
deeper = ckpt_variant("depth_ckpt", set_model(("hand", "depth"), 2))
wider = ckpt_variant("width_ckpt", set_model(("backbone", "conv_width"), 32))
unknown_variant = ckpt_variant("variant_ckpt", set_model(("backbone", "variant"), "nosuch"))
config_list = ckpt_variant("config_list_ckpt", lambda stored: [stored])
config_nocfg = ckpt_variant("config_nocfg_ckpt", lambda stored: {"versions": stored.get("versions")})
key_missing = ckpt_variant("key_missing_ckpt", weights=save_tensors(dict(list(tensors.items())[1:])))
empty_weights = ckpt_variant("empty_weights_ckpt", weights=b"")
random_weights = ckpt_variant("random_weights_ckpt", weights=os.urandom(65536))
garbled_run = bad / "garbled_run"  # a run whose config.json is not JSON
shutil.copytree(run, garbled_run, ignore=shutil.ignore_patterns("lock", "control.json"))
(garbled_run / "config.json").write_text("{garbled")
nocfg_run = bad / "nocfg_run"  # a run whose config.json lacks its config section
shutil.copytree(run, nocfg_run, ignore=shutil.ignore_patterns("lock", "control.json"))
(nocfg_run / "config.json").write_text(json.dumps({"versions": {}}))
garbage_ctl = bad / "garbage_ctl_run"
shutil.copytree(run, garbage_ctl, ignore=shutil.ignore_patterns("lock", "control.json"))
(garbage_ctl / "control.json").write_text("not json")
foreign = bad / "foreign"  # a user's folder: nothing in it may change
(foreign / "checkpoints").mkdir(parents=True)
(foreign / "notes.txt").write_text("my notes\n")
(foreign / "data.csv").write_text("a,b\n1,2\n")
(foreign / "checkpoints" / "latest").write_text("my own pointer\n")
# backbone weights files (a scratch ViT trunk takes them)
import argparse as _argparse
torch.save({"args": _argparse.Namespace(lr=1)}, bad / "global.pth")
(bad / "garbage.pth").write_bytes(os.urandom(4096))
torch.save([1, 2, 3], bad / "list.pth")
torch.save({"nosuch.weight": torch.zeros(3, 3)}, bad / "other_keys.pth")
(bad / "weights.xyz").write_bytes(b"xyz")
# synthetic dataset folders
(bad / "synth_garbage").mkdir()
(bad / "synth_garbage" / "synth.json").write_text("{garbled")
(bad / "synth_noman").mkdir()
(bad / "synth_noman" / "shard-00000.safetensors").write_bytes(save_tensors({"x": torch.zeros(1)}))
assert main(["synth", "--out", str(bad / "synth_other"), "--num", "2", "--size", "32", "--seed", "1"]) == 0
(bad / "ho3d_nosplit" / "train").mkdir(parents=True)

# a full disk (2 MB tmpfs with all but 40 kB taken) and a read-only one: real filesystems, mounted as root
mounted = []


def mount(folder, options):
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode == 0:
        mounted.append(folder)
    return done.returncode == 0


full, readonly = OUT / "full", OUT / "ro"
MOUNTS = mount(full, "size=2m") and mount(readonly, "size=32m")
if MOUNTS:
    with open(full / "filler", "wb") as handle:
        handle.write(b"\0" * (2 * 1024 * 1024 - 40 * 1024))
    shutil.copytree(run, readonly / "run", ignore=shutil.ignore_patterns("lock", "control.json"))
    (readonly / "empty").mkdir()
    MOUNTS = subprocess.run(["mount", "-o", "remount,ro", str(readonly)]).returncode == 0

micro = ["train", "--preset", "micro", "--set", "trainer.progress=none"]
scratch = ["--set", "model.backbone.variant=scratch", "--set", "model.backbone.depth=1"]  # a ViT trunk: takes weights
synth = ["synth", "--num", "2", "--size", "32"]
img = str(bad / "mixed_dir" / "hand.png")
cases = {
    "import-mano: missing file": ["import-mano", str(bad / "nope.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: empty file": ["import-mano", str(bad / "empty.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: random bytes": ["import-mano", str(bad / "garbage.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: a list": ["import-mano", str(bad / "list.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: a folder": ["import-mano", str(bad / "empty_dir"), "--out", str(bad / "o.npz")],
    "import-mano: text file": ["import-mano", str(bad / "text.txt"), "--out", str(bad / "o.npz")],
    "import-mano: out folder missing": ["import-mano", str(bad / "list.pkl"), "--out", str(bad / "no/dir/o.npz")],
    "import-mano: no v_template": ["import-mano", str(bad / "MANO_RIGHT_nokeys.pkl"), "--out", str(bad / "MANO_RIGHT.npz")],
    "import-mano: v_template of 10 vertices": ["import-mano", str(bad / "MANO_RIGHT_shape.pkl"), "--out", str(bad / "MANO_RIGHT.npz")],
    "eval: missing checkpoint": ["eval", "--ckpt", str(bad / "nope")],
    "eval: empty folder": ["eval", "--ckpt", str(bad / "empty_dir")],
    "eval: truncated weights": ["eval", "--ckpt", str(corrupt)],
    "train --resume: latest state.pt is garbage": ["train", "--run-dir", str(badrun), "--resume"],
    "eval: bad config.json": ["eval", "--ckpt", str(badcfg)],
    "eval: checkpoint without state.pt": ["eval", "--ckpt", str(missing)],
    "eval: unknown data scheme": ["eval", "--ckpt", str(ckpt), "--data", "nosuch:/x"],
    "eval: missing dataset folder": ["eval", "--ckpt", str(ckpt), "--data", f"freihand:{bad / 'nope'}"],
    "eval: negative batch size": ["eval", "--ckpt", str(ckpt), "--batch-size", "0"],
    "eval: --json in a missing folder": ["eval", "--ckpt", str(ckpt), "--json", "/nonexistent/dir/x"],
    "eval: --json is a folder": ["eval", "--ckpt", str(ckpt), "--json", str(bad / "empty_dir")],
    "eval: --submission in a missing folder": ["eval", "--ckpt", str(ckpt), "--submission", "/nonexistent/dir/s.json"],
    "eval: config.json without model": ["eval", "--ckpt", str(nomodel)],
    "eval: weights of another depth": ["eval", "--ckpt", str(deeper)],
    "eval: weights of another width": ["eval", "--ckpt", str(wider)],
    "eval: config names an unknown backbone": ["eval", "--ckpt", str(unknown_variant)],
    "eval: config.json is a list": ["eval", "--ckpt", str(config_list)],
    "eval: config.json without config": ["eval", "--ckpt", str(config_nocfg)],
    "eval: weights missing a tensor": ["eval", "--ckpt", str(key_missing)],
    "eval: empty weights file": ["eval", "--ckpt", str(empty_weights)],
    "eval: random bytes as weights": ["eval", "--ckpt", str(random_weights)],
    "eval: --ckpt is a file": ["eval", "--ckpt", str(bad / "text.txt")],
    "eval: --data mix:": ["eval", "--ckpt", str(ckpt), "--data", "mix:"],
    "eval: --data size=abc": ["eval", "--ckpt", str(ckpt), "--data", "synth:live?size=abc"],
    "eval: --data num=0": ["eval", "--ckpt", str(ckpt), "--data", "synth:live?num=0"],
    "eval: --data unknown option": ["eval", "--ckpt", str(ckpt), "--data", "synth:live?bogus=1"],
    "eval: --data synth folder with a garbled manifest": ["eval", "--ckpt", str(ckpt), "--data", f"synth:{bad / 'synth_garbage'}"],
    "eval: --data dexycb missing": ["eval", "--ckpt", str(ckpt), "--data", f"dexycb:{bad / 'nope'}"],
    "eval: --max-samples -1": ["eval", "--ckpt", str(ckpt), "--max-samples", "-1"],
    "eval: --workers -1": ["eval", "--ckpt", str(ckpt), "--workers", "-1"],
    "eval: --batch-size -3": ["eval", "--ckpt", str(ckpt), "--batch-size", "-3"],
    "eval: --data noise size=0": ["eval", "--ckpt", str(ckpt), "--data", "noise:?size=0&num=4"],
    "eval: --device cuda without a GPU": ["eval", "--ckpt", str(ckpt), "--device", "cuda"],
    "eval: --batch-size abc": ["eval", "--ckpt", str(ckpt), "--batch-size", "abc"],
    "eval: no --ckpt": ["eval"],
    "predict: missing checkpoint": ["predict", "--ckpt", str(bad / "nope"), "--out", str(bad / "p"), img],
    "predict: a 1x1 image": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "one.png")],
    "predict: truncated weights": ["predict", "--ckpt", str(corrupt), "--out", str(bad / "p"), img],
    "predict: missing image": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "nope.png")],
    "predict: not an image": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "notimage.png")],
    "predict: empty folder": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "empty_dir")],
    "predict: zero-byte png": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "zero.png")],
    "predict: truncated png": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "truncated.png")],
    "predict: text named .jpg": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "text.jpg")],
    "predict: a folder of unreadable files": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "only_bad_dir")],
    "predict: one unreadable file among good ones (exit 1)": (
        ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p_mixed"), str(bad / "mixed_dir")], {"expect": 1}),
    "predict: --out is a file": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "text.txt"), img],
    "predict: config.json without model": ["predict", "--ckpt", str(nomodel), "--out", str(bad / "p"), img],
    "predict: weights of another depth": ["predict", "--ckpt", str(deeper), "--out", str(bad / "p"), img],
    "predict: --ckpt is a file": ["predict", "--ckpt", str(bad / "text.txt"), "--out", str(bad / "p"), img],
    "predict: --focal -5": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), "--focal", "-5", img],
    "predict: --focal 0": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), "--focal", "0", img],
    "predict: --device cuda without a GPU": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), "--device", "cuda", img],
    "train: unknown preset": ["train", "--preset", "nosuch", "--run-dir", str(bad / "r1")],
    "train: unknown --set key": ["train", "--preset", "micro", "--run-dir", str(bad / "r2"), "--set", "trainer.nosuch=1"],
    "train: bad --set value": ["train", "--preset", "micro", "--run-dir", str(bad / "r3"), "--set", "trainer.seed=abc"],
    "train: --set without =": ["train", "--preset", "micro", "--run-dir", str(bad / "r4"), "--set", "trainer.seed"],
    "train: negative batch": ["train", "--preset", "micro", "--run-dir", str(bad / "r5"), "--batch-size", "-4"],
    "train: run dir is a file": ["train", "--preset", "micro", "--run-dir", str(bad / "file_not_dir")],
    "train: existing run without --resume": ["train", "--preset", "micro", "--run-dir", str(run)],
    "train: --resume without --run-dir": ["train", "--preset", "micro", "--resume"],
    "train: --resume unknown checkpoint": ["train", "--run-dir", str(run), "--resume", "step_99999999"],
    "train: unknown data scheme": ["train", "--preset", "micro", "--run-dir", str(bad / "r6"), "--data", "nosuch:/x"],
    "train: missing dataset": ["train", "--preset", "micro", "--run-dir", str(bad / "r7"), "--data", f"ho3d:{bad / 'nope'}"],
    "train: cuda without a GPU": ["train", "--preset", "micro", "--run-dir", str(bad / "r8"), "--device", "cuda"],
    "train: --resume on an empty folder": ["train", "--run-dir", str(bad / "empty_dir"), "--resume"],
    "train: --resume on a user's folder": ["train", "--run-dir", str(foreign), "--resume"],
    "train: new run in a user's folder": [*micro, "--run-dir", str(foreign)],
    "train: --resume on a missing folder": ["train", "--run-dir", str(bad / "nope_run"), "--resume"],
    "train: --resume, config.json garbled": ["train", "--run-dir", str(garbled_run), "--resume"],
    "train: --resume, config.json without config": ["train", "--run-dir", str(nocfg_run), "--resume"],
    "train: --resume with another --preset": ["train", "--preset", "cpu", "--run-dir", str(run), "--resume"],
    "train: --val-data mix:": [*micro, "--run-dir", str(bad / "r9"), "--val-data", "mix:"],
    "train: --data mix:": [*micro, "--run-dir", str(bad / "r10"), "--data", "mix:"],
    "train: --data mix weight not a number": [*micro, "--run-dir", str(bad / "r11"), "--data", "mix:synth:live*x"],
    "train: --val-data unknown scheme": [*micro, "--run-dir", str(bad / "r12"), "--val-data", "nosuch:/x"],
    "train: --data size=abc": [*micro, "--run-dir", str(bad / "r13"), "--data", "synth:live?size=abc"],
    "train: --data num=0": [*micro, "--run-dir", str(bad / "r14"), "--data", "synth:live?num=0"],
    "train: --data synth folder with a garbled manifest": [*micro, "--run-dir", str(bad / "r15"), "--data", f"synth:{bad / 'synth_garbage'}"],
    "train: --max-time -1": [*micro, "--run-dir", str(bad / "r16"), "--max-time", "-1"],
    "train: --max-steps -5": [*micro, "--run-dir", str(bad / "r17"), "--max-steps", "-5"],
    "train: --batch-size 0": [*micro, "--run-dir", str(bad / "r18"), "--batch-size", "0"],
    "train: batch larger than the data": [*micro, "--run-dir", str(bad / "r19"), "--set", "batch_size=100000"],
    "train: unknown precision": [*micro, "--run-dir", str(bad / "r20"), "--set", "trainer.precision=fp9"],
    "train: fp8 on the CPU": [*micro, "--run-dir", str(bad / "r21"), "--set", "trainer.precision=fp8"],
    "train: --set trainer.device=tpu": [*micro, "--run-dir", str(bad / "r22"), "--set", "trainer.device=tpu"],
    "train: unknown model key": [*micro, "--run-dir", str(bad / "r23"), "--set", "model.nosuch=1"],
    "train: stage 8 of 3": [*micro, "--run-dir", str(bad / "r24"), "--set", "stages.7.steps=1"],
    "train: negative stage length": [*micro, "--run-dir", str(bad / "r25"), "--set", "stages.0.steps=-1"],
    "train: keep_checkpoints -1": [*micro, "--run-dir", str(bad / "r26"), "--set", "trainer.keep_checkpoints=-1"],
    "train: ckpt_every -1": [*micro, "--run-dir", str(bad / "r27"), "--set", "trainer.ckpt_every=-1"],
    "train: unknown optimizer key": [*micro, "--run-dir", str(bad / "r28"), "--set", "optim.nosuch=1"],
    "train: unknown loss term": [*micro, "--run-dir", str(bad / "r29"), "--set", "loss.weights.nosuch=1"],
    "train: unknown backbone variant": [*micro, "--run-dir", str(bad / "r30"), "--set", "model.backbone.variant=nosuch"],
    "train: unknown --model": [*micro, "--run-dir", str(bad / "r31"), "--model", "nosuch"],
    "train: empty --preset": (["train", "--preset", "", "--run-dir", str(bad / "r32")], {"timeout": 60}),
    "train: run dir inside a file": [*micro, "--run-dir", str(bad / "file_not_dir" / "sub")],
    "train: max_time_s=abc": [*micro, "--run-dir", str(bad / "r33"), "--set", "trainer.max_time_s=abc"],
    "train: num_workers -1": [*micro, "--run-dir", str(bad / "r34"), "--set", "trainer.num_workers=-1"],
    "train: --set with an empty key": [*micro, "--run-dir", str(bad / "r35"), "--set", "=1"],
    "train: backbone .pth holding another global": [*micro, *scratch, "--run-dir", str(bad / "r36"), "--set", f"model.backbone.weights={bad / 'global.pth'}"],
    "train: backbone .pth of random bytes": [*micro, *scratch, "--run-dir", str(bad / "r37"), "--set", f"model.backbone.weights={bad / 'garbage.pth'}"],
    "train: backbone .pth holding a list": [*micro, *scratch, "--run-dir", str(bad / "r38"), "--set", f"model.backbone.weights={bad / 'list.pth'}"],
    "train: backbone .pth of another model": [*micro, *scratch, "--run-dir", str(bad / "r39"), "--set", f"model.backbone.weights={bad / 'other_keys.pth'}"],
    "train: backbone weights missing": [*micro, *scratch, "--run-dir", str(bad / "r40"), "--set", f"model.backbone.weights={bad / 'nope.pth'}"],
    "train: backbone weights .xyz": [*micro, *scratch, "--run-dir", str(bad / "r41"), "--set", f"model.backbone.weights={bad / 'weights.xyz'}"],
    "train: backbone weights on a conv trunk": [*micro, "--run-dir", str(bad / "r42"), "--set", f"model.backbone.weights={bad / 'global.pth'}"],
    "train: --max-steps abc": [*micro, "--run-dir", str(bad / "r43"), "--max-steps", "abc"],
    "train: --device tpu": [*micro, "--run-dir", str(bad / "r44"), "--device", "tpu"],
    "synth: negative count": ["synth", "--out", str(bad / "s"), "--num", "-1"],
    "synth: size zero": ["synth", "--out", str(bad / "s2"), "--num", "2", "--size", "0"],
    "synth: --out is a file": [*synth, "--out", str(bad / "text.txt")],
    "synth: --out x.png": [*synth, "--out", str(bad / "x.png")],
    "synth: --size 5000": [*synth, "--out", str(bad / "s3"), "--size", "5000"],
    "synth: --workers 0": [*synth, "--out", str(bad / "s4"), "--workers", "0"],
    "synth: --hand-only-share 2": [*synth, "--out", str(bad / "s5"), "--hand-only-share", "2"],
    "synth: --shard-size 0": [*synth, "--out", str(bad / "s6"), "--shard-size", "0"],
    "synth: --seed -1": [*synth, "--out", str(bad / "s7"), "--seed", "-1"],
    "synth: --num 0": ["synth", "--out", str(bad / "s8"), "--num", "0"],
    "synth: a folder made with other settings": [*synth, "--out", str(bad / "synth_other"), "--seed", "2"],
    "synth: a folder with a garbled manifest": [*synth, "--out", str(bad / "synth_garbage")],
    "synth: shards without a manifest": [*synth, "--out", str(bad / "synth_noman")],
    "synth: --preview of a missing folder": ["synth", "--preview", str(bad / "nope"), "--out", str(bad / "sheet.png")],
    "synth: --num abc": ["synth", "--out", str(bad / "s9"), "--num", "abc"],
    "datasets check: missing folder": ["datasets", "check", f"ho3d:{bad / 'nope'}"],
    "datasets check: unknown scheme": ["datasets", "check", "nosuch:/x"],
    "datasets check: mix:": ["datasets", "check", "mix:"],
    "datasets check: freihand missing": ["datasets", "check", f"freihand:{bad / 'nope'}"],
    "datasets check: dexycb missing": ["datasets", "check", f"dexycb:{bad / 'nope'}"],
    "datasets check: ho3d without its split file": ["datasets", "check", f"ho3d:{bad / 'ho3d_nosplit'}"],
    "datasets check: synth folder with a garbled manifest": ["datasets", "check", f"synth:{bad / 'synth_garbage'}"],
    "datasets check: size=abc": ["datasets", "check", "synth:live?size=abc"],
    "datasets check: empty spec": ["datasets", "check", ""],
    "datasets check: noise num=-1": ["datasets", "check", "noise:?num=-1"],
    "ctl: not a run": ["ctl", str(bad / "empty_dir"), "status"],
    "ctl: finished run": ["ctl", str(run), "status"],
    "ctl: unknown command": ["ctl", str(run), "dance"],
    "ctl: --timeout -1": ["ctl", "--timeout", "-1", str(run), "status"],
    "ctl: --timeout 0": ["ctl", "--timeout", "0", str(run), "status"],
    "ctl: missing folder": ["ctl", str(bad / "nope"), "status"],
    "ctl: a file": ["ctl", str(bad / "text.txt"), "status"],
    "ctl: garbled control.json": ["ctl", str(garbage_ctl), "status"],
}
if MOUNTS:
    cases.update({
        "train: run dir on a full disk": [*micro, "--run-dir", str(full / "run")],
        "train: run dir on a read-only disk": [*micro, "--run-dir", str(readonly / "new_run")],
        "train: --resume of a run on a read-only disk": ["train", "--run-dir", str(readonly / "run"), "--resume"],
        "synth: --out on a full disk": [*synth, "--out", str(full / "synth")],
        "synth: --out on a read-only disk": [*synth, "--out", str(readonly / "synth")],
        "eval: --json on a read-only disk": ["eval", "--ckpt", str(ckpt), "--json", str(readonly / "m.json")],
        "predict: --out on a read-only disk": ["predict", "--ckpt", str(ckpt), "--out", str(readonly / "p"), img],
        # a fresh process: the cache folder is looked up when a command first needs it
        "synth: AMT_CACHE_DIR on a read-only disk": ([*synth, "--out", str(bad / "s10")], {"env": {"AMT_CACHE_DIR": str(readonly / "cache")}}),
        "train: AMT_CACHE_DIR on a read-only disk": ([*micro, "--run-dir", str(bad / "r45")], {"env": {"AMT_CACHE_DIR": str(readonly / "cache")}}),
    })
cases["synth: AMT_CACHE_DIR is a file"] = ([*synth, "--out", str(bad / "s11")], {"env": {"AMT_CACHE_DIR": str(bad / "text.txt")}})


def file_states(*roots):
    """{path: (size, mtime_ns, inode)} of every file under the roots."""
    states = {}
    for root in roots:
        for path in Path(root).rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    info = path.stat()
                    states[path] = (info.st_size, info.st_mtime_ns, info.st_ino)
    return states


def lost_files(before, after):
    """Files that were there before a case and are gone or rewritten after it. A run directory's own bookkeeping
    (config.json, events.jsonl, lock, snapshots: what a resume writes) may change; its checkpoints may not."""
    lost = []
    for path, state in before.items():
        if after.get(path) == state:
            continue
        run_dir = next((p for p in path.parents if (p / "events.jsonl").is_file()), None)
        if run_dir is not None and "checkpoints" not in path.relative_to(run_dir).parts:
            continue
        lost.append(str(path))
    return lost


def cli_process(args, env, timeout_s=300):
    """(exit code, stderr lines) of one amt-core command in a fresh process with `env` added."""
    try:
        done = subprocess.run([sys.executable, "-m", "amt_core", *args], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"no answer in {timeout_s} s", []
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


watched = [bad, run] + ([readonly] if MOUNTS else [])
for name, spec in cases.items():
    args, options = spec if isinstance(spec, tuple) else (spec, {})
    checker = args[0] == "datasets"  # `datasets check` reports problems on stdout and exits 1 (its documented code)
    expected = options.get("expect", 1 if checker else 2)
    before = file_states(*watched)
    if "env" in options:
        code, lines = cli_process(args, options["env"])
    else:
        code, lines = cli(args, stream="out" if checker else "err", timeout_s=options.get("timeout", 300))
    lost = lost_files(before, file_states(*watched))
    results["bad_inputs"].append({"case": name, "exit": code, "expected": expected,
                                  "lines": 1 if checker and lines else len(lines),
                                  "longest": max((len(line) for line in lines), default=0),
                                  "traceback": any("Traceback" in l for l in lines), "lost": lost,
                                  "first": [line[:400] for line in lines[:1]]})
for folder in mounted:
    subprocess.run(["umount", str(folder)])

# ---------------------------------------------------------------- kill -9 during training
from amt_core.train import checkpoint_files as ckpt_io
from amt_core.train.events import EventReader

krun = OUT / "kill_run"
rng = random.Random(13)
# the third stage made long, so that every round trains (the preset's plan is 6 steps)
long_micro = [sys.executable, "-m", "amt_core", "train", "--preset", "micro", "--set", "stages.2.steps=100000",
              "--set", "trainer.ckpt_every=1", "--set", "trainer.keep_checkpoints=3", "--set", "trainer.progress=none"]
cmd = [*long_micro, "--run-dir", str(krun)]


def checkpoints_state(run_dir):
    """(names, names that do not load, latest) of a run's checkpoints."""
    names = ckpt_io.list_checkpoints(run_dir / "checkpoints")
    corrupt_names = []
    for n in names:
        try:
            ckpt_io.load_checkpoint(run_dir / "checkpoints" / n)
        except Exception:  # noqa: BLE001
            corrupt_names.append(n)
    return names, corrupt_names, ckpt_io.latest_checkpoint(run_dir / "checkpoints")


def announced_resumes(run_dir):
    return [e.get("resumed_from") for e in EventReader(run_dir).read_all()
            if e.get("kind") == "state" and e.get("resumed_from")]


resumes_seen = 0
for round_ in range(KILLS):
    before = ckpt_io.latest_checkpoint(krun / "checkpoints")
    proc = subprocess.Popen(cmd + (["--resume"] if before is not None else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    delay = rng.uniform(8.0, 18.0)  # the micro run takes about 7 s to import and build before its first step
    time.sleep(delay)
    writing = any(p.name.startswith(".tmp-") for p in (krun / "checkpoints").glob(".*")) if (krun / "checkpoints").is_dir() else False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names, corrupt_names, latest = checkpoints_state(krun)
    announced = announced_resumes(krun)
    resume_ok = None  # killed before it announced where it resumed from
    if before is not None and len(announced) > resumes_seen:
        resume_ok = announced[-1] == before.name
    resumes_seen = len(announced)
    results["kills"].append({"resume_ok": resume_ok,"round": round_, "after_s": round(delay, 1), "during_write": writing,
                             "checkpoints": len(names), "corrupt": corrupt_names,
                             "latest": latest.name if latest else None,
                             "resumed_from": before.name if before else None})
reader = EventReader(krun)
events = reader.read_all()
results["kill_resumes"] = [e.get("resumed_from") for e in events if e.get("kind") == "state" and e.get("resumed_from")]
results["kill_bad_lines"] = reader.bad_lines

# ---------------------------------------------------------------- SIGTERM / SIGUSR1 during training (preemption)
# As a scheduler sends them: to the whole process group (two DataLoader workers included) or to the trainer alone.
# Most rounds signal once the round has trained a step (plus 0-3 s, so signals land in steps and checkpoint
# writes); every fourth round signals 1-6 s after the start, before or while the trainer starts.
from amt_core.commands.train import PREEMPTED_EXIT

srun = OUT / "signal_run"
scmd = [*long_micro, "--run-dir", str(srun), "--set", "trainer.num_workers=2"]


def events_of(run_dir, kind):
    return [e for e in EventReader(run_dir).read_all() if e.get("kind") == kind] if run_dir.is_dir() else []


def group_left(pgid):
    """Whether a process of the group is still there 10 s on (killed workers are reaped by init meanwhile)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # the campaign leaves nothing running: counted, then killed
            return True
        time.sleep(0.1)


resumes_seen = 0
for round_ in range(SIGNALS):
    signum = (signal.SIGTERM, signal.SIGUSR1)[round_ % 2]
    target = ("group", "trainer")[(round_ // 2) % 2]
    early = round_ % 4 == 3
    before = ckpt_io.latest_checkpoint(srun / "checkpoints")
    starts_before = len([e for e in events_of(srun, "state") if e["state"] == "running"])
    proc = subprocess.Popen(scmd + (["--resume"] if before is not None else []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    if early:
        time.sleep(rng.uniform(1.0, 6.0))
    else:
        while proc.poll() is None and time.monotonic() - t0 < 600:
            starts = [e for e in events_of(srun, "state") if e["state"] == "running"]
            if len(starts) > starts_before and any(e["step"] > starts[-1]["step"] for e in events_of(srun, "metrics")):
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
    after_s = time.monotonic() - t0
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if target == "group" else os.kill)(proc.pid, signum)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    left = group_left(proc.pid)
    states = events_of(srun, "state")
    started = len([e for e in states if e["state"] == "running"]) > starts_before
    final = states[-1] if started else None
    stopped_at = final["step"] if final and final["state"] == "stopped" else None
    saved = [e for e in events_of(srun, "checkpoint") if stopped_at is not None and e["step"] == stopped_at]
    names, corrupt_names, latest = checkpoints_state(srun) if (srun / "checkpoints").is_dir() else ([], [], None)
    announced = announced_resumes(srun) if srun.is_dir() else []
    resume_ok = None
    if before is not None and len(announced) > resumes_seen:
        resume_ok = announced[-1] == before.name
    resumes_seen = len(announced)
    err_lines = [line for line in err.splitlines() if line.strip()]
    results["signals"].append({
        "round": round_, "signal": signum.name, "target": target, "early": early, "after_s": round(after_s, 1),
        "exit": proc.returncode, "started": started, "state": final["state"] if final else None,
        "reason": final.get("reason") if final else None, "signal_recorded": final.get("signal") if final else None,
        "stopped_at": stopped_at, "saved_at_stop": bool(saved) and latest is not None and latest.name in [s["name"] for s in saved],
        "stderr_lines": len(err_lines), "traceback": "Traceback" in err, "first_err": err_lines[:1],
        "processes_left": left, "corrupt": corrupt_names, "resume_ok": resume_ok,
        "resumed_from": before.name if before else None,
    })
reader = EventReader(srun)
reader.read_all()
results["signal_bad_lines"] = reader.bad_lines

# ---------------------------------------------------------------- synth killed
# SIGKILL, SIGTERM and SIGINT, to the process group (the pool's workers too) or to synth alone, 0-4 s after a fresh
# folder's first shard is written (mid-render, shard writes included); after each kill every shard on disk must read,
# and the same command must complete the folder byte for byte as an uninterrupted run wrote it.
from amt_core.synth.shards import read_shard

synth_args = ["synth", "--num", "1440", "--size", "64", "--shard-size", "4", "--workers", "2", "--seed", "3"]
reference = OUT / "synth_reference"
assert cli_process([*synth_args, "--out", str(reference)], {})[0] == 0, "the reference synth run failed"


kinds = [(sig, target) for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT) for target in ("group", "synth")]
for round_ in range(SYNTH_KILLS):
    signum, target = kinds[round_ % len(kinds)]
    killed = OUT / f"synth_killed_{round_}"
    proc = subprocess.Popen([sys.executable, "-m", "amt_core", *synth_args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and not list(killed.glob("shard-*.safetensors")):
        time.sleep(0.05)  # rendering has begun: a shard is on disk
    time.sleep(rng.uniform(0.0, 4.0))
    delay = time.monotonic() - t0
    finished_first = proc.poll() is not None
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if target == "group" else os.kill)(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a SIGINT to synth alone may leave it waiting on its pool
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        err += "\n(did not exit within 120 s; killed)"
    left = group_left(proc.pid)
    shards = sorted(killed.glob("shard-*.safetensors"))
    unreadable = []
    for path in shards:
        try:
            read_shard(path)
        except Exception:  # noqa: BLE001
            unreadable.append(path.name)
    temporary = len(list(killed.glob(".shard-*.tmp")))
    code, _ = cli_process([*synth_args, "--out", str(killed)], {})
    names = sorted(p.name for p in killed.iterdir())
    same = code == 0 and names == sorted(p.name for p in reference.iterdir()) and all(
        (reference / name).read_bytes() == (killed / name).read_bytes() for name in names)
    err_lines = [line for line in err.splitlines() if line.strip()]
    results["synth_kills"].append({
        "round": round_, "signal": signum.name, "target": target, "after_s": round(delay, 1),
        "finished_first": finished_first, "exit": proc.returncode, "shards": len(shards), "unreadable": unreadable,
        "temporary_left": temporary, "processes_left": left, "completed_equal": same,
        "stderr_lines": len(err_lines), "traceback": "Traceback" in err, "last_err": err_lines[-1:],
    })
    shutil.rmtree(killed)

# ---------------------------------------------------------------- exact resume
test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                       "tests/test_trainer.py::test_resume_is_exact"], capture_output=True, text=True)
results["resume"] = test.returncode == 0
test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_stopping.py::test_signal_saves_records_and_the_resume_is_exact"],
                      capture_output=True, text=True)
results["preempt_resume"] = test.returncode == 0

(OUT / "fault_campaign.json").write_text(json.dumps(results, indent=1, default=str))

# ---------------------------------------------------------------- the table
def one_line(r):
    return (r["exit"] == r["expected"] and r["lines"] == 1 and r["longest"] < MAX_LINE and not r["traceback"]
            and not r["lost"])


ok_bad = [r for r in results["bad_inputs"] if one_line(r)]
nonzero = [r for r in results["bad_inputs"] if r["expected"] != 0]
ran = sum(r["ran"] for r in results["payloads"])
refused = sum(r["refused"] and r["exit"] != 0 for r in results["payloads"])
corrupt = sum(len(k["corrupt"]) for k in results["kills"])
writes = sum(k["during_write"] for k in results["kills"])
resumed_ok = all(k["resume_ok"] is not False for k in results["kills"])
announced = sum(k["resume_ok"] is True for k in results["kills"])
sig = results["signals"]
in_training = [s for s in sig if s["started"]]
clean_stop = [s for s in in_training if s["exit"] == PREEMPTED_EXIT and s["state"] == "stopped"
              and s["reason"] == "signal" and s["signal_recorded"] == s["signal"] and s["saved_at_stop"]
              and s["stderr_lines"] == 0]
before_start = [s for s in sig if not s["started"]]
sig_resumed_ok = all(s["resume_ok"] is not False for s in sig)
sig_announced = sum(s["resume_ok"] is True for s in sig)
syn = results["synth_kills"]
kind_counts = ", ".join(f"{sum(s['signal'] == name for s in sig)} {name}" for name in ("SIGTERM", "SIGUSR1"))
rows = [
    (f"bad inputs through the CLI: the expected exit (2; datasets check 1; predict with some files unreadable 1), "
     f"one line under {MAX_LINE} characters, no traceback, no file lost",
     f"{len(ok_bad)} of {len(results['bad_inputs'])} ({len(nonzero)} with a non-zero exit expected)"),
    ("pickle payloads (6 kinds x protocols 0, 2, 4, 5 x import-mano and HO-3D): executed", f"{ran} of {len(results['payloads'])}"),
    ("pickle payloads refused by name (exit non-zero, 'refusing to load')", f"{refused} of {len(results['payloads'])}"),
    ("kill -9 during micro training (a checkpoint every step)", f"{len(results['kills'])} kills, {writes} with a checkpoint write in progress"),
    ("corrupt checkpoints after the kills (every complete one loaded)", str(corrupt)),
    ("resumes that announced their checkpoint: each from the last complete one", f"{announced}, {'all' if resumed_ok else 'NOT all'}"),
    ("event lines skipped in the kill run's events.jsonl (torn by kills)", str(results["kill_bad_lines"])),
    (f"SIGTERM / SIGUSR1 during micro training with 2 loader workers ({kind_counts}; "
     f"{sum(s['target'] == 'group' for s in sig)} to the process group, the rest to the trainer)",
     f"{len(sig)} signals, {len(in_training)} after the trainer started"),
    (f"... stopped after the step with a checkpoint at the stop, `stopped` (signal, named), exit {PREEMPTED_EXIT}, "
     "nothing on stderr", f"{len(clean_stop)} of {len(in_training)}"),
    (f"... before the trainer took the signal (start-up): exit {PREEMPTED_EXIT} with one line, or ended by the signal "
     "while Python still imports; no traceback, nothing trained to lose",
     f"{len(before_start)}, {sum(s['exit'] == PREEMPTED_EXIT for s in before_start)} with exit {PREEMPTED_EXIT}, "
     f"{sum(not s['traceback'] for s in before_start)} without a traceback"),
    ("... processes left behind 10 s on (loader workers) / corrupt checkpoints afterwards",
     f"{sum(s['processes_left'] for s in sig)} / {sum(len(s['corrupt']) for s in sig)}"),
    ("... resumes that announced their checkpoint: each from the last complete one",
     f"{sig_announced}, {'all' if sig_resumed_ok else 'NOT all'}"),
    ("synth killed mid-render (SIGKILL, SIGTERM, SIGINT; group or synth alone; 2 pool workers, 1440 samples in 360 "
     "shards, a fresh folder each)", f"{len(syn)} kills, {sum(s['finished_first'] for s in syn)} after it had finished, "
     f"{sum(s['shards'] for s in syn) / max(len(syn), 1):.0f} shards written on average before the kill"),
    ("... shards on disk that do not read afterwards / processes left behind 10 s on",
     f"{sum(len(s['unreadable']) for s in syn)} / {sum(s['processes_left'] for s in syn)}"),
    ("... exits with a traceback on stderr", f"{sum(s['traceback'] for s in syn)} of {len(syn)}"),
    ("... the same command afterwards completes the folder, byte-identical to an uninterrupted run",
     f"{sum(s['completed_equal'] for s in syn)} of {len(syn)}"),
    ("6 steps + resume + 6 == 12 steps, bit for bit (tests/test_trainer.py::test_resume_is_exact)", "yes" if results["resume"] else "NO"),
    ("SIGTERM / SIGUSR1 + resume == the run never stopped, bit for bit (tests/test_stopping.py::test_signal_saves_records_and_the_resume_is_exact)",
     "yes" if results["preempt_resume"] else "NO"),
]
failures = []
for r in results["bad_inputs"]:
    if r in ok_bad:
        continue
    why = [f"exit {r['exit']} (expected {r['expected']})"] if r["exit"] != r["expected"] else []
    why += [f"{r['lines']} lines"] if r["lines"] != 1 else []
    why += [f"a {r['longest']}-character line"] if r["longest"] >= MAX_LINE else []
    why += ["a traceback"] if r["traceback"] else []
    why += [f"{len(r['lost'])} files changed or removed: {r['lost'][:2]}"] if r["lost"] else []
    failures.append(f"{r['case']}: {', '.join(why)}; first line: {(r['first'] or [''])[0][:200]!r}")
failures += [f"{s['signal']} to the {s['target']} at {s['after_s']} s: exit {s['exit']}, state {s['state']}, "
             f"{'saved' if s['saved_at_stop'] else 'NOT saved'} at the stop, stderr {s['first_err']}"
             for s in in_training if s not in clean_stop]
table = ["| what | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
if not MOUNTS:
    table += ["", "The full and read-only disk cases did not run: mounting a tmpfs needs root."]
if failures:
    table += ["", "Failing:", ""] + [f"- {f}" for f in failures]
block = "\n".join(["<!-- campaign:start -->", f"Made by `KILLS={KILLS} SIGNALS={SIGNALS} SYNTH_KILLS={SYNTH_KILLS} "
                   f"bash scripts/fault_campaign.sh` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPUs, no GPU).",
                   "", *table, "<!-- campaign:end -->"])
doc = Path("docs/reliability.md")
text = doc.read_text()
start, end = text.index("<!-- campaign:start -->"), text.index("<!-- campaign:end -->") + len("<!-- campaign:end -->")
doc.write_text(text[:start] + block + text[end:])
print(block)
PY
