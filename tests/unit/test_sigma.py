"""The live Sigma evaluator and the rule loader, on rules written here."""

import textwrap
from pathlib import Path


from shipper.cli import main
from shipper.detect.sigma import load_rules
from shipper.model import Severity

RULE = """\
title: {title}
id: {id}
status: test
description: test rule
level: high
logsource: {{product: docker}}
tags: [attack.execution, attack.t1059.004]
detection:
{detection}
"""
IDS = ["7a3c6f0e-0000-4000-8000-00000000000%d" % i for i in range(10)]


def rule(tmp_path: Path, detection: str, name: str = "r.yml", rule_id: str = IDS[0], title: str = "t") -> Path:
    path = tmp_path / name
    path.write_text(RULE.format(title=title, id=rule_id, detection=textwrap.indent(textwrap.dedent(detection), "  ")))
    return path


def matcher(tmp_path, detection):
    rules, problems = load_rules([rule(tmp_path, detection)])
    assert problems == []
    return rules[0].matches


def test_modifiers_wildcards_lists_and_nesting(tmp_path):
    matches = matcher(tmp_path, """
        sel_name:
          process.name: [nc, 'ncat*']
        sel_args:
          process.command_line|contains|all: [' -e ', /bin/sh]
        condition: all of sel_*
    """)
    reverse = {"process": {"name": "NCAT.exe", "command_line": "ncat 127.0.0.1 4444 -e /bin/sh"}}
    assert matches(reverse)
    assert not matches({"process": {"name": "ncat", "command_line": "ncat -l 8080"}})
    assert not matches({"process": {"name": "bash", "command_line": "x -e /bin/sh"}})
    assert not matches({})


def test_startswith_endswith_re_cidr_numbers_exists(tmp_path):
    matches = matcher(tmp_path, """
        exe:
          process.executable|startswith: [/tmp/, /dev/shm/]
        lib:
          file.path|endswith: .so
        miner:
          process.command_line|re: 'stratum\\+tcp://[^ ]+:(3333|4444)'
        net:
          destination.ip|cidr: 127.0.0.0/8
          destination.port|gte: 3333
        has_hash:
          file.hash.sha256|exists: true
        condition: exe or lib or miner or net or has_hash
    """)
    assert matches({"process": {"executable": "/tmp/x"}})
    assert matches({"file": {"path": "/usr/lib/evil.SO"}})
    assert matches({"process": {"command_line": "xmrig -o stratum+tcp://pool:3333"}})
    assert not matches({"process": {"command_line": "xmrig -o stratum+tcp://pool:8080"}})
    assert matches({"destination": {"ip": "127.0.0.1", "port": 4444}})
    assert not matches({"destination": {"ip": "127.0.0.1", "port": 80}})
    assert not matches({"destination": {"ip": "10.0.0.1", "port": 4444}})
    assert matches({"file": {"hash": {"sha256": "ab"}}})
    assert not matches({"file": {"path": "/etc/passwd"}})


def test_keywords_search_the_message_and_not_negates(tmp_path):
    matches = matcher(tmp_path, """
        keywords:
          - 'Nmap scan report'
          - 'SYN Stealth Scan'
        trusted:
          container.image.name|startswith: 'scanner/'
        condition: keywords and not trusted
    """)
    assert matches({"message": "Starting... nmap scan report for 127.0.0.1"})
    assert not matches({"message": "Nmap scan report", "container": {"image": {"name": "scanner/nmap"}}})
    assert not matches({"message": "nothing here"})


def test_lists_in_documents_match_any_element(tmp_path):
    matches = matcher(tmp_path, """
        sel:
          container.security.capabilities: SYS_ADMIN
        condition: sel
    """)
    assert matches({"container": {"security": {"capabilities": ["NET_ADMIN", "SYS_ADMIN"]}}})
    assert not matches({"container": {"security": {"capabilities": ["CHOWN"]}}})


