"""The training step's device work never reads a value back to the host: no `.item()`, no `bool(tensor)`, no
boolean-mask indexing (`nonzero`). On a GPU each of those stalls the host until the queue drains. Checked on the CPU
by watching the dispatched ops: the same code issues the same ops on either device."""

from __future__ import annotations

import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# `_local_scalar_dense` is behind .item(), bool(), int(), float() and list indexing with a tensor; the others
# produce data-dependent shapes and read the device to size their output.
SYNCING_OPS = frozenset(
    {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique_consecutive"}
)


class HostReads(TorchDispatchMode):
    """Counts the syncing ops dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.found[name] += 1
        elif name in ("index", "index_put", "index_put_") and _has_bool_index(args):
            self.found["boolean mask index"] += 1  # the kernel runs nonzero itself, below this mode
        return func(*args, **(kwargs or {}))


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def test_the_detector_sees_each_kind_of_host_read():
    x = torch.randn(8)
    with HostReads() as reads:
        x.sum().item()
        bool(x[0] > 0)
        _ = x[x > 0]
        [1, 2, 3][torch.tensor(1)]
    assert reads.found == {"_local_scalar_dense": 3, "boolean mask index": 1}


def test_hand_layer_poses_without_host_reads():
    from amt_core.hand import HandModel

    hand = HandModel()
    pose, shape, rot, trans = (
        torch.randn(3, 45) * 0.3,
        torch.randn(3, hand.num_betas),
        torch.randn(3, 3),
        torch.randn(3, 3),
    )
    with HostReads() as reads:
        hand(pose, shape, rot, trans)
    assert not reads.found


def test_model_forward_backward_and_loss_without_host_reads():
    from torch.utils.data import default_collate

    from amt_core.models import create_model
    from amt_core.train import parts

    torch.manual_seed(0)
    dataset = parts.open_data("noise:?size=64&num=8")  # every field valid, so every loss term runs
    batch = default_collate([dataset[i] for i in range(4)])
    model = create_model("amt_micro").train()
    loss_fn = parts.build_loss({})
    with HostReads() as reads:
        output = model(batch)
        result = loss_fn(output, batch, epoch=60.0)
        result.total.backward()
    assert not reads.found, dict(reads.found)
    assert len(result.terms) > 10 and all(torch.isfinite(v) for v in result.terms.values())
