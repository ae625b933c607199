"""`amt-core datasets check SPEC`: count a dataset's samples and validate a random subset of them.

  amt-core datasets check freihand:/data/FreiHAND [--samples 64] [--seed 0]
  amt-core datasets list

One line per problem (a missing file, a bad shape, joints behind the camera or outside the image); a half-downloaded
dataset gets the list of what it lacks. Exit code 0 when all is well, 1 when there were problems.
"""

from __future__ import annotations

import argparse

# The readers of this issue, with their spec syntax; registered on use if the registry does not list them yet.
REAL_SCHEMES: dict[str, tuple[str, str, str]] = {
    "freihand": ("amt_core.data.freihand", "open_freihand", "freihand:PATH[:train|eval]"),
    "ho3d": ("amt_core.data.ho3d", "open_ho3d", "ho3d:PATH[:train|evaluation]"),
    "dexycb": ("amt_core.data.dexycb", "open_dexycb", "dexycb:PATH[:s0..s3[:train|val|test]]"),
    "mix": ("amt_core.data.mix", "open_mix", "mix:SPEC*W+SPEC*W (weighted mixture)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="count samples and validate a random subset", description=__doc__)
    check.add_argument("spec", help="a dataset spec, e.g. freihand:/data/FreiHAND or dexycb:/data/dex:s0:test")
    check.add_argument("--samples", type=int, default=32, help="how many random items to validate (default 32)")
    check.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    sub.add_parser("list", help="the dataset schemes and their spec syntax")


def register_real_schemes() -> None:
    """Make sure the registry knows the real-dataset schemes (a no-op once registry.py lists them)."""
    from amt_core.data.registry import register_scheme, schemes

    known = schemes()
    for scheme, (module, function, description) in REAL_SCHEMES.items():
        if scheme not in known:
            register_scheme(scheme, module, function, description)


def layout_problems(spec: str) -> list[str]:
    """What a real dataset's folder lacks (without opening it); [] for other schemes."""
    import importlib

    from amt_core.data.registry import parse_spec

    parsed = parse_spec(spec)
    if parsed.scheme in ("freihand", "ho3d", "dexycb"):
        return importlib.import_module(REAL_SCHEMES[parsed.scheme][0]).inspect(parsed)
    return []


def check(spec: str, samples: int = 32, seed: int = 0) -> tuple[int | None, list[str]]:
    """(number of samples or None if it did not open, problems one line each).

    Problems with the folder's layout come first (a partial download opened with strict=0 still lists them), then
    those of the random subset of items.
    """
    import numpy as np

    from amt_core.data.crop import RealDataset
    from amt_core.data.registry import open_dataset
    from amt_core.errors import UserError
    from amt_core.schema.sample import check_sample

    register_real_schemes()
    try:
        problems = layout_problems(spec)
    except UserError as err:
        return None, [str(err)]
    try:
        dataset = open_dataset(spec)
    except UserError as err:
        return None, problems or [str(err)]  # the layout list says more than the summary in the error
    count = len(dataset)
    if count == 0:
        return 0, [*problems, "the dataset has no samples"]
    rng = np.random.default_rng(seed)
    indices = sorted(rng.choice(count, size=min(samples, count), replace=False).tolist())
    for index in indices:
        if isinstance(dataset, RealDataset):
            problems.extend(dataset.check_frame(index))
            continue
        try:
            problems.extend(f"item {index}: {line}" for line in check_sample(dataset[index]))
        except UserError as err:
            problems.append(f"item {index}: {err}")
    return count, problems


def run(args: argparse.Namespace) -> int:
    from amt_core.errors import UserError

    if args.action == "list":
        from amt_core.data.registry import schemes

        register_real_schemes()
        for name, description in schemes().items():
            print(f"{name:10s} {description}")
        return 0
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    count, problems = check(args.spec, args.samples, args.seed)
    if count is not None:
        print(f"{args.spec}: {count} samples; checked {min(args.samples, count)} at random")
    for line in problems:
        print(f"problem: {line}")
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print("ok")
    return 0
