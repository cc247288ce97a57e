"""The scenario suite as a test: every attack caught, every benign workload left alone, verdicts fast."""

from __future__ import annotations

from .searches import check_searches
from .suite import report, run_suite

# This sandbox has refused privileged containers on some days ("unable to apply caps"):
# then that one scenario is reported as refused, and its rule is proven by test_detection.
MAY_BE_REFUSED = {"privileged container"}


def test_scenario_suite(docker_client, es, test_image, tmp_path):
    result = run_suite(docker_client, es, tmp_path)
    print(report(result))  # shown with -rA, and in the failure message below
    summary = report(result) + "\nshipper log:\n" + result["shipper_log"]
    assert result["attacks"] >= 20 and result["benign"] >= 6
    assert {name for name, _ in result["refused"]} <= MAY_BE_REFUSED, summary
    assert result["recall"] == 1.0, summary
    assert result["false_positives"] == [], summary
    assert result["errors"] == [], summary
    for kind in ("process", "file"):
        assert result["latency"][kind]["median"] <= 2.0, summary

    # The Kibana searches generated from the same rules find exactly what the evaluator judged.
    assert check_searches(es, result["index"]) == []
