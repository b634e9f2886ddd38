"""The README's guide for a first segment and its metric list say what the code does.

The metric list is generated (``segmenter metrics --markdown``) and must equal the registry, so it cannot
drift; the guide's files pass their own tests and the figures it quotes are what the commands print.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streams.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
GUIDE = ROOT / "examples" / "guide"


def _metric_block() -> str:
    found = re.search(r"<!-- metrics:begin -->\n(.*?)<!-- metrics:end -->", README, re.S)
    assert found, "README: the metric list's markers are missing"
    return found.group(1)


def test_the_readme_metric_list_is_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)]
    listed = re.findall(r"^\| `([a-z0-9_]+)` \|", _metric_block(), re.M)
    assert listed == names
    assert main(["metrics", "--markdown"]) == 0
    assert _metric_block() == capsys.readouterr().out, "regenerate it: segmenter metrics --markdown"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_guide_files_pass_their_own_tests(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(GUIDE / version)]) == 0
    assert main(["test", str(GUIDE / version)]) == 0
    assert "1 passed" in capsys.readouterr().out


def test_the_guide_shows_the_file_and_the_diff_it_gets(capsys: pytest.CaptureFixture[str]) -> None:
    v1 = (GUIDE / "v1" / "win_back.yaml").read_text()
    for field in ("name", "kind", "version", "description", "when", "reason"):
        line = re.search(rf"^{field}: .*$", v1, re.M)
        assert line and line.group(0) in README, f"README's guide shows another {field} than the file"
    sample = ROOT / "data" / "sample" / "online_retail_sample.jsonl.gz"
    rules = ROOT / "data" / "sample" / "online_retail.rules.toml"
    args = ["diff", "--from", str(GUIDE / "v1"), "--to", str(GUIDE / "v2"), str(sample), "--rules", str(rules)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    shown = [x for x in out if x.startswith(("  from:", "  to:", "444 customers"))]
    assert len(shown) == 3
    for line in shown:
        assert line.replace(str(GUIDE), "examples/guide") in README
    assert out[5].startswith("  only with --to:") and out[5] in README
