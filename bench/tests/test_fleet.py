"""bench/fleet: the load generator's own checks (--self-test: argument and duration parsing,
source ranges, WebSocket framing, envelopes), its refusal of bad arguments, and the driver's
arithmetic (count plan under an fd limit, attempts per second, storm shape), and its enroll
command against a real tether-server."""

import json
import subprocess

import pytest

from benchtest import load_driver, program

fleet = load_driver("fleet")


def generator():
    return str(program("tether-bench-fleet"))


def test_generator_self_test_passes():
    proc = subprocess.run([generator(), "--self-test"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "self-test ok" in proc.stdout


@pytest.mark.parametrize("args", [
    [],
    ["fly"],
    ["run", "--bogus", "1"],
    ["run", "--connect"],
    ["run", "--connect", "127.0.0.1:0", "--dry-run"],
    ["run", "--connect", "127.0.0.1:8443", "--sources", "127.0.0.9-127.0.0.2", "--dry-run"],
    ["run", "--connect", "127.0.0.1:8443", "--restart-spread", "10", "--dry-run"],
    ["enroll", "--server", "127.0.0.1:8443"],
])
def test_generator_refuses_bad_arguments(args):
    proc = subprocess.run([generator(), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)


def test_generator_parses_its_configuration():
    proc = subprocess.run([generator(), "run", "--connect", "127.0.0.1:8443", "--sources",
                           "127.0.0.2-127.0.0.4,127.0.0.9", "--inflight", "64",
                           "--restart-spread", "1.5s", "--backoff-cap", "2m", "--dry-run"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    assert cfg["port"] == 8443
    assert cfg["sources"] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"]
    assert cfg["inflight"] == 64
    assert cfg["restart_spread_ms"] == 1500
    assert cfg["backoff_cap_ms"] == 120000


def test_plan_follows_the_fd_limit():
    assert fleet.plan(False, 1_048_576) == ([10_000, 100_000], 100_000, None)
    checkpoints, largest, note = fleet.plan(False, 20_000)
    assert (checkpoints, largest) == ([10_000, 19_744], 19_744)
    assert "RLIMIT_NOFILE" in note
    assert fleet.plan(True, 1_048_576) == ([2_000], 2_000, None)
    assert fleet.plan(False, 5_256)[:2] == ([5_000], 5_000)


def test_attempts_per_second_from_cumulative_stats():
    stats = [{"t_ms": 0, "attempts": 0}, {"t_ms": 500, "attempts": 10},
             {"t_ms": 1000, "attempts": 30}, {"t_ms": 1500, "attempts": 30},
             {"t_ms": 3000, "attempts": 35}]
    assert fleet.attempts_per_second(stats) == [(0, 10), (1, 20), (2, 0), (3, 5)]
    assert fleet.attempts_per_second([]) == []
    assert fleet.storm_shape([(0, 10), (1, 20)], width=2) == "10 20 (per s, 1-s slices)"
    assert fleet.per_connection_kb(12_000, 2_000, 1_000) == 10.0
    assert fleet.per_connection_kb(12_000, 2_000, 0) is None


def test_enrollment_by_several_workers_against_a_real_server(tmp_path):
    """The enroll command against tether-server: every identity is a distinct device the
    server knows, with a certificate from its CA; a second run with a larger count adds only
    the missing ones (kept-alive connections, four workers)."""
    from tether_harness import Server  # tests/integration: on the path through benchlib

    state = tmp_path / "server"
    state.mkdir(mode=0o700)
    server = Server(state, extra_args=["--set", "enroll.rate_per_minute=100000"]).start()
    ids = tmp_path / "identities.txt"
    try:
        def enroll(count):
            proc = subprocess.run(
                [generator(), "enroll", "--server", f"127.0.0.1:{server.port}", "--ca-file",
                 str(server.ca_file), "--admin-token", str(server.token_file), "--identities",
                 str(ids), "--count", str(count), "--jobs", "4"],
                capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout.strip().splitlines()[-1])

        first = enroll(10)
        assert first["new"] == 10 and first["jobs"] == 4
        second = enroll(13)
        assert second["new"] == 3 and second["have"] == 13
        assert not list(tmp_path.glob("identities.txt.part*"))
        lines = ids.read_text().splitlines()
        device_ids = {line.split()[0] for line in lines}
        assert len(lines) == 13 and len(device_ids) == 13
        listed = json.loads(server.ctl("devices", "--json", check=True).stdout)["devices"]
        assert {d["id"] for d in listed} == device_ids
        for n, line in enumerate(lines[:3]):
            der, pem = tmp_path / f"c{n}.der", tmp_path / f"c{n}.pem"
            der.write_bytes(bytes.fromhex(line.split()[2]))
            subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(der), "-out",
                            str(pem)], check=True, capture_output=True)
            verify = subprocess.run(["openssl", "verify", "-CAfile", str(server.ca_file),
                                     str(pem)], capture_output=True, text=True)
            assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr
    finally:
        server.stop()
