"""checkov on terraform/: zero failed checks, and every skip carries a reason.

checkov runs from its own venv (tests/terraform/checkov.sh creates .venv-checkov when missing)
because it vendors a python-hcl2 fork that would break the project's. The conftest fixture starts
it in the background so it overlaps the moto apply.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.terraform

# A reason a reviewer can weigh: more than a couple of words.
MIN_REASON_CHARS = 40


def _load(job):
    result = job.result()
    report = job.out_path.parent / "results_json.json"
    if not report.exists():
        if "pip" in result.stdout and result.returncode != 0:
            pytest.skip(f"checkov could not be installed into .venv-checkov:\n{result.stdout[-2000:]}")
        pytest.fail(f"checkov wrote no report (exit {result.returncode}):\n{result.stdout[-3000:]}", pytrace=False)
    data = json.loads(report.read_text())
    reports = data if isinstance(data, list) else [data]
    return [r for r in reports if r.get("check_type") == "terraform"]


def test_checkov_has_no_failures(checkov_job):
    reports = _load(checkov_job)
    assert reports, "checkov produced no terraform report"
    failed = [c for r in reports for c in r["results"].get("failed_checks", [])]
    passed = sum(len(r["results"].get("passed_checks", [])) for r in reports)
    assert passed > 100, f"checkov passed only {passed} checks: did it parse terraform/?"
    assert not failed, "checkov failures:\n" + "\n".join(
        f"  {c['check_id']} {c['check_name']}\n    {c['resource']} ({c['file_path']}:{c['file_line_range']})"
        for c in failed)


def test_every_checkov_skip_has_a_reason(checkov_job):
    reports = _load(checkov_job)
    skipped = [c for r in reports for c in r["results"].get("skipped_checks", [])]
    weak = [c for c in skipped
            if len((c.get("check_result") or {}).get("suppress_comment", "").strip()) < MIN_REASON_CHARS]
    assert not weak, "checkov skips without a real reason:\n" + "\n".join(
        f"  {c['check_id']} on {c['resource']}: {c['check_result'].get('suppress_comment')!r}" for c in weak)
