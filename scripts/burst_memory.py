"""The service's memory through a burst of single and batch requests, and after it, on 127.0.0.1 only.

    python scripts/burst_memory.py CHECKPOINT IMAGES_DIR [--requests 300] [--concurrency 8] [--batch 16]

Starts `defectscope serve` from this checkout three times (as shipped, `--no-heap-trim`, and
`--heap-arenas 0`: glibc's own number of heaps), sends
the same burst to each from `--concurrency` client threads: every fifth request a `/predict/batch`
of `--batch` images, the others single `/predict`s, overlay on as the page asks. Reports the
server's resident memory after start, after a warm-up, its peak (VmHWM), just after the burst,
and after 5 and 20 idle seconds; and whether every batch finished (none starved) and how long the
slowest took. Bounded: `--requests` requests per server, each with a 300 s client timeout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import running_server  # noqa: E402
from load_test import rss_mib  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def burst(url: str, images: list[tuple[str, bytes]], requests: int, concurrency: int, batch: int) -> dict:
    def send(i: int) -> tuple[str, int, float]:
        began = time.perf_counter()
        with httpx.Client(timeout=300) as client:
            if i % 5 == 4:
                chosen = (images[(i + j) % len(images)] for j in range(batch))
                files = [("files", (n, b, "image/png")) for n, b in chosen]
                status = client.post(url + "/predict/batch", files=files).status_code
                return "batch", status, time.perf_counter() - began
            name, data = images[i % len(images)]
            status = client.post(url + "/predict", files={"file": (name, data, "image/png")}).status_code
            return "single", status, time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(send, range(requests)))
    batches = [s for kind, _, s in answers if kind == "batch"]
    return {"seconds": round(time.perf_counter() - began, 1), "statuses": sorted({s for _, s, _ in answers}),
            "batches": len(batches), "slowest_batch_s": round(max(batches), 1) if batches else None,
            "slowest_single_s": round(max(s for kind, _, s in answers if kind == "single"), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("images", type=Path)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    images = [(p.name, p.read_bytes()) for p in sorted(args.images.iterdir()) if p.suffix.lower() in (".png", ".jpg")]
    if not images:
        raise SystemExit(f"no .png or .jpg images in {args.images}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO_ROOT).stdout.strip()
    for flags in ((), ("--no-heap-trim",), ("--heap-arenas", "0")):
        with running_server(args.checkpoint, "--max-batch-files", str(args.batch), *flags) as (process, url):
            report: dict = {"flags": " ".join(flags) or "(default)", "commit": commit,
                            "after_start_mib": rss_mib(process.pid)["VmRSS"]}
            burst(url, images, 10, 1, args.batch)  # warm-up
            report["after_warmup_mib"] = rss_mib(process.pid)["VmRSS"]
            report.update(burst(url, images, args.requests, args.concurrency, args.batch))
            memory, quiet_since = rss_mib(process.pid), time.monotonic()
            report["peak_mib"], report["after_burst_mib"] = memory["VmHWM"], memory["VmRSS"]
            for idle in (5, 20):
                time.sleep(max(0.0, quiet_since + idle - time.monotonic()))
                report[f"after_{idle}s_idle_mib"] = rss_mib(process.pid)["VmRSS"]
        print(json.dumps({k: round(v) if isinstance(v, float) and k.endswith("mib") else v for k, v in report.items()}))


if __name__ == "__main__":
    main()
