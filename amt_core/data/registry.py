"""Dataset specs (`scheme:target?key=value&...`) and the scheme registry behind `open_dataset`.

`synth:DIR` reads shards written by `amt-core synth`; `synth:live?seed=S&size=PX` renders on the fly. Readers for
other datasets (freihand:, ho3d:, dexycb:) join with `register_scheme`; openers are imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from amt_core.errors import UserError


@dataclass(kw_only=True, frozen=True)
class DatasetSpec:
    """A parsed dataset spec: `scheme:target?key=value&key=value`."""

    scheme: str
    target: str
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def take(self, key: str, cast: Callable[[str], object], default: object, allowed: str = "") -> object:
        """The parameter `key` cast by `cast`, or default; UserError naming the key if it does not parse."""
        if key not in self.params:
            return default
        try:
            return cast(self.params[key])
        except ValueError as err:
            hint = f" ({allowed})" if allowed else ""
            raise UserError(f"dataset spec '{self.text}': bad value '{self.params[key]}' for {key}{hint}") from err

    def check_keys(self, known: tuple[str, ...]) -> None:
        unknown = sorted(set(self.params) - set(known))
        if unknown:
            raise UserError(
                f"dataset spec '{self.text}': unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )


# scheme -> (module, function name, one-line description); modules are imported on first use.
_SCHEMES: dict[str, tuple[str, str, str]] = {
    "synth": ("amt_core.data.synthetic", "open_synth", "synth:DIR (shards) or synth:live?seed=S&size=PX&num=N"),
    "freihand": ("amt_core.data.freihand", "open_freihand", "freihand:PATH[:train|eval]"),
    "ho3d": ("amt_core.data.ho3d", "open_ho3d", "ho3d:PATH[:train|evaluation]"),
    "dexycb": ("amt_core.data.dexycb", "open_dexycb", "dexycb:PATH[:s0..s3[:train|val|test]]"),
    "mix": ("amt_core.data.mix", "open_mix", "mix:SPEC*W+SPEC*W (weighted mixture)"),
    "noise": ("amt_core.data.noise", "open_noise", "noise:?size=PX&num=N (random content: throughput tests only)"),
}


def register_scheme(scheme: str, module: str, function: str, description: str) -> None:
    """Make `scheme:...` specs open with `module.function(spec: DatasetSpec) -> Dataset`."""
    if not scheme.isidentifier():
        raise ValueError(f"scheme must be an identifier, got {scheme!r}")
    _SCHEMES[scheme] = (module, function, description)


def schemes() -> dict[str, str]:
    """Registered schemes and their one-line descriptions."""
    return {name: entry[2] for name, entry in _SCHEMES.items()}


def parse_spec(text: str) -> DatasetSpec:
    """Split `scheme:target?key=value&...` into its parts; UserError if it has no scheme."""
    if not isinstance(text, str) or ":" not in text:
        raise UserError(f"dataset spec '{text}' has no scheme; write e.g. synth:DIR or synth:live?seed=0&size=128")
    scheme, rest = text.split(":", 1)
    target, _, query = rest.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as err:
        raise UserError(f"dataset spec '{text}': options must look like ?key=value&key=value") from err
    return DatasetSpec(scheme=scheme.strip().lower(), target=target, params=dict(pairs), text=text)


def open_dataset(spec: str | DatasetSpec):
    """A `torch.utils.data.Dataset` of Samples (see `amt_core.schema.sample`) for a spec.

    Raises:
        UserError: unknown scheme, bad options, or missing files.
    """
    parsed = spec if isinstance(spec, DatasetSpec) else parse_spec(spec)
    if parsed.scheme not in _SCHEMES:
        known = ", ".join(schemes())
        raise UserError(
            f"unknown dataset scheme '{parsed.scheme}' in '{parsed.text}'; known: {known} "
            "(amt-core datasets list shows each one's form)"
        )
    module, function, _ = _SCHEMES[parsed.scheme]
    return getattr(importlib.import_module(module), function)(parsed)
