"""amt_core.config_tree: the override walker (`override`), the reader (`build`) and the one value rule (`coerce`,
`parse_value`), on small configs made for the test and on the real RunConfig."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import pytest

from amt_core import config_tree
from amt_core.errors import UserError


class Precision(enum.StrEnum):
    BF16 = "bf16"
    FP8 = "fp8"


@dataclass(frozen=True, kw_only=True)
class Stage:
    name: str
    steps: int = 0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"Stage.lr must be > 0 (got {self.lr})")


@dataclass(frozen=True, kw_only=True)
class Refine:
    steps: int = 2
    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class Other:
    width: int


@dataclass(frozen=True, kw_only=True)
class Tree:
    """A config tree with a leaf of each kind the walker knows."""

    seed: int = 0
    scale: float = 1.0
    label: str = "run"
    verbose: bool = False
    limit: int | None = None
    note: str | None = None
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, float] = (1, 0.5)
    weights: dict[str, float] = field(default_factory=lambda: {"kl": 1.0, "joint": 2.0})
    refine: Refine = field(default_factory=Refine)
    part: Refine | Other = field(default_factory=Refine)
    stages: tuple[Stage, ...] = (Stage(name="a", steps=3), Stage(name="b", steps=5))
    extra: Any = None
    precision: Precision = Precision.BF16


# --- parse_value: command-line text as a value ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("FALSE", False),
        (" True ", True),
        ("null", None),
        ("None", None),
        ("3", 3),
        ("1e-3", 1e-3),
        ("[1, 2]", [1, 2]),
        ('{"kl": 0}', {"kl": 0}),
        ("sdpa", "sdpa"),
        ("1,2", "1,2"),  # commas are a tuple field's business, not the parser's
    ],
)
def test_parse_value(text, value):
    parsed = config_tree.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


# --- override: dotted keys --------------------------------------------------------------------------------------


def test_override_sets_nested_fields_and_leaves_the_original_alone():
    tree = Tree()
    new = config_tree.override(tree, {"refine.steps": "4", "refine.enabled": "false", "seed": 7})
    assert new.refine == Refine(steps=4, enabled=False) and new.seed == 7
    assert tree == Tree()  # a copy: the original is unchanged
    assert new.stages == tree.stages and new.weights == tree.weights


def test_override_reaches_one_element_of_a_tuple_of_dataclasses():
    new = config_tree.override(Tree(), {"stages.1.steps": "50", "stages.0.lr": "2e-4"})
    assert new.stages == (Stage(name="a", steps=3, lr=2e-4), Stage(name="b", steps=50))
    assert isinstance(new.stages, tuple)


def test_override_of_a_tuple_index_out_of_range_or_not_a_number():
    with pytest.raises(UserError, match=r"stages\.2\.steps: '2' is not an index below 2"):
        config_tree.override(Tree(), {"stages.2.steps": 1})
    with pytest.raises(UserError, match=r"'first' is not an index below 2"):
        config_tree.override(Tree(), {"stages.first.steps": 1})


def test_override_reruns_the_checks_of_the_config_it_changes():
    with pytest.raises(UserError, match=r"--set stages\.0\.lr: Stage\.lr must be > 0 \(got -1\.0\)"):
        config_tree.override(Tree(), {"stages.0.lr": "-1"}, source="--set ")


def test_unknown_key_names_the_closest_match_and_the_keys_there():
    with pytest.raises(UserError, match=r"--set refine\.stesp: no key 'stesp' here; did you mean 'steps'\? 2 choices"):
        config_tree.override(Tree(), {"refine.stesp": 4}, source="--set ")
    with pytest.raises(UserError, match=r"no key 'sed' here; did you mean 'seed'\?"):
        config_tree.override(Tree(), {"sed": 1})
    with pytest.raises(UserError, match=r"no key 'zzz' here; 14 choices: seed, scale") as raised:
        config_tree.override(Tree(), {"zzz": 1})
    assert "did you mean" not in str(raised.value)


def test_a_key_below_a_leaf_is_refused():
    with pytest.raises(UserError, match=r"seed\.x: int has no keys to set"):
        config_tree.override(Tree(), {"seed.x": 1})


def test_dict_fields_by_dotted_key():
    new = config_tree.override(Tree(), {"weights.kl": "0", "weights.new": 3})
    assert new.weights == {"kl": 0.0, "joint": 2.0, "new": 3.0}
    assert all(type(v) is float for v in new.weights.values())
    with pytest.raises(UserError, match=r"weights\.kl: expected float, got 'lots'"):
        config_tree.override(Tree(), {"weights.kl": "lots"})
    with pytest.raises(UserError, match=r"weights\.nope\.x: no section 'nope' here; sections are kl, joint"):
        config_tree.override(Tree(), {"weights.nope.x": 1})


# --- override: a nested mapping ---------------------------------------------------------------------------------


def test_nested_override_merges_into_sections():
    new = config_tree.override(Tree(), {"weights": {"kl": 0}, "refine": {"steps": 6}, "seed": "3"}, nested=True)
    assert new.weights == {"kl": 0.0, "joint": 2.0}  # joint kept
    assert new.refine == Refine(steps=6, enabled=True)  # enabled kept
    assert new.seed == 3


def test_nested_override_names_the_unknown_key_with_its_path():
    with pytest.raises(UserError, match=r"loss\.refine\.step: no key 'step' here; did you mean 'steps'\?"):
        config_tree.override(Tree(), {"refine": {"step": 1}}, nested=True, source="loss.")


# --- the value rule, leaf by leaf ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "given", "expected"),
    [
        ("verbose", "true", True),
        ("verbose", "False", False),
        ("verbose", True, True),
        ("seed", "12", 12),
        ("seed", 4.0, 4),  # a whole float is an int
        ("scale", "2", 2.0),
        ("scale", 3, 3.0),
        ("label", "42", "42"),  # a string field takes the text as it is
        ("label", "true", "true"),
        ("limit", "none", None),
        ("limit", "null", None),
        ("limit", None, None),
        ("limit", "9", 9),
        ("note", None, None),
        ("note", "hello", "hello"),
        ("sizes", "1,2,4", (1, 2, 4)),
        ("sizes", "[8, 16]", (8, 16)),
        ("sizes", "3", (3,)),
        ("sizes", [5], (5,)),
        ("pair", "2,0.25", (2, 0.25)),
        ("extra", {"anything": [1]}, {"anything": [1]}),  # Any takes the value as it is
    ],
)
def test_values_are_coerced_to_the_field_type(key, given, expected):
    value = getattr(config_tree.override(Tree(), {key: given}), key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "given", "message"),
    [
        ("seed", "three", "seed: expected int, got 'three'"),
        ("seed", "2.5", "seed: expected int, got 2.5"),
        ("seed", "true", "seed: expected int, got True"),  # a bool is not an int
        ("scale", "false", "scale: expected float, got False"),
        ("verbose", "yes", "verbose: expected bool, got 'yes'"),
        ("verbose", "1", "verbose: expected bool, got 1"),
        ("label", 5, "label: expected str, got 5"),
        ("limit", "many", "limit: expected int or null, got 'many'"),
        ("sizes", "1,x", "sizes.1: expected int, got 'x'"),
        ("pair", "1,2,3", r"pair: expected tuple.*, got \[1, 2, 3\]"),  # two items wanted
        ("refine", 3, "refine: expected Refine, got 3"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_the_key(key, given, message):
    with pytest.raises(UserError, match=message):
        config_tree.override(Tree(), {key: given})


def test_a_mapping_for_a_dataclass_field_builds_it_from_defaults():
    new = config_tree.override(Tree(), {"refine": {"enabled": "false"}})
    assert new.refine == Refine(steps=2, enabled=False)


def test_a_union_of_dataclasses_takes_the_first_that_fits():
    assert config_tree.override(Tree(), {"part": {"width": 5}}).part == Other(width=5)
    assert config_tree.override(Tree(), {"part": {"steps": 5}}).part == Refine(steps=5)
    with pytest.raises(UserError, match=r"part: expected Refine or Other, got \{'depth': 1\}"):
        config_tree.override(Tree(), {"part": {"depth": 1}})


def test_an_enum_field_takes_its_members_value_and_names_the_allowed_ones():
    assert config_tree.override(Tree(), {"precision": "fp8"}).precision is Precision.FP8
    assert config_tree.override(Tree(), {"precision": Precision.FP8}).precision is Precision.FP8
    with pytest.raises(UserError, match=r"precision: expected one of bf16, fp8, got 'fp4'"):
        config_tree.override(Tree(), {"precision": "fp4"})


# --- build: a dataclass from JSON-like data ------------------------------------------------------------------------


def test_build_reads_nested_data_and_fills_defaults():
    tree = config_tree.build(
        Tree, {"seed": 5, "refine": {"steps": 1}, "stages": [{"name": "only", "steps": 9}], "sizes": [4]}
    )
    assert tree == Tree(seed=5, refine=Refine(steps=1), stages=(Stage(name="only", steps=9),), sizes=(4,))


def test_build_refuses_unknown_keys_missing_fields_and_failed_checks():
    with pytest.raises(UserError, match=r"config: no key 'sede' here; did you mean 'seed'\?"):
        config_tree.build(Tree, {"sede": 1}, "config")
    with pytest.raises(UserError, match=r"Stage: no key 'step' here; did you mean 'steps'\?"):
        config_tree.build(Stage, {"name": "a", "step": 1})
    with pytest.raises(UserError, match=r"stages\.0: .*missing 1 required keyword-only argument: 'name'"):
        config_tree.build(Tree, {"stages": [{"steps": 1}]})
    with pytest.raises(UserError, match=r"stages\.0: Stage\.lr must be > 0"):
        config_tree.build(Tree, {"stages": [{"name": "a", "lr": 0}]})


def test_field_names_are_the_settable_fields():
    @dataclass
    class WithDerived:
        given: int = 0
        derived: int = field(init=False, default=0)

    assert config_tree.field_names(WithDerived) == ["given"]
    assert config_tree.field_names(Refine()) == ["steps", "enabled"]


# --- on the real RunConfig ---------------------------------------------------------------------------------------


def test_the_run_config_takes_dotted_overrides_down_its_tree():
    from amt_core.presets import micro

    config = micro()
    new = config_tree.override(
        config, {"stages.0.steps": "7", "trainer.seed": "11", "loss.weights.diversity": "0"}, source="--set "
    )
    assert new.stages[0].steps == 7 and new.stages[1:] == config.stages[1:]
    assert new.trainer.seed == 11 and new.loss.weights["diversity"] == 0.0
    assert dataclasses.replace(new, stages=config.stages, trainer=config.trainer, loss=config.loss) == config
    with pytest.raises(UserError, match=r"--set trainer\.seeed: no key 'seeed' here; did you mean 'seed'\?"):
        config_tree.override(config, {"trainer.seeed": 1}, source="--set ")
