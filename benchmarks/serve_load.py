"""Load test of ``biomedclip serve`` on 127.0.0.1: dynamic batching vs batch size 1, same run.

Two server processes serve the same full-size model (the released architecture; random weights,
since the released weights cannot be downloaded here, which does not change the speed): one with
dynamic batching (``--max-batch-size 32 --max-wait-ms 5``), one with ``--max-batch-size 1``. For
each round and each server (order rotated every round), N concurrent clients send a fixed number
of one-text ``/v1/embeddings`` requests (real biomedical prompts). Reported per variant: p50/p95
latency, throughput (median over rounds), errors, the server's RSS after every round, and the
largest difference between the two servers' embeddings of the same texts.

    python benchmarks/serve_load.py [--concurrency 16] [--requests 160] [--rounds 3]

``--attack`` runs the attack mix instead (benchmarks/_serve_attack.py): one server (dynamic
batching, service defaults for every limit, OpenSlide hidden), N normal clients (one-text and
one-image /v1/embeddings, zero-shot classify) alone, then the same normal load beside attacker
clients looping hostile requests (deflated-DICOM and gzip bombs, images declaring 60,000^2 pixels,
4,096-prompt classify, 64 KB templates, bare base64, oversize and truncated bodies, slow uploads,
and issue 24's cases: a planar TIFF, a NIfTI at the voxel cap with spacing (1, 99, 1), the
format-spec template, a slide level stored as one 8192^2 tile, an upper-case data URI), then a
template probe (normal requests sent while the format-spec template attack is in flight).
Reported: the server's peak RSS over its warmed-up peak (<= 1 GiB), every attack's status
(4xx), /health/ready throughout, the normal requests' latency during the template attack (< 5 s).

    python benchmarks/serve_load.py --attack [--concurrency 16] [--requests 96]
        [--issue24 all | planar-tiff,nifti-spacing,format-spec-template,big-tile-slide,...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import _bench
from _reference import SHARED
from _texts import short_prompts

VARIANTS = {
    "dynamic": ["--max-batch-size", "32", "--max-wait-ms", "5"],
    "batch1": ["--max-batch-size", "1", "--max-wait-ms", "0"],
}
# --openvino: the dynamic batcher on OpenVINO fp32 and int8 too (int8 calibrated on real images)
OPENVINO_VARIANTS = {
    "dynamic_openvino_fp32": [*VARIANTS["dynamic"], "--backend", "openvino"],
    "dynamic_openvino_int8": [*VARIANTS["dynamic"], "--backend", "openvino", "--precision", "int8"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(
    model_dir: Path, args: list[str], timeout: bool = True, env: dict | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "biomedclip.cli.main", "serve", "--model", str(model_dir)]
    cmd += ["--port", str(port), "--log-level", "warning", "--max-queue", "4096"]
    if timeout:
        cmd += ["--request-timeout", "600"]
    cmd += args
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives as long as the server; a pipe nobody reads could block it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(log.read())
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready")


async def load(url: str, texts: list[str], concurrency: int) -> dict:
    """``len(texts)`` one-text requests from ``concurrency`` clients; latencies and errors."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for t in texts:
        queue.put_nowait(t)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                text = queue.get_nowait()
                t = time.perf_counter()
                r = await client.post("/v1/embeddings", json={"input": text})
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

        start_t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start_t
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


