"""The integration fixtures fail under CI=true when a service is missing, and skip otherwise."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
CONFTEST = (Path(__file__).parents[1] / "conftest.py").read_text()


@pytest.fixture
def guarded(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_needs_es="def test_needs_es(es):\n    pass\n")
    monkeypatch.setenv("ES_URL", "http://127.0.0.1:1")
    return pytester


def test_missing_elasticsearch_fails_under_ci(guarded, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true and the test bed is incomplete: Elasticsearch at http://127.0.0.1:1 is not reachable*"])


def test_missing_elasticsearch_skips_outside_ci(guarded, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*Elasticsearch at http://127.0.0.1:1 is not reachable*scripts/testbed.sh up*"])
