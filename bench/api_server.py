"""The API benchmark's server phase: ``churnstream api`` as a subprocess loaded by
``wrk`` (see :mod:`bench.api_bench`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.api_load import customer_id
from bench.api_measure import redis_commands, wait_for_quiet
from bench.children import BenchChild
from bench.common import CLI, REPO_ROOT, child_env
from bench.cpu import free_port, machine_busy_seconds, redis_cpu_seconds, tree_cpu_seconds
from core.model import LinearModel
from core.settings import Settings, env_var_name

log = logging.getLogger("bench.api")

# The settings the results show (the server gets every setting; these are the ones the
# benchmark sets).
_SETTINGS_SHOWN = ("kafka_bootstrap_servers", "redis_url", "redis_key_prefix", "model_dir")


# --- the server under wrk -------------------------------------------------------------------

# wrk's done() hook: requests, duration, errors and latency percentiles as one JSON line
WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, " ..
    "\\"errors_connect\\": %d, \\"errors_read\\": %d, \\"errors_write\\": %d, " ..
    "\\"errors_status\\": %d, \\"errors_timeout\\": %d, \\"p50_us\\": %d, " ..
    "\\"p90_us\\": %d, \\"p99_us\\": %d, \\"p999_us\\": %d, \\"max_us\\": %d, " ..
    "\\"mean_us\\": %.1f}\\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

# picks a random customer per request from a file of ids (one per line)
WRK_SCRIPT = """-- GET /customers/<random id>/risk
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
local n = #ids
local counter = 1

setup = function(thread)
  thread:set("seed", %(seed)d + counter)
  counter = counter + 1
end

init = function(args)
  math.randomseed(seed)
end

request = function()
  return wrk.format("GET", "/customers/" .. ids[math.random(n)] .. "/risk")
