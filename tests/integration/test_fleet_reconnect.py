"""200 agents (one simulator process, real mutual TLS WebSockets) reconnecting after a
server restart spread their attempts out instead of storming the server."""

import collections
import time

from agent_harness import FleetSim
from tether_harness import wait_until

COUNT = 200
SPREAD_S = 10


def test_reconnect_attempts_are_spread_after_a_restart(make_server, tmp_path):
    server = make_server(extra_args=["--set", "enroll.rate_per_minute=100000"]).start()
    sim = FleetSim(server, tmp_path / "fleet", COUNT, restart_spread=f"{SPREAD_S}s").start()
    try:
        wait_until(lambda: sim.connected() == COUNT, timeout=180, interval=0.5,
                   what=f"{COUNT} simulated agents connected")
        restart_at_ms = time.time() * 1000
        server.stop()
        wait_until(lambda: sim.connected() < COUNT, timeout=20, interval=0.2,
                   what="the simulator to see the server go")
        server.start()
        wait_until(lambda: sim.connected() == COUNT, timeout=120, interval=0.5,
                   what=f"all {COUNT} back after the restart")
        time.sleep(1.5)  # one more report
        attempts = [a for a in sim.read_report()["attempts"] if a >= restart_at_ms]
    finally:
        sim.stop()

    per_second = collections.Counter(int((a - restart_at_ms) // 1000) for a in attempts)
    histogram = [per_second.get(s, 0) for s in range(max(per_second) + 1)]
    print(f"\nreconnect attempts per second after the restart ({len(attempts)} attempts, "
          f"{COUNT} agents, restart spread {SPREAD_S} s): {histogram}")
    assert len(attempts) >= COUNT
    fair_share = COUNT / SPREAD_S
    # Uniform over the spread: about 20 per second; a storm would put most in one second.
    assert max(histogram) <= 2.5 * fair_share, histogram
    # And the spread is really used: attempts in at least 8 of the 10 seconds.
    assert sum(1 for n in histogram[:SPREAD_S] if n > 0) >= 8, histogram
