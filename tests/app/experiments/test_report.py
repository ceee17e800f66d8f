"""The report writer: Markdown with the numbers, PNG plots, JSON verdicts that read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.experiments.audit import AuditVerdict, audit_bias
from app.experiments.gate import evaluate, with_audit
from app.experiments.report import write_report
from app.experiments.settings import BiasAuditSettings, ExperimentSettings
from app.experiments.verdict import GateVerdict
from tests.app.experiments.feeds import hide_french_creators, served_frames
from tests.app.experiments.outcomes import simulate_users

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_holds_the_verdict_the_audit_and_their_plots(tmp_path: Path) -> None:
    users, pre = simulate_users(np.random.default_rng(1), 20_000, 0.2, ctr_lift=0.1)
    verdict = evaluate(users, pre=pre, settings=ExperimentSettings(), canary_share=0.2)
    audit = audit_bias(*served_frames(hide_french_creators), settings=BiasAuditSettings())
    final = with_audit(verdict, audit)
    files = write_report(tmp_path / "run-1", verdict=final, audit=audit, title="Canary run-1")

    text = files.markdown.read_text()
    assert text.startswith("# Canary run-1")
    assert "## Verdict: **reject**" in text and "bias audit failed" in text
    assert f"| canary | {final.arms.canary:,} |" in text
    ctr = final.metric("ctr")
    assert f"{ctr.cuped_variance_reduction:.1%}" in text and f"{ctr.p_value:.3g}" in text
    assert "## Bias audit: **failed**" in text
    assert "| language=fr | creator_language=fr |" in text
    assert "![metrics](metrics.png)" in text and "![audit_category](audit_category.png)" in text

    names = sorted(p.name for p in files.plots)
    assert names == [
        "audit_category.png",
        "audit_content_type.png",
        "audit_creator_language.png",
        "audit_creator_tier.png",
        "metrics.png",
    ]
    for plot in files.plots:
        assert plot.read_bytes()[:8] == PNG and plot.stat().st_size > 5_000
    assert GateVerdict.model_validate_json(files.verdict_json.read_text()) == final
    assert AuditVerdict.model_validate_json(files.audit_json.read_text()) == audit


def test_an_invalid_run_still_gets_a_report(tmp_path: Path) -> None:
    users, _ = simulate_users(np.random.default_rng(2), 5_000, 0.2)
    verdict = evaluate(users, settings=ExperimentSettings(), canary_share=0.05)
    files = write_report(tmp_path, verdict=verdict)
    assert verdict.decision == "invalid"
    assert "sample-ratio mismatch" in files.markdown.read_text()
    assert files.plots == [] and files.audit_json is None
