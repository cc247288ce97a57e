"""SigmaHQ's linux rules as written (SigmaHQ/sigma 8eaafff, ../shared/corpora/sigmahq/): they load,
lint says honestly which cannot fire here, and each process, file and network rule matches an
event derived from its own condition in our document format, and not a near miss of it (see
tests/sigma_derivation.py for how events are derived and confirmed).
"""

from __future__ import annotations

import re

import pytest

from shipper.cli import main
from shipper.detect.engine import RulesEngine, route
from shipper.detect.lint import rule_warnings
from shipper.detect.sigma import load_rules
from shipper.kibana import rule_query
from shipper.model import Event
from tests.sigma_derivation import BASE, CATEGORIES, CORPUS, derive, judged_rules, rule_holds

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"SigmaHQ corpus not found at {CORPUS}")
SYSMON_NAMES = {"Image", "CommandLine", "ParentImage", "ParentCommandLine", "User", "CurrentDirectory",
                "TargetFilename", "DestinationIp", "DestinationPort", "DestinationHostname", "Initiated"}


@pytest.fixture(scope="module")
def loaded():
    rules, problems = load_rules([CORPUS])
    assert problems == []
    return rules


# ------------------------------------------------------------------ loading, routing, lint


def test_every_linux_rule_loads_and_is_routed_or_ignored(loaded):
    assert len(loaded) == len(list(CORPUS.rglob("*.yml")))
    judged = judged_rules(loaded)
    assert len(judged) == 135
    assert all(route(rule) == rule.sigma.logsource.category for rule in judged)
    uncategorised = [rule for rule in loaded if rule.sigma.logsource.category is None]
    for rule in uncategorised:
        if rule.sigma.logsource.service is not None:  # auditd, sshd, syslog...: not produced here
            assert route(rule) is None, rule.path
    assert {route(rule) for rule in uncategorised} == {None, "container_log"}
    engine = RulesEngine.from_paths([CORPUS])  # rules without a category used to crash this
    assert len(engine.rules) == len(loaded) + len(RulesEngine.from_paths([]).rules) - sum(
        route(rule) is None for rule in loaded)


def test_mapped_rules_name_only_our_fields(loaded):
    for rule in judged_rules(loaded):
        query = rule_query(rule)  # the Kibana search is made from the same mapped rule
        for name in SYSMON_NAMES:
            assert not re.search(rf"(^|[\s(]){name}:", query), (rule.path.name, query)


def test_lint_warns_about_what_cannot_fire_here(loaded, capsys):
    judged = judged_rules(loaded)
    warned = {rule.path.name: [str(w) for w in rule_warnings(rule)] for rule in judged if rule_warnings(rule)}
    # fields no event of the category carries: a hostname, a file event's process (inotify does not say who
    # wrote); LogonId is the login uid, which process events carry (shipper.process.login_uid)
    assert set(warned) == {
        "net_connection_lnx_crypto_mining_indicators.yml", "net_connection_lnx_domain_localtonet_tunnel.yml",
        "net_connection_lnx_ngrok_tunnel.yml",
        "file_event_lnx_persistence_sudoers_files.yml", "file_event_lnx_wget_download_file_in_tmp_dir.yml"}
    assert all(":" in w.split(" ")[0] for ws in warned.values() for w in ws)  # file:line
    share = 1 - len(warned) / len(judged)
    print(f"SigmaHQ process/file/network rules without a lint warning: {len(judged) - len(warned)}/{len(judged)} "
          f"= {share:.1%}")
    assert share >= 0.95
    auditd = next(rule for rule in loaded if rule.sigma.logsource.service == "auditd")
    assert "ignored" in str(rule_warnings(auditd)[0])
    assert main(["rules", "lint", str(CORPUS)]) == 0  # warnings are not errors
    out = capsys.readouterr().out
    assert "no logsource category: its keywords are searched in container log lines" in out
    assert "the shipper produces no linux/-/auditd events; the rule is ignored" in out


def test_each_rule_matches_its_derived_event_and_not_its_near_miss(loaded):
    engine = RulesEngine.from_paths([CORPUS])  # with the built-in rules, as a user would run it
    judged = judged_rules(loaded)
    underivable, wrong, derived = [], [], []
    for rule in judged:
        category = rule.sigma.logsource.category
        positive = derive(rule, True, BASE[category])
        # the near miss: the positive event with the fewest changes that make the condition false
        negative = derive(rule, False, positive) if positive is not None else None
        if positive is None or negative is None:
            underivable.append(rule.path.name)
            continue
        derived += [(category, positive), (category, negative)]
        for doc, expected in ((positive, True), (negative, False)):
            event = Event("e", "2026-11-29T00:00:00Z", CATEGORIES[category], doc)
            fired = {verdict.rule_id for verdict in engine.judge(event).verdicts}
            if (rule.id in fired) is not expected or rule.matches(doc) is not expected:
                wrong.append((rule.path.name, expected, doc))
    assert wrong == []
    assert underivable == []
    # and every other rule of the category fires on these events exactly when the reference says
    ids = {rule.id for rule in judged}
    for category, doc in derived:
        fired = {v.rule_id for v in engine.judge(Event("e", "2026-11-29T00:00:00Z", CATEGORIES[category], doc)).verdicts}
        expected = {rule.id for rule in judged if rule.sigma.logsource.category == category and rule_holds(rule, doc)}
        assert fired & ids == expected, doc
    print(f"{len(judged)} SigmaHQ rules: each matched its derived event and not its near miss; "
          f"{len(derived)} derived events judged by every rule of their category as the reference does")
