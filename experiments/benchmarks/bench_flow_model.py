"""Training-step cost of the flow feature extractors: forward + multi-scale FlowLoss + backward + Adam step.

For every extractor of ``FEATURE_EXTRACTORS`` (default arguments, event_cube input C=6) at two resolutions, prints
the parameter count, the median (and min) step time and the median's ratio to a baseline measured in the same
run: a plain 3-layer full-resolution conv net of similar width (6 -> 16 -> 16 -> 2, BN + ReLU) trained with the
same loss on its single flow. The step includes the loss, so the ratio shows what the U-Net itself adds.

    python experiments/benchmarks/bench_flow_model.py [--steps 5] [--threads N] [--sizes 120x152,240x304]

On a shared machine set ``--threads`` to the number of idle cores: oversubscribed OpenMP threads make PyTorch's
CPU convolutions many times slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from evframe.models.layers import ConvLayer
from evframe.models.temporal import batch_to_time, time_to_batch
from evframe.tasks.flow.feature_extractors import FEATURE_EXTRACTORS
from evframe.tasks.flow.losses import DEFAULT_LOSS_WEIGHTS, FlowLoss


class PlainConvNet(nn.Module):
    """Baseline: three full-resolution 3x3 conv layers, no recurrence, one flow level."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(ConvLayer(in_channels, width), ConvLayer(width, width),
                                 nn.Conv2d(width, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        flat, b = time_to_batch(x)
        # same memory format as the U-Nets (channels_last is much faster for small-channel CPU convolutions)
        flat = flat.contiguous(memory_format=torch.channels_last)
        return [batch_to_time(self.net(flat).contiguous(), b)]

    def clear(self) -> None:
        pass


def event_like_input(t: int, b: int, c: int, h: int, w: int) -> torch.Tensor:
    """Sparse non-negative tensor (~10% active pixels), roughly like an event_cube."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(t, b, c, h, w, generator=g) * (torch.rand(t, b, c, h, w, generator=g) > 0.9)


def time_steps(model: nn.Module, x: torch.Tensor, steps: int) -> tuple[float, float]:
    """(median, min) seconds of forward + loss + backward + optimizer step (after one warm-up step); the min is
    the less noisy figure on a shared machine."""
    loss_fn = FlowLoss(DEFAULT_LOSS_WEIGHTS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        model.clear()  # same work every step (no growing state)
        loss = loss_fn(x, model(x))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--sizes", default="120x152,240x304")
    parser.add_argument("--tbins", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    c = 6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, T={args.tbins} B={args.batch} C={c}, "
          f"median of {args.steps} steps (forward + FlowLoss {sorted(k for k, v in DEFAULT_LOSS_WEIGHTS.items() if v)}"
          f" + backward + Adam)")
    print(f"{'model':<16}{'params':>10}  "
          + "".join(f"{f'{h}x{w} s/step med (min)':>28}{'x baseline':>12}" for h, w in sizes))
    baseline_times = {}
    rows = [("plain3conv", lambda: PlainConvNet(c))] + [(n, lambda n=n: FEATURE_EXTRACTORS[n](c))
                                                        for n in FEATURE_EXTRACTORS]
    # the stem also sees the previous bin (model.context_bins=1)
    rows.append(("midinet2+ctx1", lambda: FEATURE_EXTRACTORS["midinet2"](c, context_bins=1)))
    for name, factory in rows:
        model = factory()
        n_params = sum(p.numel() for p in model.parameters())
        cells = []
        for h, w in sizes:
            x = event_like_input(args.tbins, args.batch, c, h, w)
            median, fastest = time_steps(model, x, args.steps)
            if name == "plain3conv":
                baseline_times[(h, w)] = median
            cells.append(f"{f'{median:.3f} ({fastest:.3f})':>28}{median / baseline_times[(h, w)]:>12.2f}")
        print(f"{name:<16}{n_params:>10,}  " + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
