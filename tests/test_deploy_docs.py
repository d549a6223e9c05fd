"""docs/operations.md stays in step with Settings, the alert rules and the metrics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stream.metrics import ConsumerMetrics
from stream.settings import Settings
from stream.settings_doc import (
    BEGIN_MARKER,
    END_MARKER,
    _cell,
    render_settings_table,
    replace_generated_block,
)

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = REPO / "docs" / "operations.md"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


def run_settings_doc(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.settings_doc", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_settings_reference_is_current():
    document = OPERATIONS.read_text()
    assert replace_generated_block(document, render_settings_table()) == document, (
        "docs/operations.md is out of date: run "
        "python -m stream.settings_doc --write docs/operations.md"
    )


def test_settings_table_has_every_field():
    rows = [
        line for line in render_settings_table().splitlines() if line.startswith("| `")
    ]
    names = [re.match(r"\| `(\w+)`", row).group(1) for row in rows]
    assert names == [f"ANOMALYBERT_{name.upper()}" for name in Settings.model_fields]


def test_settings_table_rows_have_four_cells():
    for row in render_settings_table().splitlines():
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == 4, row


def test_settings_table_shows_defaults():
    rows = {
        re.match(r"\| `(\w+)`", row).group(1): row
        for row in render_settings_table().splitlines()
        if row.startswith("| `")
    }
    assert "| `9108` |" in rows["ANOMALYBERT_METRICS_PORT"]
    assert "| `127.0.0.1` |" in rows["ANOMALYBERT_METRICS_HOST"]
    assert "| `true` |" in rows["ANOMALYBERT_SSL_CHECK_HOSTNAME"]
    assert "| unset |" in rows["ANOMALYBERT_SASL_PASSWORD"]
    assert "one of `PLAINTEXT`, `SSL`" in rows["ANOMALYBERT_SECURITY_PROTOCOL"]
    assert "integer, >= 0 and <= 65535" in rows["ANOMALYBERT_METRICS_PORT"]


def test_settings_table_is_machine_independent():
    # The model path default is an absolute path computed at run time.
    table = render_settings_table()
    assert str(REPO) not in table
    assert "computed:" in table


def test_table_cell_escapes_markdown():
    cell = _cell("default: <GROUP_ID>, `<code>`, <= 5 | x")
    # "<GROUP_ID>" outside a code span would render as a hidden HTML tag.
    assert cell == "default: \\<GROUP_ID>, `<code>`, <= 5 \\| x"


def test_replace_generated_block_without_markers():
    with pytest.raises(ValueError, match="no generated block"):
        replace_generated_block("# Operations\n", "| table |\n")


def test_replace_generated_block_keeps_surroundings():
    document = f"before\n{BEGIN_MARKER}\nold\n{END_MARKER}\nafter\n"
    updated = replace_generated_block(document, "| new |\n")
    assert updated == f"before\n{BEGIN_MARKER}\n\n| new |\n\n{END_MARKER}\nafter\n"
    assert replace_generated_block(updated, "| new |\n") == updated


def test_settings_doc_check_passes():
    result = run_settings_doc("--check", str(OPERATIONS))
    assert result.returncode == 0, result.stderr


def test_settings_doc_check_and_write_stale(tmp_path):
    stale = tmp_path / "operations.md"
    stale.write_text(f"# Operations\n\n{BEGIN_MARKER}\n| old |\n{END_MARKER}\n")

    check = run_settings_doc("--check", str(stale))
    assert check.returncode == 1
    assert "out of date" in check.stderr

    write = run_settings_doc("--write", str(stale))
    assert write.returncode == 0, write.stderr
    assert render_settings_table() in stale.read_text()
    assert run_settings_doc("--check", str(stale)).returncode == 0


def test_settings_doc_without_markers_fails(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# Operations\n")
    result = run_settings_doc("--check", str(plain))
    assert result.returncode == 2
    assert "no generated block" in result.stderr


def test_settings_doc_prints_table():
    result = run_settings_doc()
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_settings_table()


def test_every_alert_documented():
    with ALERTS.open() as stream:
        groups = yaml.safe_load(stream)["groups"]
    headings = set(re.findall(r"^### (\S+)$", OPERATIONS.read_text(), re.MULTILINE))
    for group in groups:
        for rule in group["rules"]:
            assert rule["alert"] in headings, f"no section for {rule['alert']}"


def test_every_metric_documented():
    text = OPERATIONS.read_text()
    for family in ConsumerMetrics().registry.collect():
        name = family.name
        if family.type == "counter":
            name += "_total"
        elif family.type == "info":
            name += "_info"
        assert f"`{name}" in text, f"{name} is not described in docs/operations.md"
