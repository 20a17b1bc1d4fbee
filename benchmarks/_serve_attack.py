"""The attack mode of ``serve_load.py --attack``: the hostile-request mix, the issue-24 cases, and
the checks of issue 24's "Done when" (server RSS over its warmed-up peak, every attack a 4xx,
/health/ready true throughout, a normal request answered while the template attack is in flight).

Phases, one server (service defaults for every limit, full-size model with random weights):
``normal_only`` (its RSS peak is the warmed-up peak), ``normal_with_attack`` (attacker clients
loop the mix beside the normal load) and ``template_probe`` (attackers loop the format-spec
template request with no pause; a normal request is sent only while one is in flight).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

import _bench
import _bombs as bombs
from _reference import SHARED
from _texts import short_prompts

# issue 24's cases; the image ones are refused only once the decode budget (imaging) has landed
ISSUE24 = (
    "planar-tiff",
    "nifti-spacing",
    "format-spec-template",
    "big-tile-slide",
    "upper-case-data-uri",
)
AWAIT_BUDGET = ("planar-tiff", "nifti-spacing", "big-tile-slide")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "fma")


def uri(data: bytes, scheme: str = "data:application/octet-stream;base64,") -> str:
    return scheme + base64.b64encode(data).decode()


def template_attack() -> dict:
    """4 labels x 64 copies of ``"{{}}{0:>30000000}"``: 256 prompts of 30 M characters each
    (7.7 GB) for a service that formats templates with ``str.format``."""
    img = uri(bombs.png_declaring(64, 64))
    labels = ["a", "b", "c", "d"]
    return {"image": img, "labels": labels, "templates": [bombs.template_format_spec()] * 64}


def issue24_bodies(cases) -> list[tuple[str, str, dict]]:
    """(name, route, JSON body) of the chosen issue-24 cases, at the service's default limits."""
    from biomedclip.serve.config import SERVE_MAX_PIXELS

    build = {
        "planar-tiff": lambda: {"input": [uri(bombs.planar_tiff(7000, 2500))]},
        "nifti-spacing": lambda: {"input": [uri(bombs.nifti_spacing(SERVE_MAX_PIXELS))]},
        "format-spec-template": template_attack,
        "big-tile-slide": lambda: {"input": [uri(bombs.big_tile_slide(1024, 8192, 8192))]},
        "upper-case-data-uri": lambda: {
            "input": [uri(bombs.png_declaring(60_000, 60_000), "DATA:IMAGE/PNG;BASE64,")]
        },
    }
    route = {"format-spec-template": "/v1/classify"}
    return [(c, route.get(c, "/v1/embeddings"), build[c]()) for c in cases]


