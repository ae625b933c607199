"""amt_core.hand: the hand layer (smplx MANO over the open hand or a MANO file), its asset builder and joint limits.

HandModel and HandOutput are imported lazily so that `import amt_core.hand.limits` does not load smplx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amt_core.hand.model import HandModel, HandOutput

__all__ = ["HandModel", "HandOutput"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from amt_core.hand import model

        return getattr(model, name)
    raise AttributeError(f"module 'amt_core.hand' has no attribute {name!r}")
