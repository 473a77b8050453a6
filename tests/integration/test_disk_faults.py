"""A full disk under the agent's and the server's state: every write fails with a clear error
naming the file and ENOSPC, nothing partial is left (each file is the old content or the
new, no temporary files), the process keeps running, and once space is freed the operation
succeeds. The state directories live on a small tmpfs mounted for the test (root only)."""

import errno
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from agent_harness import Agent
from tether_harness import Server, wait_until

ENOSPC_TEXT = "No space left on device"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a tmpfs as a full disk needs root (CI runs as root)")


class SmallDisk:
    """A tmpfs of `size` bytes at `path`, with a filler file that takes what is left."""

    def __init__(self, path, size):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.filler = self.path / "filler"
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                               "tether-test-disk", str(self.path)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")

    def fill(self):
        """Writes the filler until the disk refuses; returns the bytes it took."""
        written = 0
        with open(self.filler, "ab", buffering=0) as f:
            chunk = b"\0" * 4096
            while True:
                try:
                    written += f.write(chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    return written

    def free(self):
        self.filler.unlink(missing_ok=True)

    def free_bytes(self, count):
        size = self.filler.stat().st_size
        os.truncate(self.filler, max(0, size - count))

    def leftovers(self):
        """Temporary files anywhere on the disk."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if ".tmp." in p.name)

    def unmount(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    disks = []

    def make(name, size):
        disk = SmallDisk(tmp_path / name, size)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.unmount()


def snapshot(directory):
    """{name: bytes} of the regular files directly in `directory`."""
    return {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}


def test_agent_on_a_full_disk(server, small_disk):
    disk = small_disk("agent-disk", "256k")
    # The agent's state directory and its config file (and so the server's settings drop-in)
    # are on the small disk.
    agent = Agent(disk.path / "agent")
    agent.conf.write_text("# empty: defaults and --set only\n")
    agent.state_dir.mkdir(mode=0o700)
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()

    # register on a full disk: refused before the server hears of the key, nothing written.
    took = disk.fill()
    proc = agent.register(token)
    print(f"[figures] filler took {took} bytes; register on the full disk: rc {proc.returncode}")
    assert proc.returncode != 0
    assert ENOSPC_TEXT in proc.stderr and "device.key" in proc.stderr, proc.stderr
    assert not any(agent.state_dir.iterdir()), sorted(agent.state_dir.iterdir())
    assert disk.leftovers() == []

    # Almost full (one page free): the key fits, the issued certificate does not. The same
    # token is accepted (the failed attempt above did not spend it); the key stays.
    disk.free_bytes(4096)
    proc = agent.register(token)
    print(f"[figures] register with one page free: rc {proc.returncode}: {proc.stderr.strip()}")
    assert proc.returncode != 0
    assert ENOSPC_TEXT in proc.stderr and "device.crt" in proc.stderr, proc.stderr
    assert sorted(p.name for p in agent.state_dir.iterdir()) == ["device.key"]
    key = (agent.state_dir / "device.key").read_bytes()
    assert disk.leftovers() == []

    # Space back: a new token (the server used the first), the same key and device id.
    disk.free()
    proc = agent.register(server.ctl("enroll-token", "create", check=True).stdout.strip())
    assert proc.returncode == 0, proc.stderr
    device_id = proc.stdout.strip()
    assert (agent.state_dir / "device.key").read_bytes() == key
    listed = json.loads(server.ctl("devices", "--json", check=True).stdout)["devices"]
    assert [d["id"] for d in listed] == [device_id]

    agent.start()
    try:
        agent.wait_connected(timeout=30)
        before = snapshot(agent.state_dir)
        status_before = json.loads(before["status.json"])

        # A settings push on a full disk: refused with the file and the reason; the agent
        # keeps running and keeps its old settings.
        disk.fill()
        path = f"/api/v1/devices/{device_id}/settings"
        status, _, body = server.admin("PUT", path, {"set": {"log.level": "debug"}})
        print(f"[figures] settings push on the full disk: HTTP {status} {body}")
        assert status != 200, body
        message = json.dumps(body)
        assert ENOSPC_TEXT in message and "50-server.conf" in message, message
        dropin = Path(str(agent.conf) + ".d") / "50-server.conf"
        assert not dropin.exists()

        # The status file cannot be rewritten either: the agent says so and runs on.
        server.stop()
        agent.wait_log("cannot write the status file", timeout=30)
        assert ENOSPC_TEXT in agent.log()
        assert agent.proc.poll() is None
        # Old or new, never partial: the status file still parses.
        assert json.loads((agent.state_dir / "status.json").read_text())["pid"] == \
            status_before["pid"]
        after = snapshot(agent.state_dir)
        for name in ("device.key", "device.crt", "enrollment.json", "trust.json"):
            assert after[name] == before[name], name
        assert disk.leftovers() == []

        # Space back: the server returns, the push succeeds.
        disk.free()
        server.start()
        agent.wait_connected(timeout=30)
        status, _, body = server.admin("PUT", path, {"set": {"log.level": "debug"}})
        # 202: the server has not seen the hello yet and pushes the settings right after it.
        assert status in (200, 202), body
        wait_until(lambda: dropin.exists() and "level = debug" in dropin.read_text(),
                   timeout=20, what="the settings drop-in written")
        assert disk.leftovers() == []
    finally:
        agent.stop()


def test_agent_certificate_renewal_on_a_full_disk(make_server, small_disk):
    # Device certificates of 12 s: the agent renews after about 8 s.
    server = make_server(extra_args=["--set", "pki.device_cert_lifetime=12s"]).start()
    disk = small_disk("agent-disk", "256k")
    agent = Agent(disk.path / "agent")
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    assert agent.register(token).returncode == 0
    agent.start()
    try:
        agent.wait_connected(timeout=30)
        cert_before = (agent.state_dir / "device.crt").read_bytes()
        disk.fill()
        agent.wait_log("certificate renewal failed", timeout=30)
        line = next(l for l in agent.log().splitlines() if "certificate renewal failed" in l)
        print(f"[figures] {line}")
        assert ENOSPC_TEXT in line and "device.crt" in line, line
        assert (agent.state_dir / "device.crt").read_bytes() == cert_before
        assert agent.proc.poll() is None
        assert disk.leftovers() == []
    finally:
        agent.stop()
        disk.free()


def test_server_on_a_full_disk(tmp_path, small_disk):
    disk = small_disk("server-disk", "1m")
    server = Server(disk.path / "state")
    (disk.path / "no-server.conf").write_text("# empty: defaults and --set only\n")
    # First start on a full disk: a clear error naming the file, nothing partial.
    disk.fill()
    server.start(wait=False)
    rc = server.wait_exit(timeout=30)
    log = server.log()
    print(f"[figures] first start on a full disk: rc {rc}: {log.splitlines()[-1:]}")
    assert rc != 0
    assert ENOSPC_TEXT in log, log
    assert disk.leftovers() == []
    for name, content in snapshot(server.state_dir).items():
        assert content, f"{name} is empty (a partial write)"

    # Space back: it starts.
    disk.free()
    server.start()
    try:
        status, _, body = server.admin("POST", "/api/v1/enroll-tokens", {})
        assert status == 201, body

        # The database on a full disk: writes fail with the reason, reads go on.
        disk.fill()
        failures = 0
        for _ in range(5):
            status, _, body = server.admin("POST", "/api/v1/enroll-tokens", {})
            if status != 201:
                failures += 1
                message = json.dumps(body)
        print(f"[figures] token creations refused on the full disk: {failures} of 5: {message}")
        assert failures > 0
        assert "full" in message, message
        assert server.proc.poll() is None
        status, _, _ = server.admin("GET", "/api/v1/devices")
        assert status == 200

        # Space back: writes work again, and nothing that was refused shows up.
        disk.free()
        status, _, body = server.admin("POST", "/api/v1/enroll-tokens", {})
        assert status == 201, body
        assert disk.leftovers() == []
    finally:
        server.stop()

    # The database is whole after all that.
    db = sqlite3.connect(str(server.state_dir / "tether.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
