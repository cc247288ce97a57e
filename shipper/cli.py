"""Command line: `shipper <command>`. The one place where errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .config import Config, load_config, masked
from .errors import AccessDenied, ConfigError, Problem, ServiceUnavailable, ShipperError
from .logs import setup_logging

log = logging.getLogger("shipper")

WRITER_ROLE_HINT = ("give the shipper's user or API key the writer privileges: create_doc and auto_configure on "
                    "logs-shipper.* (and read on logs-shipper.events-*), as in the README's `Forward to an existing "
                    "cluster`")

EPILOG = """\
Configuration comes from a YAML file (-c), then SHIPPER_<SECTION>__<KEY>
environment variables, then --set flags; later layers win. Example:

  shipper setup -c shipper.yml          install templates (once per cluster)
  shipper run -c shipper.yml            ship until SIGTERM
  shipper config check -c shipper.yml --set elasticsearch.namespace=prod
  SHIPPER_ELASTICSEARCH__HOSTS=https://es1:9200,https://es2:9200 shipper config check

Options such as -c and --set go after the command. See shipper.example.yml
for every key, documented.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipper",
        description="Security log shipper for Docker hosts: container logs and events, "
        "judged by detectors, indexed into Elasticsearch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shipper {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", help="YAML configuration file")
    common.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override one key, e.g. --set elasticsearch.namespace=prod (repeatable)",
    )
    common.add_argument("--log-format", choices=["auto", "json", "text"], help="default: text on a terminal, else JSON")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def command(group, name: str, handler, help: str, description: str | None = None):
        sub = group.add_parser(name, parents=[common], help=help, description=description or help)
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help: str):
        actions = commands.add_parser(name, parents=[common], help=help).add_subparsers(dest="action", metavar="ACTION")
        actions.required = True
        return actions

    config_group = group("config", "inspect the configuration")
    check = command(
        config_group, "check", _config_check, "validate a config file and print the effective config, secrets masked",
        "Validate FILE (plus environment and --set overrides) and print the effective configuration "
        "with secrets masked. Exits 2 and lists every problem with file:line when the configuration is invalid.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="config file (default: -c FILE or built-in defaults)")

    command(
        commands, "run", _run, "watch containers, judge what they do, ship it to Elasticsearch",
        "Follow every selected container's log, the engine's events, its processes and connections "
        "(/proc), its file changes (inotify) and its resource use, audit the engine's own configuration (hourly and "
        "on every reload) and read Trivy reports dropped in sources.vulnerabilities.directory, judge each event with the Sigma rules "
        "and the detectors, and index them into logs-shipper.events-<namespace> (or send them to Logstash; "
        "alerts also to a webhook). Runs until SIGTERM/SIGINT, then flushes and checkpoints. "
        "Run `shipper setup` once first.",
    )
    setup = command(
        commands, "setup", _setup, "install index templates and the lifecycle policy (and Kibana's saved objects)",
        "Install the component and index templates for logs-shipper.events-* and logs-shipper.deadletter-*, "
        "and a lifecycle policy where the cluster has ILM. Says what the cluster lacks and what was used "
        "instead. With --kibana URL, also import the data views, saved searches and dashboard "
        "(kibana/shipper.ndjson) through Kibana's saved objects API, overwriting older versions. Safe to run again.",
    )
    setup.add_argument("--kibana", metavar="URL", help="Kibana to import the saved objects into, e.g. https://kibana:5601")
    setup.add_argument("--kibana-user", metavar="USER", default=None,
                       help="Kibana user (default: elasticsearch.username); its password from KIBANA_PASSWORD "
                            "or elasticsearch.password")
    command(
        commands, "status", _status, "ask a running shipper how it is doing",
        "Read /healthz and /metrics of the shipper running with this config (monitor.host:monitor.port). "
        "Exits 1 when it is unhealthy or not running.",
    )

    audit = command(
        commands, "audit", _audit, "audit the Docker host, its running containers and their images once",
        "Audit the Docker engine (listeners and TLS, socket permissions, daemon defaults), the configuration "
        "of every running container and its image (tag or digest, registry, age, user, HEALTHCHECK) with the "
        "same rules `shipper run` uses, and print one row per finding. Exits 1 when --fail-on is given and a "
        "finding is at least that severe, so a CI job can gate on it.",
    )
    audit.add_argument("--format", dest="output_format", choices=["table", "json", "ndjson"], default="table",
                       help="table (default), one JSON object, or one JSON finding per line")
    audit.add_argument("--fail-on", choices=["low", "medium", "high", "critical"], metavar="LEVEL",
                       help="exit 1 if any finding is LEVEL or worse (low, medium, high, critical)")
    audit.add_argument("--ship", action="store_true",
                       help="also index the audit's events into Elasticsearch, as `shipper run` would")

    spool_group = group("spool", "inspect or replay the disk spool")
    command(spool_group, "status", _spool_status, "what waits in the spool")
    command(
        spool_group, "replay", _spool_replay, "send the spool to Elasticsearch now (shipper stopped)",
        "Send every spooled batch to Elasticsearch, oldest first, and delete what was acknowledged. "
        "A running shipper replays by itself; this is for a stopped one.",
    )

    kibana_group = group("kibana", "Kibana saved objects made from the rules")
    generate = command(
        kibana_group, "generate", _kibana_generate, "write the data views, saved searches and dashboard as NDJSON",
        "Convert every built-in rule to a Lucene query with pySigma's Elasticsearch backend, scoped to the "
        "events its category judges, and write one saved search per rule, the category searches (all alerts, "
        "processes, network and scans, crypto-mining, file tampering, misconfiguration, exec sessions, "
        "host configuration, vulnerable running images, anomalies, dead letters), the data views and a dashboard "
        "to DIR/shipper.ndjson. With --check, "
        "write nothing and exit 1 if DIR/shipper.ndjson differs from what would be written.",
    )
    generate.add_argument("--out", default="kibana", metavar="DIR", help="directory (default: kibana)")
    generate.add_argument("--check", action="store_true", help="only compare with the existing file")

    rules_group = group("rules", "check Sigma rules")
    lint = command(
        rules_group, "lint", _rules_lint, "report every problem in rule files, with file:line",
        "Parse every .yml/.yaml Sigma rule under DIR (or the given files; with none, the rules `shipper run` "
        "would load) with pySigma and compile it for "
        "the live evaluator. Reports YAML errors, unknown modifiers, bad conditions, missing ids or levels "
        "and duplicate ids, each with file:line. Exits 1 if any. Warns (exit 0) about rules that load but "
        "cannot fire as written: a logsource the shipper does not produce (the rule is ignored), a field "
        "its category's events never carry (after the SigmaHQ field mapping); says where a rule with no "
        "category is routed.",
    )
    lint.add_argument("paths", nargs="*", metavar="DIR|FILE",
                      help="rule files or directories (default: what `shipper run` loads: the built-in rules "
                           "unless detection.builtin_rules is false, and detection.rules)")
    test = command(
        rules_group, "test", _rules_test, "show which events a rule matches, and why",
        "Evaluate RULE (a Sigma file) against every line of FILE.jsonl, one event document per line "
        "(ECS fields, e.g. a document's _source from Elasticsearch), and print for each whether the rule "
        "matches and which of its named detections did.",
    )
    test.add_argument("rule", metavar="RULE", help="a Sigma rule file")
    test.add_argument("--events", required=True, metavar="FILE.jsonl", help="one JSON document per line")
    return parser


def _load(args: argparse.Namespace) -> Config:
    path = getattr(args, "file", None) or args.config
    return load_config(path, overrides=args.set)


def _config_check(args: argparse.Namespace, config: Config) -> int:
    print(yaml.safe_dump(masked(config), sort_keys=False), end="")
    return 0


def _run(args: argparse.Namespace, config: Config) -> int:
    from .app import run

    return run(config)


def _setup(args: argparse.Namespace, config: Config) -> int:
    from elastic_transport import TransportError

    from .es_setup import SETUP_ROLE_HINT, run_setup
    from .sinks.elasticsearch import make_client

    if args.kibana and not args.kibana.startswith(("http://", "https://")):
        raise ConfigError([Problem(f"--kibana {args.kibana}", "", "is not an http:// or https:// URL")],
                          subject="arguments")
    client = make_client(config.elasticsearch)
    try:
        report = run_setup(client)
    except TransportError as exc:  # no answer at all (an answer with an error status is a bug to see whole)
        raise ServiceUnavailable(f"setup failed talking to {', '.join(config.elasticsearch.hosts)}: {exc}") from exc
    except Exception as exc:
        raise (_refused(exc, config, SETUP_ROLE_HINT) or exc) from exc
    print("\n".join(report.lines()))
    if args.kibana:
        import os

        from .kibana_import import import_saved_objects

        user = args.kibana_user or config.elasticsearch.username
        password = os.environ.get("KIBANA_PASSWORD") or config.elasticsearch.password
        for line in import_saved_objects(args.kibana, user, password, ca_file=config.elasticsearch.ca_file):
            print(line)
    return 0


def _refused(exc: Exception, config: Config, hint: str) -> AccessDenied | None:
    """A 401 or 403 from Elasticsearch as one line that says what to change; None for anything else."""
    from elasticsearch import AuthenticationException, AuthorizationException

    es = config.elasticsearch
    who = "the API key" if es.api_key else f"user {es.username}" if es.username else "requests without credentials"
    where = ", ".join(es.hosts)
    if isinstance(exc, AuthenticationException):
        fix = ("check elasticsearch.api_key" if es.api_key else
               "check elasticsearch.username and elasticsearch.password" if es.username else
               "set elasticsearch.username and elasticsearch.password, or elasticsearch.api_key")
        return AccessDenied(f"Elasticsearch at {where} refused the credentials of {who} (401): {fix}")
    if isinstance(exc, AuthorizationException):
        return AccessDenied(f"Elasticsearch at {where} refused {who} (403: {_reason(exc)}); {hint}")
    return None


def _reason(exc: Any) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    reason = error.get("reason") if isinstance(error, dict) else error
    return " ".join(str(reason or exc.message).split())[:400]


def _kibana_generate(args: argparse.Namespace, config: Config) -> int:
    from .kibana import OUTPUT, generate, render, saved_objects

    path = Path(args.out) / OUTPUT
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current != render(saved_objects()):
            print(f"{path} is not what `shipper kibana generate` writes: run it and commit the result", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    try:
        written = generate(Path(args.out))
    except OSError as exc:
        raise ConfigError([Problem(f"--out {args.out}", "", f"cannot write there ({exc.strerror or exc})")],
                          subject="arguments") from None
    print(f"wrote {written} ({len(saved_objects())} saved objects)")
    return 0


def _audit(args: argparse.Namespace, config: Config) -> int:
    from .audit import run_audit

    return run_audit(config, fmt=args.output_format, fail_on=args.fail_on, ship=args.ship)


def _status(args: argparse.Namespace, config: Config) -> int:
    from .status import print_status

    return print_status(config.monitor.host, config.monitor.port)


def _spool_status(args: argparse.Namespace, config: Config) -> int:
    from .private import prepare_state_directory
    from .sinks.spool import Spool

    prepare_state_directory(config.state.directory)
    status = Spool(Path(config.state.directory) / "spool", config.state.spool_max_bytes).status()
    print(f"spool {status['directory']}: {status['segments']} segments, {status['bytes']} bytes "
          f"of {status['max_bytes']}{' (FULL: sources paused)' if status['full'] else ''}")
    return 0


def _spool_replay(args: argparse.Namespace, config: Config) -> int:
    from .status import replay_spool

    return replay_spool(config)


def _rules_lint(args: argparse.Namespace, config: Config) -> int:
    from .detect.engine import BUILTIN_RULES
    from .detect.lint import routing_note, rule_warnings
    from .detect.sigma import load_rules

    if args.paths:
        paths = _existing([(p, "a Sigma rule file or a directory of them") for p in args.paths])
    else:  # what `shipper run` would load
        paths = ([BUILTIN_RULES] if config.detection.builtin_rules else []) + [Path(p) for p in config.detection.rules]
    rules, problems = load_rules(paths)
    for problem in problems:
        print(problem)
    warned = 0
    for rule in rules:
        note, warnings = routing_note(rule), rule_warnings(rule)
        if note:
            print(note)
        for warning in warnings:
            print(warning)
        warned += bool(warnings)
    count = len(problems)
    summary = (f"{len(rules)} rule{'s' * (len(rules) != 1)} loaded, {warned} with warnings, "
               f"{count} problem{'s' * (count != 1)}")
    print(summary, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def _rules_test(args: argparse.Namespace, config: Config) -> int:
    import json

    from .detect.sigma import explain, load_rules

    rule_path, events = _existing([(args.rule, "a Sigma rule file"), (args.events, "one JSON event per line")])
    rules, problems = load_rules([rule_path])
    if problems:
        raise ConfigError(problems, subject="rule")
    if not rules:
        raise ConfigError([Problem(args.rule, "", "holds no rule (a directory of no .yml?)")], subject="arguments")
    rule = rules[0]
    matched = 0
    try:
        handle = open(events, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError([Problem(args.events, "", f"cannot read it ({exc.strerror or exc})")],
                          subject="arguments") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError([Problem(f"{args.events}:{number}", "", f"not JSON: {exc.msg}")],
                                  subject="events file") from None
            hit = rule.matches(document)
            matched += hit
            parts = ", ".join(f"{name}={'yes' if ok else 'no'}" for name, ok in explain(rule, document).items())
            print(f"{args.events}:{number}: {'MATCH' if hit else 'no match'}  ({parts})")
    print(f"{rule.title}: {matched} matching event{'s' * (matched != 1)}")
    return 0


def _existing(paths: list[tuple[str, str]]) -> list[Path]:
    """The given paths, each (path, what it should be); a ConfigError naming every one that is missing."""
    missing = [Problem(p, "", f"no such file or directory (expected {expected})")
               for p, expected in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(missing, subject="arguments")
    return [Path(p) for p, _ in paths]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "auto")
    config = None
    try:
        config = _load(args)
        setup_logging(args.log_level or config.log.level, args.log_format or config.log.format)
        return args.handler(args, config)
    except ShipperError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a 401/403 from any command that talks to Elasticsearch; anything else is a bug
        refused = _refused(exc, config, WRITER_ROLE_HINT) if config is not None else None
        if refused is None:
            raise
        return _report(refused)


def _report(error: ShipperError) -> int:
    print(f"shipper: error: {error}", file=sys.stderr)
    return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
