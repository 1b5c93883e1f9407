"""
The ``stormwall`` command: ``demo``, ``dashboards export``, ``simulate``.

Standard library only, so ``stormwall --version`` and every usage error
work without the demo extra. Errors are one line on stderr and exit status
2, never a traceback: a command line is a user interface.
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from ._version import __version__


if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = ["main"]

_MAX_DURATION: Final = 24 * 3600.0
_MAX_USERS: Final = 10_000
_MAX_RATE: Final = 1_000.0


class _UsageError(Exception):
    """A command-line error, reported in one line."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line, no usage."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self.prog, message)


def _seconds(text: str) -> float:
    """A duration: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a finite number of seconds > 0, got {text!r}"
        )
    if value > _MAX_DURATION:
        raise argparse.ArgumentTypeError(
            f"at most {_MAX_DURATION:g} seconds, got {text!r}"
        )
    return value


def _rate(text: str) -> float:
    """Calls per second per user: finite, > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= _MAX_RATE:
        raise argparse.ArgumentTypeError(
            f"expected calls per second in (0, {_MAX_RATE:g}], got {text!r}"
        )
    return value


def _integer(low: int, high: int | None, what: str) -> type[int]:
    """An ``int`` parser bounded to ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what}, got {text!r}"
            ) from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(
                f"expected {what} {bound}, got {text!r}"
            )
        return value

    # argparse names the type in its messages from __name__.
    parse.__name__ = what
    return parse  # type: ignore[return-value]


def _parser() -> _Parser:
    parser = _Parser(
        prog="stormwall",
        description="stormwall: observable resilience for Python.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"stormwall {__version__}"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    demo = commands.add_parser(
        "demo",
        help="run a flaky upstream, protected and observed",
        description=(
            "Start a flaky HTTP upstream on loopback (healthy, degraded, "
            "outage, recovery) and call it through a stormwall pipeline "
            "(per-user token bucket, retries with jitter, circuit breaker), "
            "with Prometheus /metrics, structured logs and spans. Ends by "
            "itself and prints a summary."
        ),
        allow_abbrev=False,
    )
    demo.add_argument(
        "--duration",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds to run (default: 30); the phases scale with it",
    )
    demo.add_argument(
        "--seed",
        type=_integer(0, None, "an integer seed"),
        default=None,
        metavar="N",
        help="seed for a reproducible run (default: random, printed)",
    )
    demo.add_argument(
        "--port",
        type=_integer(0, 65535, "a TCP port"),
        default=9464,
        metavar="P",
        help="the /metrics port on 127.0.0.1 (default: 9464; 0: a free one)",
    )
    demo.add_argument(
        "--users",
        type=_integer(1, _MAX_USERS, "a number of users"),
        default=20,
        metavar="N",
        help="concurrent users, each with its own rate limit (default: 20)",
    )
    demo.add_argument(
        "--rate",
        type=_rate,
        default=5.0,
        metavar="R",
        help="calls per second per user (default: 5)",
    )
    demo.add_argument(
        "--quiet",
        action="store_true",
        help="no live status and no logs; only the URLs and the summary",
    )
    demo.add_argument(
        "--spans",
        metavar="FILE",
        default=None,
        help="write every span, one JSON object a line, to FILE ('-': "
        "stderr; thousands a second); spans also go to "
        "OTEL_EXPORTER_OTLP_ENDPOINT when it is set",
    )
    dashboards = commands.add_parser(
        "dashboards",
        help="the Grafana dashboard and Prometheus alert rules",
        description="The Grafana dashboard, the Prometheus alert rules and "
        "the Grafana provisioning files shipped with stormwall.",
        allow_abbrev=False,
    )
    actions = dashboards.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser
    )
    export = actions.add_parser(
        "export",
        help="write the dashboard, alert rules and provisioning files",
        description=(
            "Write stormwall-overview.json (the Grafana dashboard), "
            "alerts.yml and alerts_test.yml (Prometheus alert rules and "
            "their promtool tests) and provisioning/ (Grafana datasource "
            "and dashboard provisioning) into DIR, created if needed. "
            "Refuses to overwrite a file unless --force."
        ),
        allow_abbrev=False,
    )
    export.add_argument(
        "directory", metavar="DIR", type=Path, help="where to write them"
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="overwrite files that already exist",
    )
    simulate = commands.add_parser(
        "simulate",
        help="run a scenario in virtual time: summary, CSV and a figure",
        description=(
            "Run a scenario on the simulator (the real async executor "
            "against a synthetic upstream, in virtual time) and write "
            "summary.json, timeline.csv and report.png into DIR. "
            "Scenarios: occ-contention (the AWS back-off study: calls and "
            "completion time against clients for five strategies) and "
            "retry-storm (a 30 s total outage at 100 calls/s with no cure, "
            "a 10%% retry budget, a breaker, both); or --scenario-file "
            "FILE.toml for your own executor settings."
        ),
        allow_abbrev=False,
    )
    simulate.add_argument(
        "scenario",
        metavar="SCENARIO",
        nargs="?",
        choices=["occ-contention", "retry-storm"],
        help="occ-contention or retry-storm (omit with --scenario-file)",
    )
    simulate.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        required=True,
        help="where to write summary.json, timeline.csv and report.png",
    )
    simulate.add_argument(
        "--scenario-file",
        metavar="FILE",
        type=Path,
        default=None,
        help="a TOML description of traffic, upstream and executors",
    )
    simulate.add_argument(
        "--seed",
        type=_integer(0, None, "an integer seed"),
        default=None,
        metavar="N",
        help="the seed (default: 0, or the file's traffic.seed)",
    )
    simulate.add_argument(
        "--runs",
        type=_integer(1, 10_000, "a number of runs"),
        default=None,
        metavar="N",
        help="occ-contention: runs averaged per point (default: 100)",
    )
    simulate.add_argument(
        "--quiet", action="store_true", help="no progress on stderr"
    )
    return parser


def _simulate(args: argparse.Namespace) -> int:
    """``stormwall simulate``: the exit status."""
    prog = "stormwall simulate"
    if (args.scenario is None) == (args.scenario_file is None):
        sys.stderr.write(
            f"{prog}: error: give a SCENARIO (occ-contention, retry-storm) "
            "or --scenario-file FILE, not both (see stormwall simulate "
            "--help)\n"
        )
        return 2
    from ._errors import ConfigError
    from .sim._command import simulate

    try:
        written = simulate(
            args.scenario,
            args.out,
            scenario_path=args.scenario_file,
            seed=args.seed,
            runs=args.runs,
            quiet=args.quiet,
        )
    except (ImportError, ConfigError, OSError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    return 0


def _dashboards(args: argparse.Namespace) -> int:
    """``stormwall dashboards ACTION``: the exit status."""
    if args.action is None:
        sys.stderr.write(
            "stormwall dashboards: error: an action is required: "
            "stormwall dashboards export DIR (see stormwall dashboards "
            "--help)\n"
        )
        return 2
    from ._export import ExportError, export

    try:
        written = export(args.directory, force=args.force)
    except ExportError as exc:
        sys.stderr.write(f"stormwall dashboards export: error: {exc}\n")
        return 2
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``stormwall`` command line; the process exit status.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        sys.stderr.write(f"{exc.prog}: error: {exc} (see {exc.prog} --help)\n")
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    if args.command is None:
        sys.stderr.write(
            "stormwall: error: a command is required: stormwall demo, "
            "stormwall dashboards export DIR or stormwall simulate "
            "(see stormwall --help)\n"
        )
        return 2
    commands = {"dashboards": _dashboards, "simulate": _simulate}
    if args.command in commands:
        return commands[args.command](args)

    from ._demo import Options, run

    seed = secrets.randbelow(100_000) if args.seed is None else args.seed
    options = Options(
        duration=args.duration,
        seed=seed,
        port=args.port,
        quiet=args.quiet,
        users=args.users,
        rate=args.rate,
        spans=args.spans,
    )
    try:
        return run(options)
    except KeyboardInterrupt:
        sys.stderr.write("stormwall demo: interrupted\n")
        return 130
