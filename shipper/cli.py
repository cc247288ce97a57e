"""Command line: `shipper <command>`. The one place where errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from . import __version__
from .config import Config, load_config, masked
from .errors import ShipperError
from .logs import setup_logging

log = logging.getLogger("shipper")

EPILOG = """\
Configuration comes from a YAML file (-c), then SHIPPER_<SECTION>__<KEY>
environment variables, then --set flags; later layers win. Example:

  shipper -c shipper.yml --set elasticsearch.namespace=prod config check
  SHIPPER_ELASTICSEARCH__HOSTS=https://es1:9200,https://es2:9200 shipper config check

See shipper.example.yml for every key, documented.
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

    config_cmd = commands.add_parser("config", help="inspect the configuration", parents=[common])
    config_sub = config_cmd.add_subparsers(dest="action", metavar="ACTION")
    config_sub.required = True
    check = config_sub.add_parser(
        "check", parents=[common],
        help="validate a config file and print the effective config, secrets masked",
        description="Validate FILE (plus environment and --set overrides) and print the "
        "effective configuration with secrets masked. Exits 2 and lists every problem "
        "with file:line when the configuration is invalid.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="config file (default: -c FILE or built-in defaults)")
    check.set_defaults(handler=_config_check)
    return parser


def _load(args: argparse.Namespace) -> Config:
    path = getattr(args, "file", None) or args.config
    return load_config(path, overrides=args.set)


def _config_check(args: argparse.Namespace, config: Config) -> int:
    print(yaml.safe_dump(masked(config), sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "auto")
    try:
        config = _load(args)
        setup_logging(args.log_level or config.log.level, args.log_format or config.log.format)
        return args.handler(args, config)
    except ShipperError as exc:
        print(f"shipper: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