def test_rule_metadata(tmp_path):
    rules, _ = load_rules([rule(tmp_path, "sel: {a: 1}\ncondition: sel", title="Reverse shell")])
    assert (rules[0].title, rules[0].severity, rules[0].techniques) == ("Reverse shell", Severity.HIGH, ("T1059.004",))
    assert rules[0].tactics == ("execution",)


def test_lint_reports_every_problem_with_file_and_line(tmp_path, capsys):
    broken = tmp_path / "broken.yml"
    broken.write_text("title: broken\nid: " + IDS[1] + "\ndetection:\n  sel: [unclosed\n  condition: sel\n")
    rule(tmp_path, "sel:\n  process.name|containz: nc\ncondition: sel", name="modifier.yml", rule_id=IDS[2])
    rule(tmp_path, "sel: {process.name: nc}\ncondition: sel", name="a.yml", rule_id=IDS[3])
    rule(tmp_path, "sel: {process.name: ncat}\ncondition: sel", name="b.yml", rule_id=IDS[3])
    _, problems = load_rules([tmp_path])
    found = sorted(str(p) for p in problems)
    assert len(found) == 3, found
    assert found[0].startswith(f"{tmp_path / 'b.yml'}:2: id: duplicate rule id {IDS[3]}")
    assert found[1].startswith(f"{broken}:") and "not valid YAML" in found[1]
    assert found[2].startswith(f"{tmp_path / 'modifier.yml'}:10:") and "containz" in found[2]

    assert main(["rules", "lint", str(tmp_path)]) == 1
    err = capsys.readouterr()
    assert "3 problems" in err.out + err.err
    assert "containz" in err.out + err.err


def test_lint_passes_a_clean_directory(tmp_path, capsys):
    rule(tmp_path, "sel: {process.name: nc}\ncondition: sel")
    assert main(["rules", "lint", str(tmp_path)]) == 0
    assert "1 rule" in capsys.readouterr().out


def test_rules_test_shows_matches_and_why(tmp_path, capsys):
    path = rule(tmp_path, """
        selection:
          process.name: nc
        filter:
          user.name: backup
        condition: selection and not filter
    """)
    events = tmp_path / "events.jsonl"
    events.write_text('{"process": {"name": "nc"}}\n{"process": {"name": "nc"}, "user": {"name": "backup"}}\n\n{"process": {"name": "ls"}}\n')
    assert main(["rules", "test", str(path), "--events", str(events)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{events}:1: MATCH  (selection=yes, filter=no)"
    assert out[1] == f"{events}:2: no match  (selection=yes, filter=yes)"
    assert out[2] == f"{events}:4: no match  (selection=no, filter=no)"
    assert out[3] == "t: 1 matching event"


def test_rules_test_names_a_bad_event_line(tmp_path, capsys):
    path = rule(tmp_path, "sel: {process.name: nc}\ncondition: sel")
    events = tmp_path / "events.jsonl"
    events.write_text('{"process": {"name": "nc"}}\n{not json\n')
    assert main(["rules", "test", str(path), "--events", str(events)]) == 2
    assert f"{events}:2: not JSON" in capsys.readouterr().err


def test_value_lists_on_one_field_match_like_their_values_one_by_one(tmp_path):
    """A value list is compiled into one set/prefix/suffix/substring test; mixed with
    `?` it falls back to the general path. Both must agree with the Sigma meaning."""
    fast = matcher(tmp_path, """
      sel:
        process.name: [nc, 'py*', '*sh', '*mine*']
      condition: sel""")
    slow = matcher(tmp_path, """
      sel:
        process.name: [nc, 'py*', '*sh', '*mine*', 'x?z']
      condition: sel""")
    for name, expected in [("NC", True), ("python3", True), ("bash", True), ("xmrminer", True),
                           ("ncat", False), ("shell", False), ("", False), (5, False)]:
        doc = {"process": {"name": name}}
        assert fast(doc) is expected, name
        assert slow(doc) is expected, name
    assert fast({"process": {"name": ["ls", "zsh"]}}) and not fast({"process": {}})
    assert slow({"process": {"name": "xyz"}}) and not fast({"process": {"name": "xyz"}})
