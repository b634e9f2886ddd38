"""Real Kafka (KRaft) and redis for tests, without Docker.

Plain helpers, no pytest fixtures (conftest wires those):

    bootstrap, redis_url = ensure_services()   # may raise RuntimeError
    ...
    if services_started_by_us():
        stop_services()

If SEGMENTER_KAFKA_BOOTSTRAP and SEGMENTER_REDIS_URL are both set, they are used
as they are and nothing is started. Otherwise ``scripts/services.sh start`` is
run; it downloads Kafka once (Maven Central, cached under
~/.cache/segmenter-services) and is a no-op when the services already answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "services.sh"

# the first start may download ~45 MB of jars and apt-install redis-server
START_TIMEOUT_S = 900
STOP_TIMEOUT_S = 120
_TAIL_LINES = 60

_cached: tuple[str, str] | None = None
_started: list[str] = []  # services this process started: "kafka", "redis"


def _tail(text: str, n: int = _TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-n:])


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    # the script's readiness check imports aiokafka: use this interpreter (venv)
    env.setdefault("SEGMENTER_PYTHON", sys.executable)
    return env


def ensure_services() -> tuple[str, str]:
    """Return ``(kafka_bootstrap, redis_url)``, starting the services if needed.

    Raises RuntimeError (with the tail of the script's output) when they cannot
    be started; the caller fails the tests (conftest: a skipped Kafka test is one nobody runs).
    """
    global _cached
    bootstrap = os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("SEGMENTER_REDIS_URL")
    if bootstrap and redis_url:
        return bootstrap, redis_url
    if _cached is not None:
        return _cached

    proc, values = _start("kafka", "redis")
    bootstrap = values.get("SEGMENTER_KAFKA_BOOTSTRAP")
    redis_url = values.get("SEGMENTER_REDIS_URL")
    if proc.returncode != 0 or not bootstrap or not redis_url:
        raise RuntimeError(f"{SCRIPT} start exited {proc.returncode}:\n{_tail(proc.stderr + proc.stdout)}")
    _cached = (bootstrap, redis_url)
    return _cached


def ensure_prometheus() -> tuple[str, Path]:
    """``(prometheus_url, targets_dir)``: a Prometheus scraping the workers listed in ``targets_dir/*.json``.

    From SEGMENTER_PROMETHEUS_URL / SEGMENTER_PROMETHEUS_TARGETS when both are set, else started by the
    services script (and stopped with the others if this process started it).
    """
    url, targets = os.environ.get("SEGMENTER_PROMETHEUS_URL"), os.environ.get("SEGMENTER_PROMETHEUS_TARGETS")
    if url and targets:
        return url, Path(targets)
    proc, values = _start("prometheus")
    url, targets = values.get("SEGMENTER_PROMETHEUS_URL"), values.get("SEGMENTER_PROMETHEUS_TARGETS")
    if proc.returncode != 0 or not url or not targets:
        raise RuntimeError(f"{SCRIPT} start prometheus exited {proc.returncode}:\n{_tail(proc.stderr + proc.stdout)}")
    return url, Path(targets)


def _start(*names: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """``services.sh start NAMES``: the process and the ``KEY=VALUE`` lines it printed."""
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT), "start", *names],
            cwd=REPO_ROOT,
            env=_script_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        out = getattr(exc, "stdout", None) or ""
        err = getattr(exc, "stderr", None) or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        raise RuntimeError(f"{SCRIPT} start failed: {exc}\n{_tail(out + err)}") from exc
    values: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("# started:"):
            started = line.split(":", 1)[1].split()
            _started.extend(n for n in started if n in ("kafka", "redis", "prometheus") and n not in _started)
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return proc, values


def services_started_by_us() -> bool:
    """True if ensure_services() in this process started Kafka and/or redis."""
    return bool(_started)


def stop_services() -> None:
    """Stop the services this process started (leaves pre-existing ones alone)."""
    global _cached
    if not _started:
        return
    proc = subprocess.run(
        ["bash", str(SCRIPT), "stop", *_started],
        cwd=REPO_ROOT,
        env=_script_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT} stop exited {proc.returncode}:\n{_tail(proc.stderr + proc.stdout)}")
    _started.clear()
    _cached = None
