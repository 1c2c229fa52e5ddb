"""Feature-extraction cost of each packaged backbone, timed round-robin so all share the same CPU load.

On a shared CPU an absolute images/s depends on what else runs; timing the backbones in turn,
round after round, and taking each one's median gives ratios that the load affects alike.
Prints a markdown table: taps, channels, parameters up to the deepest tap, FLOPs per image
(torch's FlopCounterMode: convolutions and matrix products, 2 per multiply-add) and ms/image.

    python scripts/backbone_speed.py --size 256 --batch 8 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from defectscope.layers.backbones import BackboneConfig, FrozenBackbone

NAMES = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--taps", choices=("middle", "first_three"), default="middle")
    args = parser.parse_args()
    torch.manual_seed(0)
    nets = {name: FrozenBackbone(BackboneConfig(name), args.taps) for name in NAMES}
    images = torch.rand(args.batch, 3, args.size, args.size)
    flops = {}
    with torch.no_grad():
        for name, net in nets.items():
            net(images[:1])  # reads the packaged weights, warms up
            with FlopCounterMode(display=False) as counter:
                net(images[:1])
            flops[name] = counter.get_total_flops()
        times: dict[str, list[float]] = {name: [] for name in NAMES}
        for _ in range(args.rounds):
            for name, net in nets.items():
                start = time.perf_counter()
                net(images)
                times[name].append((time.perf_counter() - start) / args.batch * 1000)
    base = statistics.median(times[NAMES[0]])
    print(f"| backbone | {args.taps} taps | channels | parameters | GFLOPs / image | ms / image | vs {NAMES[0]} |")
    print("|---|---|---|---|---|---|---|")
    for name, net in nets.items():
        ms = statistics.median(times[name])
        params = sum(p.numel() for p in net.parameters())
        print(f"| {name} | {', '.join(map(str, net.taps))} | {' + '.join(map(str, net.tap_channels))} | "
              f"{params / 1e6:.2f} M | {flops[name] / 1e9:.2f} | {ms:.1f} | {ms / base:.2f}× |")


if __name__ == "__main__":
    main()
