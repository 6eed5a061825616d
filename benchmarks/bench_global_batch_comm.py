"""What LDALoss's global batch costs in communication: bytes per step and time.

Under torch.distributed, LDALoss adds three collectives per training step (see
lda_core/loss.py and lda_core/distributed.py):

* all-reduce of 3 numbers (correct by h', correct by h, valid samples; fp32);
* all-gather of the targets and valid flags (2 int64 per sample), features only;
* all-gather of the projected features (B x D) and, in the backward, its gradient's
  reduce-scatter (NCCL) or all-reduce of the gathered gradient (gloo), features only.

The script runs LDALoss on W gloo processes (CPU), records every collective LDALoss
issues with its payload, and prints bytes per step per rank, measured at W=2 and
extrapolated with the standard ring-algorithm traffic to W=8; next to it, the size
of the DDP gradient all-reduce of the model that pays for it (one fp32 copy of its
parameters), which the step does anyway. It also times LDALoss forward + backward with
``global_batch`` on and off, interleaved call by call on the same ranks (median of the
paired ratios): on gloo/CPU the collectives themselves dominate that time, so read the
ratio as an upper bound of what NCCL on one node costs.

    python benchmarks/bench_global_batch_comm.py [--world-size 2] [--seconds 10]
"""
import argparse
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lda_core.distributed as lda_distributed
from lda_core import LDALoss

# (name, global batch of samples entering LDALoss, classes, feature dim, model parameters for context)
SETTINGS = [
    ("ImageNet-LT, ResNeXt-50, batch 256", 256, 1000, 128, 25_028_904),
    ("LVIS v1, Mask R-CNN R50-FPN, 2 img x 512 proposals per GPU, 8 GPUs", 8 * 1024, 1203, 128, 44_413_000),
]
COLLECTIVES = ("all_reduce", "all_gather")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectiveRecorder:
    """Wraps the collectives LDALoss calls to log (kind, payload bytes of this rank's input)."""

    def __init__(self):
        self.calls = []
        self.originals = {"all_reduce": (dist, "all_reduce", 0),
                          "all_gather": (lda_distributed, "_all_gather_rows", 1)}

    def __enter__(self):
        for kind, (module, attribute, input_position) in self.originals.items():
            original = getattr(module, attribute)

            def wrapped(*args, _kind=kind, _original=original, _position=input_position, **kwargs):
                tensor = args[_position]
                self.calls.append((_kind, tensor.numel() * tensor.element_size()))
                return _original(*args, **kwargs)
            setattr(module, attribute, wrapped)
            self.originals[kind] = (module, attribute, original)
        return self

    def __exit__(self, *exc):
        for module, attribute, original in self.originals.values():
            setattr(module, attribute, original)


def ring_traffic(name: str, payload: int, world_size: int) -> float:
    """Bytes one rank sends with the ring algorithm for a collective with this input payload."""
    if name == "all_reduce":
        return 2 * (world_size - 1) / world_size * payload
    if name == "all_gather":
        return (world_size - 1) * payload
    return (world_size - 1) / world_size * payload  # reduce_scatter: payload is the gathered input


def make_step(per_rank: int, num_classes: int, dim: int, global_batch: bool, seed: int):
    generator = torch.Generator().manual_seed(seed)
    profile = 100.0 ** (-torch.arange(num_classes) / (num_classes - 1))
    counts = (profile * 1000).round().long()
    targets = torch.multinomial(profile / profile.sum(), per_rank, replacement=True, generator=generator)
    valid = torch.rand(per_rank, generator=generator) < 0.25  # detection: about a quarter are positives
    logits = [torch.randn(per_rank, num_classes, generator=generator, requires_grad=True) for _ in range(2)]
    features = torch.randn(per_rank, dim, generator=generator, requires_grad=True)
    criterion = LDALoss(counts, window=10, global_batch=global_batch)

    def step():
        out = criterion(*logits, targets, features=features, valid=valid)
        out["loss"].backward()
        for tensor in (*logits, features):
            tensor.grad = None
    return step


def worker(rank, world_size, port, seconds, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        for name, global_size, num_classes, dim, _ in SETTINGS:
            per_rank = global_size // 8  # the per-GPU batch of the 8-GPU run
            global_step = make_step(per_rank, num_classes, dim, True, rank)
            local_step = make_step(per_rank, num_classes, dim, False, rank)
            with CollectiveRecorder() as recorder:
                global_step()
            ratios, global_times = [], []
            deadline = time.perf_counter() + seconds
            while True:
                # Same number of rounds on every rank (collectives must match): rank 0 decides.
                go = torch.tensor([time.perf_counter() < deadline], dtype=torch.int32)
                dist.broadcast(go, 0)
                if not go.item():
                    break
                start = time.perf_counter()
                local_step()
                local_time = time.perf_counter() - start
                start = time.perf_counter()
                global_step()
                global_times.append(time.perf_counter() - start)
                ratios.append(global_times[-1] / local_time)
            if rank == 0:
                results[name] = {"calls": recorder.calls, "per_rank": per_rank, "ratio": statistics.median(ratios),
                                 "global_ms": 1000 * statistics.median(global_times), "rounds": len(ratios)}
    finally:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per setting")
    parser.add_argument("--json", default="", help="also write the figures here")
    args = parser.parse_args()
    results = mp.Manager().dict()
    mp.spawn(worker, args=(args.world_size, free_port(), args.seconds, results), nprocs=args.world_size, join=True)

    rows = []
    print(f"| setting | B per rank | collective calls (payload per rank) | bytes sent per rank per step, W=8 "
          f"| DDP gradient all-reduce, W=8 | share | LDALoss time, global / local ({args.world_size} gloo ranks) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, _, _, _, parameters in SETTINGS:
        measured = results[name]
        calls = measured["calls"]
        # On NCCL the feature gradient is reduce-scattered (payload W x B x D x 4) instead of all-reduced.
        nccl_calls = [("reduce_scatter", payload) if call == "all_reduce" and payload > 64 else (call, payload)
                      for call, payload in calls]
        payload_w8 = [(call, payload * 8 // args.world_size if call == "reduce_scatter" else payload)
                      for call, payload in nccl_calls]
        lda_bytes = sum(ring_traffic(call, payload, 8) for call, payload in payload_w8)
        ddp_bytes = ring_traffic("all_reduce", 4 * parameters, 8)
        described = ", ".join(f"{call} {payload:,} B" for call, payload in calls)
        rows.append({"setting": name, "per_rank": measured["per_rank"], "calls_at_measured_world": calls,
                     "lda_bytes_sent_per_rank_w8": lda_bytes, "ddp_bytes_sent_per_rank_w8": ddp_bytes,
                     "time_ratio": measured["ratio"], "global_ms": measured["global_ms"], "rounds": measured["rounds"]})
        print(f"| {name} | {measured['per_rank']} | {described} | {lda_bytes / 1e6:.2f} MB | {ddp_bytes / 1e6:.0f} MB "
              f"| {100 * lda_bytes / ddp_bytes:.2f} % | {measured['ratio']:.2f}x ({measured['global_ms']:.1f} ms, "
              f"{measured['rounds']} rounds) |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
