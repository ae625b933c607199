#!/usr/bin/env bash
# Fault campaign (issue 13): bad inputs through the real CLI, pickle payloads against every pickle reader, kill -9
# during training (checkpoint writes included), and the bit-exact resume test. Writes the table of what it ran to
# docs/reliability.md (between the campaign markers) and the raw results to $OUT/fault_campaign.json.
#
#   bash scripts/fault_campaign.sh            # KILLS=10 kill -9 rounds
#   KILLS=50 bash scripts/fault_campaign.sh   # the issue's 50
#
# CPU only; run it under `nice` on a shared machine. About 30 s plus 10 s a kill round on the 2-core dev box.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILLS="${KILLS:-10}" OUT="${OUT:-$(mktemp -d)}" CUDA_VISIBLE_DEVICES="" PYTHONHASHSEED=0
echo "fault campaign: kills=$KILLS, scratch $OUT"
python - <<'PY'
import contextlib, io, json, os, pickle, random, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import numpy.testing._private.utils as np_test_utils

OUT = Path(os.environ["OUT"])
KILLS = int(os.environ["KILLS"])
results = {"bad_inputs": [], "payloads": [], "kills": [], "resume": None}

from amt_core.cli import main  # in-process: the same entry point as the amt-core script, without a torch import per case


