"""deploy/: the Prometheus alert rules pass ``promtool``, docker-compose.yml is valid, the image builds the core.

The tools are Debian's (``scripts/services.sh install`` installs them, and
these tests run it when one is missing). A tool that is still missing fails
the test, as a missing Kafka does: a skipped check is a check nobody runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"


def tool(name: str) -> str:
    """The path of ``name``, installed by the services script if missing; else the test fails (never skips)."""
    path = shutil.which(name)
    if path is None:
        # a clean machine: these tests may run before anything started the services (and installed it)
        subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), "install"], capture_output=True, check=False)
        path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: `scripts/services.sh install` installs it (Debian, root)", pytrace=False)
    return path


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_alert_rules_are_valid() -> None:
    proc = run(tool("promtool"), "check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 9 rules found" in proc.stdout


def test_alert_rules_fire_and_stay_quiet_as_their_tests_say() -> None:
    proc = run(tool("promtool"), "test", "rules", ALERTS_TEST.name, cwd=PROMETHEUS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_test_and_says_what_to_do() -> None:
    # no YAML parser among the dependencies: the files' layout is regular enough for patterns
    rules = re.split(r"^\s+- alert: ", ALERTS.read_text(), flags=re.MULTILINE)[1:]
    names = {r.split()[0] for r in rules}
    assert len(names) == len(rules) == 9
    cases = ALERTS_TEST.read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n", cases))
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", cases))
    assert names == fired == quiet, "each alert needs a firing and a not-firing case in alerts_test.yml"
    for r in rules:
        name = r.split()[0]
        assert re.search(r"^\s+for: \d+m$", r, re.MULTILINE), name
        assert re.search(r"^\s+severity: (page|ticket)$", r, re.MULTILINE), name
        assert re.search(r"^\s+summary: \S", r, re.MULTILINE), name
        assert re.search(r"^\s+description: >-\n\s+\S", r, re.MULTILINE), name


def services_kafka_version() -> str:
    """The Kafka version scripts/services.sh runs the tests against (its default)."""
    script = (REPO / "scripts" / "services.sh").read_text()
    found = re.search(r'^KAFKA_VERSION="\$\{SEGMENTER_KAFKA_VERSION:-([0-9][0-9.]*)\}"$', script, re.MULTILINE)
    assert found, "scripts/services.sh no longer sets KAFKA_VERSION as this test expects"
    return found.group(1)


def test_docker_compose_file_is_valid_and_runs_the_tested_kafka() -> None:
    proc = run(tool("docker-compose"), "-f", "docker-compose.yml", "config")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kafka = re.findall(r"^\s+image: apache/kafka:(\S+)$", proc.stdout, re.MULTILINE)
    assert kafka == [services_kafka_version()]


def test_prometheus_loads_the_alert_rules() -> None:
    proc = run(tool("docker-compose"), "-f", "docker-compose.yml", "config")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"deploy/prometheus/alerts\.yml:/etc/prometheus/alerts\.yml:ro$", proc.stdout, re.MULTILINE)
    # prometheus.yml names alerts.yml relative to itself; promtool checks the config and the rules it loads
    proc = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rule files found" in proc.stdout


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions, one list per stage: continuation lines joined, comments left out."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_image_runs_the_core_compiled_in_its_build() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2, [s[0] for s in stages]
    builder, final = stages
    # one base for both stages: the extension modules are built for the Python and glibc that load them
    assert builder[0] == final[0] + " AS builder", (builder[0], final[0])
    assert "COPY scripts/build_core.py ./scripts/" in builder
    assert any(i.startswith("RUN ") and "&& python scripts/build_core.py" in i for i in builder), builder
    # every package the project installs reaches the image (the editable install maps each to /app)
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = [p.rstrip("*") for p in find["include"]]
    assert packages
    for name in packages:
        assert f"COPY {name} ./{name}" in builder, name
        assert f"COPY --from=builder /app/{name} ./{name}" in final, name
    # the guard runs after the last COPY, outside the cwd (-P), so it checks what `segmenter` imports
    guard = """RUN python -P -c 'import segmenter.engine as e; assert e.__file__.endswith(".so"), e.__file__'"""
    runs = [i for i, line in enumerate(final) if line.startswith(guard)]
    copies = [i for i, line in enumerate(final) if line.startswith("COPY ")]
    assert runs and runs[0] > max(copies), final
    assert final[-2:] == ['ENTRYPOINT ["segmenter"]', 'CMD ["worker"]']


def test_the_build_context_leaves_out_host_builds() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    # a host's `make core` output (its Python, its glibc) must never reach the image
    assert "**/*.so" in ignored
    assert "build" in ignored
