"""Memory: activation offloading to host memory, the activation bytes a step keeps, and, on CUDA, the largest
micro-batch that fits (found at start and after OOM).

The global batch stays what the preset asked for: when a micro-batch smaller than the per-rank batch is needed,
the trainer accumulates gradients over several micro-batches. On the CPU the search is a no-op. Per-block
checkpointing policies live in `amt_core.accel.recompute`.
"""

from __future__ import annotations

import contextlib
import gc
import resource
from collections.abc import Callable, Iterator

import torch
from torch import nn

from amt_core.errors import UserError


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def find_micro_batch(try_batch: Callable[[int], None], batch: int, device: torch.device) -> int:
    """The largest micro-batch <= `batch` for which `try_batch(n)` (a forward and backward) runs without OOM.

    Halves on each out-of-memory error; on the CPU returns `batch` without trying.

    Raises:
        UserError: not even a micro-batch of 1 fits.
    """
    if device.type != "cuda":
        return batch
    size = batch
    while size >= 1:
        try:
            try_batch(size)
            return size
        except RuntimeError as err:
            if not is_oom(err):
                raise
            release_memory()
            size //= 2
    raise UserError(
        "not even a batch of 1 fits in GPU memory; use --set trainer.checkpointing=full, "
        "trainer.offload_activations=true or a smaller preset"
    )


def memory_mb(device: torch.device) -> dict[str, float]:
    """Current and peak memory in MiB: CUDA allocator figures on a GPU, the process's resident set on the CPU."""
    if device.type == "cuda":
        return {
            "allocated_mb": torch.cuda.memory_allocated(device) / 2**20,
            "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
        }

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        rss = peak
    return {"rss_mb": rss, "peak_mb": peak}


def offload_activations(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the forward pass and loss run in: tensors saved for backward move to host memory, and back in
    the backward pass (`torch.autograd.graph.save_on_cpu`); a no-op when not enabled.

    Host buffers are pinned only with CUDA, so copies overlap compute. Inside a checkpointed block only the
    checkpoint's own saved inputs are affected; selective checkpointing keeps its saved matmul outputs on the GPU.
    Pinned host memory is the cost: about the activation memory of a step, per rank.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda")


@contextlib.contextmanager
def saved_activations(model: nn.Module) -> Iterator[dict[str, int]]:
    """Count the bytes autograd saves for the backward pass inside this block (each storage once, the model's
    parameters and buffers left out): the activation memory a step holds between its forward and backward passes.

    Device-independent, so it also shows on the CPU what checkpointing saves. Inside a checkpointed block the
    checkpoint's own hooks take over, so what it recomputes is not counted, as it is not kept. Yields a dict whose
    "bytes" entry grows as the forward pass runs.
    """
    owned = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: set[tuple[int, int]] = set()
    found = {"bytes": 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key[0] not in owned and key not in seen:
            seen.add(key)
            found["bytes"] += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield found
