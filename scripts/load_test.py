"""Throughput, latency and memory of `defectscope serve`, measured over HTTP on 127.0.0.1 only.

    python scripts/load_test.py runs/serve_demo/checkpoints/final --output load_test.json

1. Starts the server from this checkout on a free 127.0.0.1 port (--max-upload-mb 1, so an
   over-size upload is a 1.1 MiB request; the other limits at their defaults).
2. Warm-up, then for each concurrency level (1, 4, 16) sends up to --requests valid POST /predict
   (demo MTSD images, heatmap overlay included, as PNG or as the page's JPEG, or not with --no-overlay) from that
   many client threads, each with its own keep-alive connection, for at most --max-seconds:
   requests/s, p50/p99 latency, and the server's and the client's CPU time per request.
3. The server's resident memory (VmRSS from /proc) before and after --mixed requests (default
   5,000) at concurrency 4, ~70% valid and ~30% invalid in a fixed shuffled order: not an image,
   empty, over the size limit, a decompression bomb (5000x5000 PNG of zeros, ~25 kB), a JSON
   body, a truncated JPEG. Every answer's status is checked against what that case must get.

The client runs on the same machine as the server, so on a small machine it takes CPU from it.
Linux only (reads /proc/PID/status). Bounded: at most len(levels) x --requests + --mixed requests.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from _server import REPO_ROOT, running_server
from PIL import Image

DEMO = REPO_ROOT / "demo" / "mtsd_mini"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def payloads() -> dict[str, tuple[list[dict], int]]:
    """Request kwargs per case, and the status each must get."""
    images = sorted(DEMO.glob("*/Imgs/*.jpg"))  # the .png files beside them are masks
    if not images:
        raise SystemExit(f"no demo images under {DEMO}")
    valid = [{"files": {"file": (p.name, p.read_bytes(), "image/jpeg")}} for p in images]
    bomb = io.BytesIO()
    Image.new("L", (5000, 5000)).save(bomb, format="PNG")
    first = images[0].read_bytes()
    return {
        "valid": (valid, 200),
        "not_an_image": ([{"files": {"file": ("a.jpg", b"certainly not a picture", "image/jpeg")}}], 422),
        "empty": ([{"files": {"file": ("a.jpg", b"", "image/jpeg")}}], 400),
        "too_large": ([{"files": {"file": ("a.jpg", np.random.default_rng(0).bytes(int(1.1 * 2**20)),
                                           "image/jpeg")}}], 413),
        "bomb": ([{"files": {"file": ("bomb.png", bomb.getvalue(), "image/png")}}], 413),
        "json_body": ([{"json": {"path": "/etc/hostname"}}], 415),
        "truncated": ([{"files": {"file": ("cut.jpg", first[: len(first) // 3], "image/jpeg")}}], 422),
    }


def run_load(url: str, jobs: list[tuple[str, dict, int]], concurrency: int, max_seconds: float,
             path: str = "/predict") -> dict:
    """Send `jobs` from `concurrency` threads; latencies of every answered request, statuses per case."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    wrong: Counter = Counter()
    lock = threading.Lock()
    cursor = iter(range(len(jobs)))
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < deadline:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                case, kwargs, expected = jobs[index]
                began = time.perf_counter()
                try:
                    status = client.post(path, **kwargs).status_code
                except httpx.TransportError:  # the server may close a connection it refused mid-upload
                    status = -1
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    statuses[f"{case}:{status}"] += 1
                    if status != expected:
                        wrong[f"{case}:{status}"] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency, "requests": len(latencies), "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "statuses": dict(sorted(statuses.items())), "unexpected": dict(wrong),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="valid requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=120, help="time cap per concurrency level")
    parser.add_argument("--mixed", type=int, default=5000, help="mixed valid/invalid requests for the memory check")
    parser.add_argument("--mixed-max-seconds", type=float, default=1200)
    parser.add_argument("--output", default=None, help="write the figures as JSON here too")
    answer = parser.add_mutually_exclusive_group()
    answer.add_argument("--no-overlay", action="store_true",
                        help="the levels ask for the verdict and scores only (?overlay=false), as a line's "
                             "controller would; the page asks for the overlay")
    answer.add_argument("--overlay-format", choices=["png", "jpeg"], default="png",
                        help="the heatmap's format (the page asks for jpeg)")
    parser.add_argument("--class-name", default=None,
                        help="sent with every valid request; required when the model knows several classes")
    parser.add_argument("--feature-runtime", choices=["auto", "torch", "onnxruntime"], default="auto",
                        help="the server's --feature-runtime (a checkpoint's backbone in onnxruntime or torch)")
    parser.add_argument("--concurrent-calls", type=int, default=None, help="the server's --concurrent-calls")
    parser.add_argument("--threads", type=int, default=None, help="the server's --threads")
    args = parser.parse_args()

    cases = payloads()
    if args.mixed < 0 or args.requests < 1:
        raise SystemExit("--mixed must be 0 or more and --requests at least 1")
    rng = np.random.default_rng(0)
    valid_payloads, _ = cases["valid"]
    valid_jobs = [("valid", valid_payloads[i % len(valid_payloads)], 200) for i in range(args.requests)]
    invalid = [k for k in cases if k != "valid"]
    mixed_jobs = []
    for i in range(args.mixed):
        case = "valid" if rng.random() < 0.7 else invalid[int(rng.integers(len(invalid)))]
        options, expected = cases[case]
        mixed_jobs.append((case, options[i % len(options)], expected))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO_ROOT).stdout.strip()
    report: dict = {"checkpoint": args.checkpoint, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "commit": commit, "machine": f"{cpu_name()}, {len(os.sched_getaffinity(0))} CPUs available"}
    server_flags = ["--max-upload-mb", "1", "--feature-runtime", args.feature_runtime]
    for flag in ("concurrent_calls", "threads"):
        if getattr(args, flag) is not None:
            server_flags += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    report["server_flags"] = server_flags
    with running_server(args.checkpoint, *server_flags) as (process, url):
        model = httpx.get(url + "/model").json()
        classes = model.get("class_names") or []
        if args.class_name is None and len(classes) > 1:
            raise SystemExit(f"the model knows {len(classes)} classes {classes}: pass --class-name")
        if args.class_name is not None:  # a form field beside the file, as the page sends it
            for _, kwargs, _ in valid_jobs + mixed_jobs:
                if "files" in kwargs:
                    kwargs["data"] = {"class_name": args.class_name}
        report["model"], report["feature_runtime"] = model["model_name"], model.get("feature_runtime")
        report["rss_after_start_mib"] = rss_mib(process.pid)
        path = "/predict?overlay=false" if args.no_overlay else f"/predict?overlay_format={args.overlay_format}"
        report["overlay"] = None if args.no_overlay else args.overlay_format
        levels = [("warm-up", valid_jobs[:20], 1, 60.0)] + [(c, valid_jobs, c, args.max_seconds) for c in args.levels]
        report["levels"] = []
        for name, jobs, concurrency, seconds in levels:  # the warm-up's first calls allocate the model's buffers
            server, client = cpu_seconds(process.pid), os.times()
            level = run_load(url, jobs, concurrency, seconds, path)
            client_after = os.times()
            # where the two cores went: a level limited by a queue leaves some of them idle
            level["server_cpu_ms_per_request"] = round(
                (cpu_seconds(process.pid) - server) / max(level["requests"], 1) * 1000, 1)
            level["client_cpu_ms_per_request"] = round(
                (client_after.user + client_after.system - client.user - client.system)
                / max(level["requests"], 1) * 1000, 1)
            if name == "warm-up":
                report["rss_after_warmup_mib"] = rss_mib(process.pid)
            else:
                report["levels"].append(level)
            if level["unexpected"]:  # a refused request is fast: its latency must not pass for a scored part's
                if args.output:
                    Path(args.output).write_text(json.dumps(report, indent=2))
                raise SystemExit(f"valid requests at level {name} got other statuses than 200: {level['unexpected']}"
                                 + (f" (the levels before it are in {args.output})" if args.output else ""))
        if mixed_jobs:  # --mixed 0: latency only
            before = rss_mib(process.pid)
            mixed = run_load(url, mixed_jobs, 4, args.mixed_max_seconds)
            after = rss_mib(process.pid)
            alive = process.poll() is None and httpx.get(url + "/health").status_code == 200
            report["mixed"] = {**mixed, "rss_before_mib": before, "rss_after_mib": after, "server_alive_after": alive}
        report["rss_after_levels_mib"] = rss_mib(process.pid)
        report["health_after"] = httpx.get(url + "/health").json()

    print(f"model {report['model']} ({args.checkpoint}), features in {report['feature_runtime']}, "
          f"overlay {report['overlay'] or 'off'}, server {' '.join(server_flags)}; "
          f"{report['machine']}; {report['date_utc']}; commit {commit}")
    print("| concurrency | requests | requests/s | p50 ms | p99 ms | server / client CPU ms per request |\n"
          "|---|---|---|---|---|---|")
    for level in report["levels"]:
        print(f"| {level['concurrency']} | {level['requests']} | {level['requests_per_s']} | {level['p50_ms']} "
              f"| {level['p99_ms']} | {level['server_cpu_ms_per_request']} / {level['client_cpu_ms_per_request']} |")
    m = report.get("mixed")
    if m is None:
        print(f"server RSS after the levels: {report['rss_after_levels_mib']['VmRSS']:.0f} MiB "
              f"(peak {report['rss_after_levels_mib']['VmHWM']:.0f} MiB)")
    else:
        print(f"mixed: {m['requests']} requests in {m['seconds']} s at concurrency 4; statuses {m['statuses']}; "
          f"unexpected {m['unexpected'] or 'none'}")
        print(f"server RSS: {m['rss_before_mib']['VmRSS']:.0f} MiB before, {m['rss_after_mib']['VmRSS']:.0f} MiB "
              f"after (peak {m['rss_after_mib']['VmHWM']:.0f} MiB); alive after: {m['server_alive_after']}")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
