"""`medview` on a machine without a display: the real entry point in a subprocess, DISPLAY, WAYLAND_DISPLAY and
QT_QPA_PLATFORM removed.  A typo, a missing path or a GUI verb must end with medview's own line on stderr and an
exit code, never with Qt's plugin text and an abort (exit 134, core dump)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is Linux's")

MEDVIEW = Path(sys.executable).with_name("medview")


def _no_core() -> None:  # the old code aborted in Qt: no core file from a test
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def headless_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(extra)
    return env


def run_headless(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    if not MEDVIEW.exists():
        pytest.skip(f"the medview entry point is not installed at {MEDVIEW}")
    return subprocess.run([str(MEDVIEW), *args], capture_output=True, text=True, timeout=timeout,
                          env=headless_env(**extra), preexec_fn=_no_core)


def one_medview_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("medview: error:"), stderr
    assert "qt." not in stderr.lower() and "Traceback" not in stderr and "plugin" not in stderr, stderr
    return lines[0]


def test_unknown_command_is_a_usage_error() -> None:
    r = run_headless("infoo")
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = one_medview_line(r.stderr)
    assert "infoo" in line and "'info'" in line  # the closest command is suggested
    r = run_headless("typo")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "typo" in one_medview_line(r.stderr)


def test_missing_path_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "path"
    for args in ((str(missing),), ("view", str(missing)), ("view", "--layout", "2x2", str(missing))):
        r = run_headless(*args)
        assert r.returncode == 3, (args, r.returncode, r.stderr)
        assert str(missing) in one_medview_line(r.stderr)


def test_view_without_display_names_the_headless_options(chest_ct_sample: Path) -> None:
    for args in (("view", str(chest_ct_sample)), (str(chest_ct_sample),), ()):
        r = run_headless(*args)
        assert r.returncode == 3, (args, r.returncode, r.stderr)
        line = one_medview_line(r.stderr)
        assert "display" in line and "QT_QPA_PLATFORM=offscreen" in line, line
        assert "--screenshot" in line and "medview render" in line, line
    r = run_headless("view", str(chest_ct_sample), QT_QPA_PLATFORM="xcb")  # a platform that needs a display
    assert r.returncode == 3 and "QT_QPA_PLATFORM=offscreen" in one_medview_line(r.stderr)


def test_errors_come_before_qt_is_imported(tmp_path: Path) -> None:
    code = ("import sys; from medview.cli.main import main; rc = main(sys.argv[1:]); "
            "print(rc, 'PySide6' in sys.modules, 'medview.qt' in sys.modules)")
    for args, expected in (([str(tmp_path / "missing.nii")], "3"), (["typo"], "2"), (["view"], "3")):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                           env=headless_env(), preexec_fn=_no_core)
        assert r.stdout.split() == [expected, "False", "False"], (args, r.stdout, r.stderr)


def test_offscreen_screenshot_still_works(chest_ct_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    r = run_headless("view", str(chest_ct_sample), "--screenshot", str(out), timeout=120,
                     QT_QPA_PLATFORM="offscreen")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_screenshot_without_display_renders_offscreen(chest_ct_sample: Path, tmp_path: Path) -> None:
    """--screenshot says it renders offscreen: with no display it picks Qt's offscreen platform itself."""
    out = tmp_path / "shot.png"
    r = run_headless("view", str(chest_ct_sample), "--screenshot", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "qt.qpa" not in r.stderr


def _free_x_display() -> int:
    return next(n for n in range(150, 400) if not Path(f"/tmp/.X11-unix/X{n}").exists())


def test_a_display_no_x_server_answers_is_one_line(chest_ct_sample: Path) -> None:
    """DISPLAY set, but nothing listens there (a stale SSH session, a stopped Xvfb): Qt aborted as before."""
    n = _free_x_display()
    for display in (f":{n}", f"127.0.0.1:{n}.0"):
        run = run_headless("view", str(chest_ct_sample), DISPLAY=display)
        assert run.returncode == 3, run.stderr
        line = one_medview_line(run.stderr)
        assert f"DISPLAY={display} cannot be reached" in line and "QT_QPA_PLATFORM=offscreen" in line


def test_a_listening_x_socket_counts_as_a_display() -> None:
    """The check itself on a socket that answers (abstract Unix socket, as X servers also listen on)."""
    import socket

    from medview.cli.main import _x11_reachable

    n = _free_x_display()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(f"\0/tmp/.X11-unix/X{n}")
        server.listen(1)
        assert _x11_reachable(f":{n}") and _x11_reachable(f":{n}.0")
    assert not _x11_reachable(f":{n}")
    with socket.create_server(("127.0.0.1", 0)) as tcp:
        port = tcp.getsockname()[1]
        if port > 6000:
            assert _x11_reachable(f"127.0.0.1:{port - 6000}")
