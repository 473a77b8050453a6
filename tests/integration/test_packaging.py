"""The packaging's pieces against the built binaries: the default configuration files are
accepted as they ship, and the systemd units pass `systemd-analyze verify` and keep their
exposure limits (packaging/check-units) with the binaries and man pages where the packages
put them.

Building the .debs, lintian and the install test (debootstrap + systemd-nspawn) are
`scripts/package --check --install-test`, too slow for every run of the suite; set
TETHER_PACKAGE_TEST=1 to run them here as well.
"""

import os
import shutil
import subprocess
import time

import pytest

from tether_harness import REPO, Server, bin_dir, free_port

PACKAGING = REPO / "packaging"


def test_shipped_server_conf_is_accepted(tmp_path):
    # The harness passes -c <state dir's parent>/no-server.conf: make that the shipped file.
    shutil.copy(PACKAGING / "config" / "server.conf", tmp_path / "no-server.conf")
    server = Server(tmp_path / "state").start()
    try:
        assert "server.conf" not in server.log()
    finally:
        assert server.stop() == 0


def test_shipped_agent_conf_is_accepted(tmp_path):
    proc = subprocess.run(
        [str(bin_dir() / "tether-agent"), "-c", str(PACKAGING / "config" / "agent.conf"),
         "--state-dir", str(tmp_path / "agent"), "status"],
        capture_output=True, text=True, timeout=30)
    # status reads the state even when the configuration is bad, after saying so.
    assert "agent.conf" not in proc.stderr, proc.stderr


def test_shipped_gateway_conf_is_accepted(tmp_path):
    # Without a join token the gateway cannot start (exit 1); a configuration it does not
    # accept is a usage error (exit 2) naming the file.
    proc = subprocess.run(
        [str(bin_dir() / "tether-gateway"), "-c", str(PACKAGING / "config" / "gateway.conf"),
         "--state-dir", str(tmp_path / "gateway"), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "gateway.conf" not in proc.stderr, proc.stderr
    assert "has not joined" in proc.stderr, proc.stderr


def installed_tree(root):
    """The files the units refer to, where the packages install them (debian/*.install)."""
    layout = {
        "usr/sbin": ["tether-agent", "tether-server", "tether-gateway"],
        "usr/bin": ["tetherctl"],
        "usr/libexec/tether": ["tether-vnc", "tether-shadow-ui"],
    }
    for directory, names in layout.items():
        (root / directory).mkdir(parents=True)
        for name in names:
            shutil.copy(bin_dir() / name, root / directory / name)
    units = root / "lib/systemd/system"
    units.mkdir(parents=True)
    for unit in (PACKAGING / "systemd").glob("*.service"):
        shutil.copy(unit, units / unit.name)
    for page in (REPO / "docs/man").iterdir():
        section = root / "usr/share/man" / f"man{page.suffix[1:]}"
        section.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, section / page.name)


def test_units_verify_and_keep_their_exposure_limits(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("packaging/check-units needs root (a mount namespace with an overlay on /usr)")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    installed_tree(tmp_path / "root")
    proc = subprocess.run([str(PACKAGING / "check-units"), str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=120)
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for unit in ("tether-agent", "tether-server", "tether-gateway"):
        assert f"verify   {unit}.service: OK" in proc.stdout
        assert f"security {unit}.service: exposure" in proc.stdout


def test_debian_packages_build_lint_and_install():
    if os.environ.get("TETHER_PACKAGE_TEST") != "1":
        pytest.skip("builds the .debs and boots a Debian 12 container (many minutes): "
                    "set TETHER_PACKAGE_TEST=1, or run scripts/package --check --install-test")
    start = time.monotonic()
    proc = subprocess.run([str(REPO / "scripts/package"), "--check", "--install-test", "-j2"],
                          capture_output=True, text=True, timeout=3600)
    print(proc.stdout + proc.stderr)
    print(f"scripts/package took {time.monotonic() - start:.0f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "install test: passed" in proc.stdout, "the install test did not run: " + proc.stdout