def hostile_bodies(cases=ISSUE24) -> list[tuple[str, str, dict | bytes]]:
    """(name, route, JSON body or raw bytes) of the attack mix (built once, reused)."""
    png = bombs.png_declaring(60_000, 60_000)
    img = uri(bombs.png_declaring(64, 64))
    return [
        ("deflated-dicom-bomb", "/v1/embeddings", {"input": [uri(bombs.deflated_dicom_bomb())]}),
        ("nifti-gz-bomb", "/v1/embeddings", {"input": [uri(bombs.nifti_gz_bomb())]}),
        ("png-60k", "/v1/embeddings", {"input": [uri(png)]}),
        ("jpeg-60k", "/v1/classify", {"image": uri(bombs.jpeg_declaring(60_000, 60_000)),
                                      "labels": ["a"]}),
        ("tiff-60k", "/v1/embeddings", {"input": [uri(bombs.tiff_declaring(60_000, 60_000))]}),
        ("jpeg-frame-lies", "/v1/embeddings", {"input": [uri(bombs.jpeg_dicom_lying_about_size())]}),
        ("bare-base64-bomb", "/v1/embeddings", {"input": [base64.b64encode(png).decode()]}),
        ("4096-prompts", "/v1/classify", {"image": img, "labels": [f"l{i}" for i in range(64)],
                                          "templates": [f"{{}} t{j}" for j in range(64)]}),
        ("64kb-template", "/v1/classify", {"image": img, "labels": ["a"],
                                           "templates": "{} " + "x" * 65_536}),
        ("oversize-body", "/v1/embeddings", b'{"input": ["' + b"a" * (33 * 2**20) + b'"]}'),
        ("truncated-json", "/v1/embeddings", b'{"input": ["abc'),
        *issue24_bodies(cases),
    ]  # fmt: skip


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ServerWatch:
    """In threads: the server's peak VmRSS (every 20 ms) and /health/ready (every 100 ms)."""

    def __init__(self, pid: int, url: str):
        self.pid, self.url, self.peak = pid, url, rss_mib(pid)
        self.ready: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._rss, self._hc)]

    def _rss(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def _hc(self) -> None:
        with httpx.Client(timeout=5) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(self.url + "/health/ready")
                    key = str(r.status_code) if r.json().get("status") == "ok" else "not-ok"
                except (httpx.HTTPError, ValueError) as e:
                    key = type(e).__name__
                self.ready[key] = self.ready.get(key, 0) + 1
                time.sleep(0.1)

    def __enter__(self) -> ServerWatch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


async def slow_upload(port: int, seconds: float) -> int:
    """Declare 1000 bytes, send one per second: the server must answer 408."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    deadline = time.monotonic() + seconds
    status = 0
    try:
        while time.monotonic() < deadline:
            writer.write(b" ")
            await writer.drain()
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
            except TimeoutError:
                continue
            status = int(line.split()[1]) if line.startswith(b"HTTP/") else -1
            break
    except (ConnectionError, OSError):
        status = status or -2
    finally:
        writer.close()
    return status


async def _post(client: httpx.AsyncClient, route: str, body: dict | bytes) -> str:
    try:
        if isinstance(body, bytes):
            headers = {"content-type": "application/json"}
            r = await client.post(route, content=body, headers=headers)
        else:
            r = await client.post(route, json=body)
        return str(r.status_code)
    except httpx.HTTPError as e:
        return type(e).__name__


def _count(book: dict, name: str, code: str) -> None:
    book.setdefault(name, {}).setdefault(code, 0)
    book[name][code] += 1


async def mixed_load(url, normal, concurrency, attack, attackers, timeout_s) -> dict:
    """Normal requests from ``concurrency`` clients; with ``attack``, ``attackers`` clients loop
    hostile requests (plus one slow uploader) until the normal load is done."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in normal:
        queue.put_nowait(item)
    lat: list[float] = []
    statuses: dict[str, int] = {}
    hostile: dict[str, dict[str, int]] = {}
    done = asyncio.Event()
    port = int(url.rsplit(":", 1)[1])
    limits = httpx.Limits(max_connections=concurrency + attackers + 2)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s + 30, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                route, body = queue.get_nowait()
                t = time.perf_counter()
                code = await _post(client, route, body)
                lat.append(time.perf_counter() - t)
                statuses[code] = statuses.get(code, 0) + 1

        async def attacker(k: int) -> None:
            i = k
            while not done.is_set():
                name, route, body = attack[i % len(attack)]
                i += 1
                _count(hostile, name, await _post(client, route, body))
                await asyncio.sleep(0.05)

        async def slow() -> None:
            while not done.is_set():
                _count(hostile, "slow-upload", str(await slow_upload(port, timeout_s + 10)))

        extra = []
        if attack:
            extra = [asyncio.ensure_future(attacker(k)) for k in range(attackers)]
            extra.append(asyncio.ensure_future(slow()))
        start_t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start_t
        done.set()
        await asyncio.gather(*extra)
    return {"latencies": lat, "statuses": statuses, "hostile": hostile, "wall_s": wall}


async def template_probe(url: str, normal: list[tuple[str, dict]], attackers: int) -> dict:
    """``attackers`` clients send the template attack back to back; each normal request (one at
    a time) is sent only while at least one attack is in flight. Its latency, and how many
    attacks were answered while it ran, are recorded."""
    body = template_attack()
    state = {"in_flight": 0, "answered": 0}
    hostile: dict[str, dict[str, int]] = {}
    done = asyncio.Event()
    rows = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=120) as bad,
        httpx.AsyncClient(base_url=url, timeout=120) as good,
    ):

        async def attacker() -> None:
            while not done.is_set():
                state["in_flight"] += 1
                code = await _post(bad, "/v1/classify", body)
                state["in_flight"] -= 1
                state["answered"] += 1
                _count(hostile, "format-spec-template", code)

        tasks = [asyncio.ensure_future(attacker()) for _ in range(attackers)]
        for route, payload in normal:
            while state["in_flight"] == 0:
                await asyncio.sleep(0.001)
            before, t = state["answered"], time.perf_counter()
            code = await _post(good, route, payload)
            rows.append(
                {
                    "route": route,
                    "status": code,
                    "latency_s": round(time.perf_counter() - t, 3),
                    "attacks_answered_meanwhile": state["answered"] - before,
                }
            )
        done.set()
        await asyncio.gather(*tasks)
    return {"normal": rows, "hostile": hostile}


def normal_requests(n: int) -> list[tuple[str, dict]]:
    """5/8 one-text embeddings, 1/4 one-image embeddings (real JPEGs), 1/8 zero-shot classify."""
    from biomedclip.tokenizer import Tokenizer

    hub = SHARED / "biomedclip_hub"
    prompts = short_prompts(Tokenizer.from_pretrained(hub), n=min(n, 96))
    folder = hub / "example_data" / "biomed_image_classification_example_data"
    images = [uri(p.read_bytes(), "data:image/jpeg;base64,") for p in sorted(folder.glob("*.jpg"))]
    out: list[tuple[str, dict]] = []
    for i in range(n):
        image = images[i % len(images)]
        if i % 4 == 3:
            out.append(("/v1/embeddings", {"input": [image]}))
        elif i % 8 == 5:
            labels = ["chest x-ray", "brain mri", "histology"]
            out.append(("/v1/classify", {"image": image, "labels": labels}))
        else:
            out.append(("/v1/embeddings", {"input": prompts[i % len(prompts)]}))
    return out


