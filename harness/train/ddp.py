"""Data-parallel training under torchrun: what a suite may ask for, and the pieces the loop uses.

The maths is the single process's: `batch_size` is the global batch. Every process draws the same
seeded permutation and takes its contiguous part of each batch (torch.tensor_split: sizes differ by
at most one, so a short last batch splits too). Each computes the cross-entropy summed over its
part, times world_size / (the global batch's length); DDP averages the gradients over the
processes, so the step is the gradient of the global batch's mean loss, as in one process. A
process whose part of a last batch smaller than the world is empty forwards an empty batch (loss
0, zero gradient) and still joins the all-reduce: every registered network takes one.

Metrics are sums and counts all-reduced at the end of each pass, so every process reports the same
global numbers. Evaluation: each process evaluates its contiguous part of the validation set
through the unwrapped module (no DDP hooks), its buffers first made rank 0's (batch-norm running
statistics drift apart in training: each process normalises its own part of the batch, unless
`sync_batchnorm`). Rank 0's weights, equal on every process, make the fingerprint.
"""
from __future__ import annotations

from harness.core import distributed
from harness.core.errors import UserError


def check_world(suite, device: str, *, download: bool, experiments=None) -> None:
    """Under torchrun (world size above 1), before anything starts: one UserError listing every
    experiment (of `experiments`, default the suite's: a shard's own) that cannot run data-parallel.
    Found identically on every process (the same suite and flags), so all of them exit 2 together."""
    here = distributed.world()
    if here.size == 1:
        return
    w = here.size
    problems = []
    for exp in (suite.experiments if experiments is None else experiments):
        spec = exp.spec
        where = f"{suite.path}: {exp.id}"
        if spec.kind != "train":
            problems.append(f"{where}: a {spec.kind} experiment under torchrun (world size {w}): time kernels on "
                            f"one device (a plain `python -m harness run`, no torchrun), shard them instead; "
                            f"only `train` experiments run data-parallel")
        elif spec.batch_size % w:
            low = spec.batch_size // w * w
            options = " or ".join(str(n) for n in (low, low + w) if n > 0)
            problems.append(f"{where}: batch_size {spec.batch_size} does not split among {w} processes (batch_size "
                            f"is the global batch): use a multiple of {w}, e.g. {options}")
        elif spec.sync_batchnorm and device != "cuda":
            problems.append(f"{where}: sync_batchnorm needs CUDA (SyncBatchNorm all-reduces batch statistics "
                            f"through NCCL) and this run is on {device}: set sync_batchnorm: false, or run on CUDA")
    if download:
        problems.append(f"--download under torchrun: {w} processes would download into one directory at once; "
                        f"download once with a plain `python -m harness run ... --download`, then start torchrun")
    if problems:
        raise UserError("cannot run data-parallel:\n  " + "\n  ".join(problems))


def part_bounds(n: int, world: distributed.World) -> tuple[int, int]:
    """[lo, hi) of this process's contiguous part of n items (torch.tensor_split's sizes)."""
    q, r = divmod(n, world.size)
    lo = world.rank * q + min(world.rank, r)
    return lo, lo + q + (world.rank < r)


def wrap(model, spec, world: distributed.World):
    """The model as trained: itself in one process; else DistributedDataParallel (batch norms made
    SyncBatchNorm first when the spec asks; gradient buckets of a fixed size)."""
    if world.size == 1:
        return model
    import torch

    if spec.sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # buffers (batch-norm running statistics) go from rank 0 to the others at every forward: DDP's default
    return torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=distributed.BUCKET_CAP_MB)


def unwrap(model):
    return getattr(model, "module", model)


def all_sum(*tensors) -> None:
    """Sum each tensor over the processes, in place (nothing in one process)."""
    if distributed.world().size == 1:
        return
    import torch.distributed as dist

    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def same_buffers(model) -> None:
    """Make every process's buffers (batch-norm running statistics) rank 0's, before evaluation."""
    if distributed.world().size == 1:
        return
    import torch.distributed as dist

    for b in unwrap(model).buffers():
        dist.broadcast(b, src=0)