end
""" + WRK_DONE.replace("%", "%%")


class ApiServer(BenchChild):
    """``churnstream api`` (one uvicorn worker) as a subprocess on 127.0.0.1:``port``."""

    def __init__(
        self,
        settings: Settings,
        port: int,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__("the API", log_path, f"http://127.0.0.1:{port}/ready", stop_seconds=20)
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.port = port
        self.command: list[str] = []
        self.env_shown: dict[str, str] = {}

    def start(self, timeout: float = 60) -> float:
        for name in _SETTINGS_SHOWN:
            self.env_shown[env_var_name(name)] = str(getattr(self.settings, name))
        self.env_shown.update({"CHURN_API_HOST": "127.0.0.1", "CHURN_API_PORT": str(self.port)})
        self.env_shown.update(self.extra_env)
        self.command = api_command(self.port)
        return self.launch(self.command, child_env(self.settings, self.env_shown), timeout)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def api_command(port: int) -> list[str]:
    """``churnstream api`` (the ``serving.cli.api`` of older trees directly while their
    top-level CLI does not list it yet), else uvicorn with the options ``churnstream api``
    uses."""
    where = ["--host", "127.0.0.1", "--port", str(port)]
    cli = REPO_ROOT / "churnstream" / "cli.py"
    if cli.exists() and '"api"' in cli.read_text():
        return [*CLI, "api", *where]
    if (REPO_ROOT / "serving" / "cli.py").exists():
        run_api = "import typer; from serving.cli import api; typer.run(api)"
        return [sys.executable, "-c", run_api, *where]
    return [
        sys.executable, "-m", "uvicorn", "--factory", "serving.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
    ]  # fmt: skip


def run_wrk(
    wrk: str, url: str, script: Path, threads: int, connections: int, seconds: int
) -> dict[str, Any]:
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return {"command": " ".join(command), **parse_wrk(out.stdout), "output": out.stdout}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, the latency distribution and errors from wrk's output (the ``done``
    hook's JSON line when present, wrk's own summary otherwise)."""
    result: dict[str, Any] = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        result["rps"] = float(match.group(1))
    distribution = {}
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        distribution[f"p{pct}_ms"] = round(float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit], 3)
    result["wrk_distribution"] = distribution
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    result["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if match:
        hook = json.loads(match.group(1))
        result["requests"] = hook["requests"]
        result["seconds"] = round(hook["duration_us"] / 1e6, 3)
        result["rps"] = round(hook["requests"] / (hook["duration_us"] / 1e6), 1)
        for name in ("p50", "p90", "p99", "p999", "max"):
            result[f"{name}_ms"] = round(hook[f"{name}_us"] / 1000, 3)
        result["mean_ms"] = round(hook["mean_us"] / 1000, 3)
        result["errors"] = {k[7:]: v for k, v in hook.items() if k.startswith("errors_")}
    else:
        result.update({k: v for k, v in distribution.items() if k in ("p50_ms", "p99_ms")})
    return result


# --- the benchmark --------------------------------------------------------------------------


def bench_model(version: str) -> LinearModel:
    """The worker benchmark's trained LinearModel, under a version of its own."""
    from bench.worker_support import champion_model

    return dataclasses.replace(champion_model(), version=version)


def server_phase(
    settings: Settings,
    client: redis.Redis,
    wrk: str,
    n: int,
    temp: Path,
    rng: np.random.Generator,
    seconds: int,
    cleanup: contextlib.ExitStack,
) -> tuple[dict[str, Any], dict[str, Any]]:
    ids_path = temp / "ids.txt"
    sample = rng.choice(n, size=min(n, 200_000), replace=False)
    ids_path.write_text("".join(f"{customer_id(i)}\n" for i in sample.tolist()))
    script = temp / "risk.lua"
    script.write_text(WRK_SCRIPT % {"ids": ids_path, "seed": int(rng.integers(1, 2**31))})
    health_script = temp / "health.lua"
    health_script.write_text('wrk.path = "/health"\n' + WRK_DONE)
    server = ApiServer(settings, free_port(), temp / "api.log")
    cleanup.callback(server.stop)
    startup = server.start()
    details: dict[str, Any] = {
        "command": " ".join(server.command),
        "environment": server.env_shown,
        "startup_seconds": round(startup, 2),
        "ids_in_script": len(sample),
        "lua_script": "risk.lua: reads the ids file, seeds math.random per thread, "
        "request() = GET /customers/<random id>/risk, done() prints the latency percentiles",
    }
    run_wrk(wrk, server.url(), script, 2, 4, 3)  # warm-up, not reported
    details["machine_before_passes"] = wait_for_quiet()
    passes = {}
    for connections in (64, 16, 4):
        passes[f"c{connections}"] = _wrk_pass(wrk, server, client, script, connections, seconds)
    details["passes"] = passes
    # where the time goes, details only: the HTTP stack alone, and the same server writing
    # an access-log line for every request (CHURN_API_ACCESS_LOG=all; the default logs
    # errors only)
    short = max(5, seconds // 4)
    details["health_c16"] = _wrk_pass(wrk, server, client, health_script, 16, short)
    details["log_tail"] = server.log_tail(3)
    server.stop()
    logging_all = ApiServer(
        settings, free_port(), temp / "api-access-log.log", {"CHURN_API_ACCESS_LOG": "all"}
    )
    cleanup.callback(logging_all.stop)
    logging_all.start()
    run_wrk(wrk, logging_all.url(), script, 2, 4, 2)
    details["c64_access_log_all"] = {
        "environment_added": logging_all.extra_env,
        **_wrk_pass(wrk, logging_all, client, script, 64, max(5, seconds // 2)),
    }
    logging_all.stop()
    reported = [p for p in passes.values() if p.get("p99_ms") is not None and not p.get("non_2xx")]
    best = max(reported or passes.values(), key=lambda p: p.get("rps", 0))
    details["headline_pass"] = best["command"]
    figures = {
        "api_rps": round(best["rps"]),
        "api_p50_ms": best.get("p50_ms"),
        "api_p99_ms": best.get("p99_ms"),
    }
    return details, figures


def _wrk_pass(
    wrk: str,
    server: ApiServer,
    client: redis.Redis,
    script: Path,
    connections: int,
    seconds: int,
) -> dict[str, Any]:
    """One wrk run, with the CPU seconds the server, Redis, wrk and everything else used."""
    server_0 = tree_cpu_seconds(server.pid)
    redis_0 = redis_cpu_seconds(client)
    commands_0 = redis_commands(client)
    children_0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_0, total_0 = machine_busy_seconds()
    result = run_wrk(wrk, server.url(), script, 2, connections, seconds)
    busy_1, total_1 = machine_busy_seconds()
    children_1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_s = children_1.ru_utime + children_1.ru_stime - children_0.ru_utime - children_0.ru_stime
    cpu = {
        "server_s": tree_cpu_seconds(server.pid) - server_0,
        "redis_s": redis_cpu_seconds(client) - redis_0,
        "wrk_s": wrk_s,
    }
    cpu["other_processes_s"] = max(0.0, busy_1 - busy_0 - sum(cpu.values()))
    cpu["idle_s"] = max(0.0, (total_1 - total_0) - (busy_1 - busy_0))
    done = max(int(result.get("requests", 0)), 1)
    # ~1 (the HGETALL) when nobody else uses this Redis; more means its CPU is shared too
    result["redis_commands_per_request"] = round((redis_commands(client) - commands_0) / done, 2)
    result["cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    result["cpu_ms_per_request"] = {
        k[:-2]: round(v / done * 1000, 3) for k, v in cpu.items() if k != "idle_s"
    }
    log.info(
        "wrk %s -c%d: %.0f rps, p50 %s ms, p99 %s ms, server CPU %.2f ms/request",
        script.name, connections, result.get("rps", 0), result.get("p50_ms"),
        result.get("p99_ms"), cpu["server_s"] / done * 1000,
    )  # fmt: skip
    return result