def _no_openslide(tmp: str) -> dict:
    """The server's environment with ``import openslide`` failing (the ``serve`` extra does not
    pull ``wsi``): slides are read by the tifffile backend."""
    shim = Path(tmp) / "no_openslide" / "openslide"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('hidden by serve_load --attack')\n")
    paths = [str(shim.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = set(text.split("flags", 1)[1].split("\n", 1)[0].split())
    except (OSError, IndexError):
        return []
    return [f for f in CPU_FLAGS if f in flags]


def run_attack(args, start) -> None:
    """``start(model_dir, flags, timeout=False, env=...) -> (proc, url)`` starts a server."""
    from biomedclip.config import ModelConfig
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer

    cases = [c for c in args.issue24.split(",") if c] if args.issue24 != "all" else list(ISSUE24)
    unknown = sorted(set(cases) - set(ISSUE24))
    if unknown:
        raise SystemExit(f"--issue24: unknown cases {unknown} (choose from {', '.join(ISSUE24)})")
    normal = normal_requests(args.requests)
    attack = hostile_bodies(cases)
    probe = [normal[i % len(normal)] for i in (0, 3, 5, 1, 7, 2, 11, 4)]
    timeout_s = args.request_timeout
    flags = ["--max-batch-size", "32", "--max-wait-ms", "5", "--request-timeout", str(timeout_s)]
    phases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        hub = SHARED / "biomedclip_hub"
        tokenizer = Tokenizer.from_pretrained(hub)
        BiomedCLIP(ModelConfig.biomedclip()).save_pretrained(model_dir, tokenizer=tokenizer)
        proc, url = start(model_dir, flags, timeout=False, env=_no_openslide(tmp))
        try:
            asyncio.run(mixed_load(url, normal[:16], args.concurrency, None, 0, timeout_s))
            idle = rss_mib(proc.pid)
            for phase, hostile in (("normal_only", None), ("normal_with_attack", attack)):
                with ServerWatch(proc.pid, url) as watch:
                    res = asyncio.run(
                        mixed_load(
                            url, normal, args.concurrency, hostile, args.attackers, timeout_s
                        )
                    )
                lat = res["latencies"]
                phases[phase] = {
                    "normal_requests": len(lat),
                    "normal_statuses": res["statuses"],
                    "normal_latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
                    "normal_latency_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
                    "wall_s": round(res["wall_s"], 1),
                    "hostile_statuses": res["hostile"],
                    "ready_polls": watch.ready,
                    "server_peak_rss_mib": round(watch.peak, 1),
                }
                print(phase, {k: v for k, v in phases[phase].items() if k != "hostile_statuses"})
            with ServerWatch(proc.pid, url) as watch:
                res = asyncio.run(template_probe(url, probe, args.attackers))
            phases["template_probe"] = {
                **res,
                "hostile_statuses": res.pop("hostile"),
                "ready_polls": watch.ready,
                "server_peak_rss_mib": round(watch.peak, 1),
            }
            print("template_probe", phases["template_probe"]["normal"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    warm_peak = phases["normal_only"]["server_peak_rss_mib"]
    attack_peak = max(phases[p]["server_peak_rss_mib"] for p in phases)
    codes = {}
    for p in ("normal_with_attack", "template_probe"):
        for name, book in phases[p]["hostile_statuses"].items():
            for code, n in book.items():
                codes.setdefault(name, {})[code] = codes.get(name, {}).get(code, 0) + n
    probe_rows = phases["template_probe"]["normal"]
    worst = max(r["latency_s"] for r in probe_rows)
    growth = round(attack_peak - warm_peak, 1)
    checks = {
        "rss_growth_over_warm_peak_mib": growth,
        "rss_growth_ok (<= 1024 MiB)": growth <= 1024,
        "attack_statuses": codes,
        "every_attack_4xx": all(k.isdigit() and k[0] == "4" for b in codes.values() for k in b),
        "issue24_cases_sent": cases,
        "issue24_cases_not_sent": [c for c in ISSUE24 if c not in cases],
        "ready_throughout": all(set(phases[p]["ready_polls"]) == {"200"} for p in phases),
        "normal_latency_during_template_attack_max_s": worst,
        "normal_during_template_attack_ok (< 5 s, all 200)": worst < 5
        and all(r["status"] == "200" for r in probe_rows),
    }
    print(checks)
    result = {
        "what": (
            f"attack mix: {args.concurrency} concurrent normal clients, {args.requests} normal "
            "requests per phase (5/8 one-text embeddings, 1/4 one-image embeddings of real JPEGs, "
            f"1/8 zero-shot classify), alone and beside {args.attackers} attacker clients looping "
            "hostile requests plus one slow uploader; then a template probe (the format-spec "
            "template sent back to back by the attackers, normal requests one at a time while one "
            "is in flight); full-size model (random weights), fp32 CPU, service defaults for every "
            "limit, OpenSlide hidden from the server; server and clients share the machine"
        ),
        "server_flags": " ".join(flags),
        "cpu_flags": cpu_flags(),
        "server_idle_rss_mib": round(idle, 1),
        "checks": checks,
        "phases": phases,
    }
    path = _bench.write_result(args.name, result)
    print(f"written {path}")