def embed(url: str, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, four per request."""
    rows = []
    for i in range(0, len(texts), 4):
        r = httpx.post(url + "/v1/embeddings", json={"input": texts[i : i + 4]}, timeout=600)
        r.raise_for_status()
        rows += [d["embedding"] for d in r.json()["data"]]
    return np.array(rows, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=160, help="requests per round and variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--attack", action="store_true", help="run the attack mix (see above)")
    ap.add_argument("--attackers", type=int, default=4, help="attacker clients (--attack)")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="server's (--attack)")
    ap.add_argument(
        "--issue24",
        default="all",
        help="issue 24's cases sent with --attack: 'all' or a comma list (see above)",
    )
    ap.add_argument("--name", default=None, help="result name (serve_load / serve_load_attack)")
    ap.add_argument(
        "--openvino", action="store_true", help="add OpenVINO fp32/int8 servers (cpu-fast extra)"
    )
    args = ap.parse_args()
    if args.attack:
        from _serve_attack import run_attack

        args.name = args.name or "serve_load_attack"
        return run_attack(args, start)
    args.name = args.name or "serve_load"

    from biomedclip.config import ModelConfig
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer

    hub = SHARED / "biomedclip_hub"
    tokenizer = Tokenizer.from_pretrained(hub)
    prompts = short_prompts(tokenizer, n=min(args.requests, 96))
    texts = [prompts[i % len(prompts)] for i in range(args.requests)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        BiomedCLIP(ModelConfig.biomedclip()).save_pretrained(model_dir, tokenizer=tokenizer)
        variants = dict(VARIANTS)
        if args.openvino:
            cal = Path(tmp) / "calibration"
            cal.mkdir()
            for i, src in enumerate(sorted((SHARED / "lc25000_lung").glob("*/*.jpeg"))[::20][:16]):
                (cal / f"{i:02d}{src.suffix}").symlink_to(src)
            os.environ["BIOMEDCLIP_CACHE"] = str(Path(tmp) / "cache")  # inherited by the servers
            for name, flags in OPENVINO_VARIANTS.items():
                variants[name] = [*flags, "--calibration", str(cal)]
        servers = {name: start(model_dir, flags) for name, flags in variants.items()}
        try:
            names = list(variants)
            for name in names:  # warm-up round, not timed
                asyncio.run(load(servers[name][1], texts[:32], args.concurrency))
            rss = {n: [rss_mib(servers[n][0].pid)] for n in names}
            rounds: dict[str, list[dict]] = {n: [] for n in names}
            for r in range(args.rounds):
                k = r % len(names)
                for name in names[k:] + names[:k]:
                    rounds[name].append(
                        asyncio.run(load(servers[name][1], texts, args.concurrency))
                    )
                    rss[name].append(rss_mib(servers[name][0].pid))
                    print(
                        f"round {r} {name}: {args.requests / rounds[name][-1]['wall_s']:.1f} req/s"
                    )
            check = texts[:16]
            diff = float(
                np.abs(
                    embed(servers["dynamic"][1], check) - embed(servers["batch1"][1], check)
                ).max()
            )
            batches = {}
            for name in names:
                text = httpx.get(servers[name][1] + "/metrics").text
                for line in text.splitlines():
                    if line.startswith('biomedclip_batches_total{modality="text"}'):
                        batches[name] = float(line.split()[-1])
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _ in servers.values():
                proc.wait(60)

    out = {}
    for name in names:
        lat = [x for rd in rounds[name] for x in rd["latencies"]]
        thr = [args.requests / rd["wall_s"] for rd in rounds[name]]
        out[name] = {
            "throughput_req_per_s_median": round(statistics.median(thr), 2),
            "throughput_req_per_s_rounds": [round(t, 2) for t in thr],
            "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
            "errors": sum(rd["errors"] for rd in rounds[name]),
            "requests": len(lat),
            "text_forward_passes": batches.get(name),
            "server_rss_mib_after_each_round": [round(x, 1) for x in rss[name]],
            "rss_growth_mib": round(rss[name][-1] - rss[name][1], 1),
        }
    ratio = (
        out["dynamic"]["throughput_req_per_s_median"] / out["batch1"]["throughput_req_per_s_median"]
    )
    result = {
        "what": (
            f"{args.concurrency} concurrent clients, {args.requests} one-text /v1/embeddings "
            f"requests per round, {args.rounds} rounds per variant (interleaved), full-size "
            "model (random weights), fp32 on CPU; server and clients share the machine"
        ),
        "settings": {k: " ".join(v) for k, v in VARIANTS.items()},
        "variants": out,
        "throughput_ratio_dynamic_vs_batch1": round(ratio, 2),
        "max_abs_embedding_diff_dynamic_vs_batch1": diff,
        "torch_threads_per_server": os.environ.get("OMP_NUM_THREADS", "default"),
    }
    path = _bench.write_result(args.name, result)
    print(f"dynamic/batch1 throughput: {ratio:.2f}x; written {path}")


if __name__ == "__main__":
    main()
