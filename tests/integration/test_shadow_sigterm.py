"""SIGTERM during a shadow session, with the real pieces (Xvfb, tether-server, tether-agent,
tether-vnc, tether-shadow-ui) and a WebSocket viewer on the relay: to the agent, and to the
server. Each time everything closes with a reason — the viewer's close frame (code and
reason), the audit row's end reason, a line in the agent's log — the helpers (tether-vnc and
the tether-shadow-ui indicator) are gone, by pid and by process group, within seconds, and the
display holds none of our windows.

test_shadow_agent.py::test_each_way_of_ending_is_clean covers the other ways of ending (and
the agent's SIGTERM through tetherctl shadow, by audit row); test_shadow_relay.py covers the
server stopping with a fake device. This adds the close frames, process groups, windows and
the real agent behind a server that stops."""

import asyncio
import os
import time

import pytest
import websockets

from fake_device import viewer_connect
from test_shadow_agent import BLUE, Rig, helpers_on, hex_colour, need
from tether_harness import wait_until
from vnc_harness import Xvfb

HELPER_NAMES = ("tether-vnc", "tether-shadow-ui")


@pytest.fixture
def display():
    need("Xvfb", "xdotool", "xsetroot", "xdpyinfo")
    x = Xvfb(width=640, height=480).start()
    x.solid(hex_colour(BLUE))
    yield x
    x.stop()


def helpers(display):
    """{pid: (name, process group)} of our helpers on `display`."""
    found = {}
    for pid in helpers_on(display):
        try:
            name = os.path.basename(open(f"/proc/{pid}/cmdline").read().split("\0")[0])
            found[pid] = (name, os.getpgid(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def process_state(pid):
    """(state letter, process group) of `pid` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return fields[0], int(fields[2])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def alive(pid):
    state = process_state(pid)
    return state is not None and state[0] != "Z"  # a zombie has exited


def group_alive(pgid):
    """Whether a live (not zombie) process is still in process group `pgid`."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = process_state(int(entry))
            if state and state[1] == pgid and state[0] != "Z":
                return True
    return False


def our_windows(xvfb):
    """Windows on the display that belong to tether-shadow-ui (any class of ours)."""
    out = xvfb.run("xdotool", "search", "--class", "tether").stdout.split()
    return out


async def open_session(rig):
    """A session with a WebSocket viewer that has read the RFB greeting; returns (session id,
    viewer, helpers on the display)."""
    status, _, body = await asyncio.to_thread(rig.post_shadow)
    assert status == 201, body
    viewer = await viewer_connect(rig.server, body["viewer_url"])
    greeting = await asyncio.wait_for(viewer.recv(), 20)
    assert bytes(greeting).startswith(b"RFB 003.008"), greeting
    found = await asyncio.to_thread(
        wait_until, lambda: (lambda h: h if {n for n, _ in h.values()} == set(HELPER_NAMES)
                             else None)(helpers(rig.display)), 15, 0.1,
        "tether-vnc and the indicator running")
    return body["session"], viewer, found


async def closed_with(viewer, timeout=20):
    try:
        while True:
            await asyncio.wait_for(viewer.recv(), timeout)
    except websockets.ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")


def check_helpers_gone(found, xvfb, started, what):
    """Every helper pid and process group gone, and no window of ours left."""
    wait_until(lambda: not any(alive(p) for p in found), timeout=10, interval=0.05,
               what=f"{what}: helpers {found} to exit")
    gone_s = time.monotonic() - started
    wait_until(lambda: not any(group_alive(g) for _, g in found.values()), timeout=5,
               what=f"{what}: the helpers' process groups to be empty")
    wait_until(lambda: not our_windows(xvfb), timeout=5,
               what=f"{what}: no tether window on {xvfb.display}: {our_windows(xvfb)}")
    assert not helpers_on(xvfb.display)
    return gone_s


def test_sigterm_to_the_agent_during_a_session(server, make_agent, display):
    need()
    rig = Rig(server, make_agent, display.display)

    async def run():
        session, viewer, found = await open_session(rig)
        assert our_windows(display), "the indicator should be on the display (check can fail)"
        started = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(rig.agent.stop))
        code, reason = await closed_with(viewer)
        assert await stopping == 0
        gone_s = check_helpers_gone(found, display, started, "agent SIGTERM")
        return session, code, reason, gone_s, found

    session, code, reason, gone_s, found = asyncio.run(run())
    row = rig.wait_ended(session)
    print(f"\nagent SIGTERM: viewer closed {code} {reason!r}; audit {row['end_reason']}; "
          f"helpers {sorted(n for n, _ in found.values())} gone {gone_s:.2f} s after the signal")
    assert code == 1000 and reason == "agent_stopping", (code, reason)
    assert row["end_reason"] == "agent_stopping", row
    assert f"shadowing {session} ended (agent_stopping)" in rig.agent.log(), rig.agent.log()


def test_sigterm_to_the_server_during_a_session(server, make_agent, display):
    need()
    rig = Rig(server, make_agent, display.display)

    async def run():
        session, viewer, found = await open_session(rig)
        started = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        code, reason = await closed_with(viewer)
        assert await stopping == 0
        gone_s = check_helpers_gone(found, display, started, "server SIGTERM")
        return session, code, reason, gone_s

    session, code, reason, gone_s = asyncio.run(run())
    rig.agent.wait_log(f"shadowing {session} ended (server_stopping)")
    assert rig.agent.proc.poll() is None, "the agent must keep running"
    server.start()
    row = rig.wait_ended(session)
    print(f"\nserver SIGTERM: viewer closed {code} {reason!r}; audit {row['end_reason']}; "
          f"helpers gone {gone_s:.2f} s after the signal")
    assert code == 1001 and reason == "server_stopping", (code, reason)
    assert row["end_reason"] == "server_stopping", row
    rig.agent.wait_connected(timeout=60)