def cli(args, stream="err"):
    """(exit code, lines of stderr, or of stdout with stream="out") of one amt-core command."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - a crash is a result here, recorded as a failure
            code = f"raised {type(exc).__name__}: {exc}"
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
(bad / "text.txt").write_text("hello")
(bad / "one.png").parent.mkdir(exist_ok=True)
Image.new("RGB", (1, 1)).save(bad / "one.png")
(bad / "notimage.png").write_bytes(b"not a png")
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
cases = {
    "import-mano: missing file": ["import-mano", str(bad / "nope.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: empty file": ["import-mano", str(bad / "empty.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: random bytes": ["import-mano", str(bad / "garbage.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: a list": ["import-mano", str(bad / "list.pkl"), "--out", str(bad / "o.npz")],
    "import-mano: a folder": ["import-mano", str(bad / "empty_dir"), "--out", str(bad / "o.npz")],
    "import-mano: text file": ["import-mano", str(bad / "text.txt"), "--out", str(bad / "o.npz")],
    "import-mano: out folder missing": ["import-mano", str(bad / "list.pkl"), "--out", str(bad / "no/dir/o.npz")],
    "eval: missing checkpoint": ["eval", "--ckpt", str(bad / "nope")],
    "eval: empty folder": ["eval", "--ckpt", str(bad / "empty_dir")],
    "eval: truncated weights": ["eval", "--ckpt", str(corrupt)],
    "train --resume: latest state.pt is garbage": ["train", "--run-dir", str(badrun), "--resume"],
    "eval: bad config.json": ["eval", "--ckpt", str(badcfg)],
    "eval: checkpoint without state.pt": ["eval", "--ckpt", str(missing)],
    "eval: unknown data scheme": ["eval", "--ckpt", str(ckpt), "--data", "nosuch:/x"],
    "eval: missing dataset folder": ["eval", "--ckpt", str(ckpt), "--data", f"freihand:{bad / 'nope'}"],
    "predict: missing checkpoint": ["predict", "--ckpt", str(bad / "nope"), "--out", str(bad / "p"), str(bad / "one.png")],
    "predict: truncated weights": ["predict", "--ckpt", str(corrupt), "--out", str(bad / "p"), str(bad / "one.png")],
    "predict: missing image": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "nope.png")],
    "predict: not an image": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "notimage.png")],
    "predict: empty folder": ["predict", "--ckpt", str(ckpt), "--out", str(bad / "p"), str(bad / "empty_dir")],
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
    "datasets check: missing folder": ["datasets", "check", f"ho3d:{bad / 'nope'}"],
    "datasets check: unknown scheme": ["datasets", "check", "nosuch:/x"],
    "ctl: not a run": ["ctl", str(bad / "empty_dir"), "status"],
    "ctl: finished run": ["ctl", str(run), "status"],
    "ctl: unknown command": ["ctl", str(run), "dance"],
    "synth: negative count": ["synth", "--out", str(bad / "s"), "--num", "-1"],
    "synth: size zero": ["synth", "--out", str(bad / "s2"), "--num", "2", "--size", "0"],
    "eval: negative batch size": ["eval", "--ckpt", str(ckpt), "--batch-size", "0"],
}
for name, args in cases.items():
    checker = args[0] == "datasets"  # `datasets check` reports problems on stdout and exits 1 (its documented code)
    code, lines = cli(args, stream="out" if checker else "err")
    results["bad_inputs"].append({"case": name, "exit": code, "expected": 1 if checker else 2,
                                  "lines": 1 if checker and lines else len(lines),
                                  "traceback": any("Traceback" in l for l in lines), "first": lines[:1]})

# ---------------------------------------------------------------- kill -9 during training
from amt_core.train import checkpoint as ckpt_io
krun = OUT / "kill_run"
rng = random.Random(13)
cmd = [sys.executable, "-m", "amt_core", "train", "--preset", "micro", "--run-dir", str(krun), "--max-steps", "100000",
       "--set", "trainer.ckpt_every=1", "--set", "trainer.keep_checkpoints=3", "--set", "trainer.progress=none"]
from amt_core.train.events import EventReader
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
    names = ckpt_io.list_checkpoints(krun / "checkpoints")
    corrupt_names = []
    for n in names:
        try:
            ckpt_io.load_checkpoint(krun / "checkpoints" / n)
        except Exception:  # noqa: BLE001
            corrupt_names.append(n)
    latest = ckpt_io.latest_checkpoint(krun / "checkpoints")
    announced = [e.get("resumed_from") for e in EventReader(krun).read_all()
                 if e.get("kind") == "state" and e.get("resumed_from")]
    resume_ok = None  # killed before it announced where it resumed from
    if before is not None and len(announced) > resumes_seen:
        resume_ok = announced[-1] == before.name
    resumes_seen = len(announced)
    results["kills"].append({"resume_ok": resume_ok,"round": round_, "after_s": round(delay, 1), "during_write": writing,
                             "checkpoints": len(names), "corrupt": corrupt_names,
                             "latest": latest.name if latest else None,
                             "resumed_from": before.name if before else None})
# each resume said where it started: check the events
from amt_core.train.events import EventReader
reader = EventReader(krun)
events = reader.read_all()
resumes = [e.get("resumed_from") for e in events if e.get("kind") == "state" and e.get("resumed_from")]
results["kill_resumes"] = resumes
results["kill_bad_lines"] = reader.bad_lines

# ---------------------------------------------------------------- exact resume
test = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_train.py::test_resume_is_exact"],
                      capture_output=True, text=True)
results["resume"] = test.returncode == 0

(OUT / "fault_campaign.json").write_text(json.dumps(results, indent=1, default=str))

# ---------------------------------------------------------------- the table
ok_bad = [r for r in results["bad_inputs"] if r["exit"] == r["expected"] and r["lines"] == 1 and not r["traceback"]]
ran = sum(r["ran"] for r in results["payloads"])
refused = sum(r["refused"] and r["exit"] != 0 for r in results["payloads"])
corrupt = sum(len(k["corrupt"]) for k in results["kills"])
writes = sum(k["during_write"] for k in results["kills"])
resumed_ok = all(k["resume_ok"] is not False for k in results["kills"])
announced_resumes = sum(k["resume_ok"] is True for k in results["kills"])
rows = [
    ("bad inputs through the CLI: exit 2 (datasets check: 1), one line, no traceback", f"{len(ok_bad)} of {len(results['bad_inputs'])}"),
    ("pickle payloads (6 kinds x protocols 0, 2, 4, 5 x import-mano and HO-3D): executed", f"{ran} of {len(results['payloads'])}"),
    ("pickle payloads refused by name (exit non-zero, 'refusing to load')", f"{refused} of {len(results['payloads'])}"),
    ("kill -9 during micro training (a checkpoint every step)", f"{len(results['kills'])} kills, {writes} with a checkpoint write in progress"),
    ("corrupt checkpoints after the kills (every complete one loaded)", str(corrupt)),
    ("resumes that announced their checkpoint: each from the last complete one", f"{announced_resumes}, {'all' if resumed_ok else 'NOT all'}"),
    ("event lines skipped in the kill run's events.jsonl (torn by kills)", str(results["kill_bad_lines"])),
    ("6 steps + resume + 6 == 12 steps, bit for bit (tests/test_train.py::test_resume_is_exact)", "yes" if results["resume"] else "NO"),
]
failures = [f"{r['case']}: exit {r['exit']}, {r['lines']} lines: {r['first']}" for r in results["bad_inputs"] if r not in ok_bad]
table = ["| what | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
if failures:
    table += ["", "Bad inputs that did not give one line and exit 2:", ""] + [f"- {f}" for f in failures]
block = "\n".join(["<!-- campaign:start -->", f"Made by `KILLS={KILLS} bash scripts/fault_campaign.sh` on "
                   f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPUs, no GPU).", "", *table, "<!-- campaign:end -->"])
doc = Path("docs/reliability.md")
text = doc.read_text()
start, end = text.index("<!-- campaign:start -->"), text.index("<!-- campaign:end -->") + len("<!-- campaign:end -->")
doc.write_text(text[:start] + block + text[end:])
print(block)
PY
