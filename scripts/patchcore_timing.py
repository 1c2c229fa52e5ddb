"""How long the coreset takes: `python -m defectscope.models.patchcore.timing --patches 50000`.

Times one greedy run over all patches (the paper's selection) and the chunked selection the
model uses by default, on random features of the given width (the cost does not depend on
the values), and reports each one's covering radius (the largest distance from any patch to
its nearest selected patch: what the greedy minimises). Run it under the CPU lock.
"""

from __future__ import annotations

import argparse
import time

import torch

from defectscope.models.patchcore.coreset import chunked_coreset
from defectscope.models.patchcore.memory_bank import MemoryBank


def covering_radius(features: torch.Tensor, keep: torch.Tensor) -> float:
    bank = MemoryBank(features.shape[1])
    bank.bank = features[keep]
    return float(bank.nearest(features)[0].max())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patches", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--chunks", type=int, nargs="*", default=[0, 16384])
    args = p.parse_args(argv)
    features = torch.randn(args.patches, args.dim, generator=torch.Generator().manual_seed(0))
    print(f"{args.patches} patches × {args.dim} dims, ratio {args.ratio}, {torch.get_num_threads()} threads")
    for chunk in args.chunks:
        began = time.perf_counter()
        keep = chunked_coreset(features, args.ratio, chunk)
        seconds = time.perf_counter() - began
        label = "one greedy run" if chunk <= 0 else f"chunks of {chunk}"
        print(f"{label:>18}: {len(keep)} kept in {seconds:.1f} s, covering radius "
              f"{covering_radius(features, keep):.3f}")
    try:
        import faiss  # noqa: F401
        print("faiss is installed: --model.search faiss searches with its IndexFlatL2")
    except ImportError:
        print("faiss: not installed (search uses torch; pip install faiss-cpu for --model.search faiss)")


if __name__ == "__main__":
    main()
