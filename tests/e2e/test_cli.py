"""
The ``stormwall`` command line: usage errors are one line and exit 2;
``stormwall dashboards export`` writes the shipped dashboard files.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stormwall import __version__
from stormwall._cli import main
from stormwall._demo import MISSING_EXTRA
from stormwall._export import FILES


ROOT = Path(__file__).resolve().parents[2]


def _have_demo_extra():
    return all(
        importlib.util.find_spec(m) is not None
        for m in (
            "httpx",
            "prometheus_client",
            "opentelemetry.sdk",
            "structlog",
        )
    )


def _one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "" == captured.out
    assert 1 == len(lines), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("argv", "needle"),
        [
            pytest.param(["demo", "--bogus"], "--bogus", id="unknown-flag"),
            pytest.param(["frob"], "frob", id="unknown-command"),
            pytest.param(
                ["demo", "--duration", "-1"], "--duration", id="negative"
            ),
            pytest.param(["demo", "--duration", "0"], "--duration", id="zero"),
            pytest.param(["demo", "--duration", "nan"], "'nan'", id="nan"),
            pytest.param(["demo", "--duration", "inf"], "'inf'", id="inf"),
            pytest.param(
                ["demo", "--duration", "soon"], "'soon'", id="not-a-number"
            ),
            pytest.param(
                ["demo", "--duration", "1e9"], "at most", id="too-long"
            ),
            pytest.param(["demo", "--seed", "1.5"], "--seed", id="float-seed"),
            pytest.param(["demo", "--seed", "x"], "--seed", id="text-seed"),
            pytest.param(["demo", "--seed", "-3"], "--seed", id="neg-seed"),
            pytest.param(["demo", "--port", "65536"], "--port", id="port"),
            pytest.param(["demo", "--users", "0"], "--users", id="users"),
            pytest.param(["demo", "--rate", "-2"], "--rate", id="rate"),
            pytest.param(["demo", "--rate", "x"], "--rate", id="rate-text"),
            pytest.param(["demo", "--dur", "5"], "--dur", id="no-abbrev"),
        ],
    )
    def test_one_line_exit_2(self, capsys, argv, needle):
        """A bad argument is one line on stderr naming it, and exit 2."""
        status = main(argv)
        line = _one_error_line(capsys)

        assert 2 == status
        assert "error:" in line
        assert needle in line

    def test_no_command(self, capsys):
        """No command at all is a usage error too."""
        status = main([])
        line = _one_error_line(capsys)

        assert 2 == status
        assert "stormwall demo" in line

    def test_subprocess_has_no_traceback(self):
        """Through ``python -m stormwall``: one line, exit 2."""
        proc = subprocess.run(
            [sys.executable, "-m", "stormwall", "demo", "--duration", "-5"],
            capture_output=True,
            text=True,
            check=False,
        )

        assert 2 == proc.returncode
        assert 1 == len(proc.stderr.splitlines())
        assert "Traceback" not in proc.stderr


class TestInformation:
    def test_version(self, capsys):
        """--version prints the version and exits 0."""
        status = main(["--version"])

        assert 0 == status
        assert f"stormwall {__version__}\n" == capsys.readouterr().out

    def test_help(self, capsys):
        """demo --help lists the options and exits 0."""
        status = main(["demo", "--help"])
        out = capsys.readouterr().out

        assert 0 == status
        for option in ("--duration", "--seed", "--port", "--quiet"):
            assert option in out


class TestEnvironmentErrors:
    @pytest.mark.skipif(not _have_demo_extra(), reason="needs the demo extra")
    def test_port_in_use(self, capsys, monkeypatch):
        """A metrics port already in use: one line naming it, exit 2."""
        for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ):
            monkeypatch.delenv(name, raising=False)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            status = main(["demo", "--port", str(port), "--duration", "1"])
        line = _one_error_line(capsys)

        assert 2 == status
        assert f"127.0.0.1:{port}" in line
        assert "--port 0" in line

    def test_missing_extra(self):
        """Without the demo extra: the install hint in one line, exit 2."""
        code = (
            "import sys; sys.modules['httpx'] = None\n"
            "from stormwall._cli import main\n"
            "raise SystemExit(main(['demo', '--duration', '1']))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=False,
        )

        assert 2 == proc.returncode
        assert MISSING_EXTRA + "\n" == proc.stderr


def test_console_script():
    """The ``stormwall`` console script runs the same main()."""
    script = Path(sys.executable).with_name("stormwall")
    if not script.exists():
        pytest.skip("the console script is not installed in this venv")
    proc = subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert (0, f"stormwall {__version__}\n") == (proc.returncode, proc.stdout)


class TestDashboardsExport:
    def test_writes_the_repository_files(self, tmp_path, capsys):
        """export DIR writes the dashboard, the alert rules and their
        tests, and the provisioning files, equal to dashboards/, and says
        what it wrote."""
        target = tmp_path / "new" / "grafana"

        status = main(["dashboards", "export", str(target)])
        out = capsys.readouterr().out

        assert 0 == status
        written = sorted(
            p.relative_to(target).as_posix()
            for p in target.rglob("*")
            if p.is_file()
        )
        assert sorted(FILES) == written
        for name in FILES:
            assert (ROOT / "dashboards" / name).read_bytes() == (
                target / name
            ).read_bytes(), name
            assert f"wrote {target / name}" in out

    def test_refuses_to_overwrite(self, tmp_path, capsys):
        """An existing file: one line naming it and --force, exit 2, and
        nothing written (not even the files that did not exist)."""
        (tmp_path / "alerts.yml").write_text("mine\n")

        status = main(["dashboards", "export", str(tmp_path)])
        line = _one_error_line(capsys)

        assert 2 == status
        assert str(tmp_path / "alerts.yml") in line
        assert "--force" in line
        assert "mine\n" == (tmp_path / "alerts.yml").read_text()
        assert ["alerts.yml"] == [p.name for p in tmp_path.iterdir()]

    def test_force_overwrites(self, tmp_path, capsys):
        """--force replaces existing files."""
        (tmp_path / "alerts.yml").write_text("mine\n")

        status = main(["dashboards", "export", "--force", str(tmp_path)])

        assert 0 == status
        assert (ROOT / "dashboards" / "alerts.yml").read_bytes() == (
            tmp_path / "alerts.yml"
        ).read_bytes()

    @pytest.mark.parametrize(
        ("argv", "needle"),
        [
            pytest.param(["dashboards"], "export DIR", id="no-action"),
            pytest.param(["dashboards", "export"], "DIR", id="no-dir"),
            pytest.param(["dashboards", "frob"], "frob", id="bad-action"),
            pytest.param(
                ["dashboards", "export", "d", "--bogus"],
                "--bogus",
                id="bad-flag",
            ),
        ],
    )
    def test_usage_errors(self, capsys, argv, needle):
        """A missing action or DIR, or a bad flag: one line, exit 2."""
        status = main(argv)
        line = _one_error_line(capsys)

        assert 2 == status
        assert "error:" in line
        assert needle in line

    def test_dir_is_a_file(self, tmp_path, capsys):
        """DIR that is a file: one line saying so, exit 2."""
        target = tmp_path / "file"
        target.write_text("")

        status = main(["dashboards", "export", str(target)])
        line = _one_error_line(capsys)

        assert 2 == status
        assert f"{target} exists and is not a directory" in line

    def test_unwritable_dir(self, tmp_path, capsys):
        """A directory that cannot be created: one line with the reason."""
        blocker = tmp_path / "file"
        blocker.write_text("")

        status = main(["dashboards", "export", str(blocker / "sub")])
        line = _one_error_line(capsys)

        assert 2 == status
        assert "cannot write" in line

    def test_help(self, capsys):
        """dashboards export --help describes what is written."""
        status = main(["dashboards", "export", "--help"])
        out = capsys.readouterr().out

        assert 0 == status
        assert "--force" in out
        assert "provisioning" in out
