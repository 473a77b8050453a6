"""The agent's half of shadowing with real pieces end to end: Xvfb (a display of its own), the
real tether-server (relay, REST, audit), an enrolled tether-agent with shadow.display set,
tether-vnc and tether-shadow-ui as the agent spawns them, and tetherctl shadow + vncsnapshot
(or rfb_client) as the viewer. Also tether-shadow-ui alone: prompt answers by xdotool clicks.

What each test shows is in its docstring; a test that cannot run here says why (skip)."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from rfb_client import connect_tcp
from dbusmock_harness import logind_bus
from tether_harness import bin_dir, free_port, wait_until
from vnc_harness import Xvfb

BLUE = (0x1E, 0x90, 0xFF)
ORANGE = (0xFF, 0x8C, 0x00)
ALLOW = (120, 115)  # tether-shadow-ui's documented button centres (vnc/ui/ShadowUi.cpp)
DENY = (340, 115)
STOP = (401, 12)


ALL_BINARIES = ("tether-vnc", "tether-shadow-ui", "tether-agent", "tether-server", "tetherctl")


def need(*programs, binaries=ALL_BINARIES):
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip("not installed (scripts/deps): " + ", ".join(missing))
    for name in binaries:
        if not (bin_dir() / name).exists():
            pytest.skip(f"{name} is not built in {bin_dir()}")


def hex_colour(rgb):
    return "#%02x%02x%02x" % rgb


def close_to(a, b, tolerance=24):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


@pytest.fixture
def xvfb():
    need("Xvfb", "xdotool", "xsetroot", "xdpyinfo", binaries=("tether-shadow-ui",))
    x = Xvfb(width=640, height=480).start()
    x.solid(hex_colour(BLUE))
    yield x
    x.stop()


def helpers_on(display):
    """pids of tether-vnc / tether-shadow-ui processes that show `display`."""
    out = subprocess.run(["pgrep", "-f", "--", f"--display {display}( |$)"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def no_helpers_left(display):
    wait_until(lambda: not helpers_on(display), timeout=15,
               what=f"no tether-vnc/tether-shadow-ui left on {display}: {helpers_on(display)}")


class Rig:
    """A server, an enrolled agent shadowing `display`, and ways to drive sessions."""

    def __init__(self, server, make_agent, display, agent_env=None, **settings):
        """`display`: shadow.display, or None to leave the choice to logind."""
        self.server = server
        self.display = display
        token = server.ctl("enroll-token", "create", check=True).stdout.strip()
        base = {"shadow.prompt_user": "false",
                "shadow.vnc_path": str(bin_dir() / "tether-vnc"),
                "shadow.ui_path": str(bin_dir() / "tether-shadow-ui"), "log.level": "debug"}
        if display is not None:
            base["shadow.display"] = display
        base.update(settings)
        self.agent = make_agent(settings=base, env=agent_env)
        proc = self.agent.register(token)
        assert proc.returncode == 0, proc.stderr
        self.device_id = proc.stdout.strip()
        self.agent.start()
        self.agent.wait_connected()

    def restart_agent(self, **settings):
        self.agent.stop()
        self.agent.settings.update(settings)
        self.agent.start()
        self.agent.wait_connected()
        wait_until(lambda: self.device()["online"], what="the device online again")

    def device(self):
        proc = self.server.ctl("device", "show", self.device_id, "--json", check=True)
        return json.loads(proc.stdout)

    def ctl_shadow(self, port, *extra):
        """tetherctl shadow DEVICE --listen 127.0.0.1:PORT, running; returns (proc, header)."""
        s = self.server
        proc = subprocess.Popen(
            [str(bin_dir() / "tetherctl"), "--server", s.url, "--token-file", str(s.token_file),
             "--ca-file", str(s.ca_file), "shadow", self.device_id, "--listen",
             f"127.0.0.1:{port}", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "HOME": str(s.state_dir.parent)})
        header = []
        for line in proc.stdout:
            header.append(line)
            if line.startswith("listening on"):
                return proc, "".join(header)
        raise AssertionError(f"tetherctl shadow: {''.join(header)}{proc.stderr.read()}\n"
                             f"agent log:\n{self.agent.log()}")

    def post_shadow(self, **body):
        return self.server.admin("POST", f"/api/v1/devices/{self.device_id}/shadow",
                                 {"viewer": "external", **body})

    def audit(self):
        status, _, body = self.server.admin("GET", f"/api/v1/audit?device={self.device_id}")
        assert status == 200, body
        return body["sessions"]

    def audit_row(self, session):
        for row in self.audit():
            if row["session"] == session:
                return row
        return None

    def wait_ended(self, session, timeout=20):
        return wait_until(
            lambda: (self.audit_row(session) or {}).get("ended_at") and self.audit_row(session),
            timeout=timeout, what=f"session {session} to end in the audit: {self.audit()}")

    def agent_idle(self):
        wait_until(lambda: self.agent.status().get("shadow") is None, timeout=15,
                   what="the agent's status to show no session: "
                   + json.dumps(self.agent.status().get("shadow")))


def session_of(header):
    match = re.search(r"session (\S+)", header)
    assert match, header
    return match.group(1)


def snapshot_colour(path):
    """The average colour of a picture (ImageMagick), as (r, g, b) 0-255."""
    out = subprocess.run(["convert", str(path), "-resize", "1x1!", "-depth", "8", "txt:-"],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"\((\d+),(\d+),(\d+)", out.splitlines()[-1])
    return tuple(int(v) for v in match.groups())


def vncsnapshot(port, path):
    return subprocess.run(["vncsnapshot", "-quiet", f"127.0.0.1::{port}", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def rig(server, make_agent, xvfb):
    need()
    return Rig(server, make_agent, xvfb.display)


# ---- the picture, through tetherctl shadow and vncsnapshot -------------------------------

def test_snapshot_shows_the_picture_and_its_change(rig, xvfb, tmp_path):
    """Xvfb's known colour arrives at vncsnapshot through agent, tunnel, relay and tetherctl;
    after the picture changes, a second session's snapshot shows the change. Each session
    ends when the viewer leaves (viewer_closed) with no helper left behind."""
    need("vncsnapshot", "convert")
    sessions = []
    for colour in (BLUE, ORANGE):
        xvfb.solid(hex_colour(colour))
        port = free_port()
        proc, header = rig.ctl_shadow(port)
        sessions.append(session_of(header))
        assert "consent not_required" in header, header
        snap = tmp_path / f"snap-{len(sessions)}.jpg"
        result = vncsnapshot(port, snap)
        assert result.returncode == 0, result.stderr + rig.agent.log()
        got = snapshot_colour(snap)
        assert close_to(got, colour), f"snapshot colour {got}, expected {colour}"
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
        row = rig.wait_ended(sessions[-1])
        assert row["end_reason"] == "viewer_closed", row
        assert row["bytes_to_viewer"] > 0
        no_helpers_left(rig.display)
        rig.agent_idle()
    assert sessions[0] != sessions[1]


def test_time_to_first_framebuffer_update(rig, xvfb):
    """Printed, not asserted: from asking for the session to the first framebuffer update at
    an RFB client behind tetherctl shadow."""
    port = free_port()
    started = time.monotonic()
    proc, header = rig.ctl_shadow(port)
    asked = time.monotonic()
    client = connect_tcp("127.0.0.1", port, timeout=20)
    try:
        client.handshake()
        frame = client.full_frame()
        first_update = time.monotonic()
        assert close_to(client.average(0, 0, client.width, client.height), BLUE)
        print(f"\nshadowing: session accepted {asked - started:.3f} s after the request; "
              f"first framebuffer update {first_update - started:.3f} s after it "
              f"({frame.width}x{frame.height})")
    finally:
        client.close()
    assert proc.wait(timeout=20) == 0
    rig.wait_ended(session_of(header))
    no_helpers_left(rig.display)


# ---- consent --------------------------------------------------------------------------

def click_prompt(xvfb, where, timeout=15):
    windows = wait_until(
        lambda: xvfb.run("xdotool", "search", "--onlyvisible", "--classname",
                         "tether-shadow-prompt").stdout.split(),
        timeout=timeout, what="the consent prompt on " + xvfb.display)
    result = xvfb.run("xdotool", "mousemove", "--window", windows[0], str(where[0]),
                      str(where[1]), "click", "1")
    assert result.returncode == 0, result.stderr


def post_in_background(rig, **body):
    outcome = {}

    def call():
        outcome["answer"] = rig.post_shadow(**body)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def test_consent_allow_deny_and_timeouts(server, make_agent, xvfb):
    """The prompt on the device's display: Allow clicked (201, consent accepted), Deny
    clicked (403 user_denied), no answer with default deny (403 prompt_timeout) and with
    default allow (201, default_accepted); each in the audit, no prompt left behind."""
    need()
    rig = Rig(server, make_agent, xvfb.display, **{"shadow.prompt_user": "true",
                                                   "shadow.prompt_timeout": "3s"})
    # Allow.
    thread, outcome = post_in_background(rig, view_only=True)
    click_prompt(xvfb, ALLOW)
    thread.join(30)
    status, _, body = outcome["answer"]
    assert status == 201, body
    assert body["consent"] == "accepted" and body["view_only"] is True
    wait_until(lambda: xvfb.run("xdotool", "search", "--onlyvisible", "--classname",
                                "tether-shadow-indicator").stdout.strip(),
               what="the indicator while the session runs")
    vnc = [p for p in helpers_on(xvfb.display)
           if "tether-vnc" in open(f"/proc/{p}/cmdline").read()]
    assert vnc and "--view-only" in open(f"/proc/{vnc[0]}/cmdline").read().split("\0")
    status, _, ended = server.admin("DELETE", f"/api/v1/shadow/sessions/{body['session']}")
    assert status == 200, ended
    assert rig.wait_ended(body["session"])["end_reason"] == "admin"
    no_helpers_left(xvfb.display)
    rig.agent_idle()

    # Deny.
    thread, outcome = post_in_background(rig)
    click_prompt(xvfb, DENY)
    thread.join(30)
    status, _, body = outcome["answer"]
    assert status == 403 and body["error"]["code"] == "user_denied", body
    no_helpers_left(xvfb.display)

    # Timed out, default deny.
    status, _, body = rig.post_shadow()
    assert status == 403 and body["error"]["code"] == "prompt_timeout", body
    no_helpers_left(xvfb.display)
    reasons = [row["end_reason"] for row in rig.audit()]
    assert "user_denied" in reasons and "prompt_timeout" in reasons, reasons

    # Timed out, default allow.
    rig.restart_agent(**{"shadow.prompt_default": "allow"})
    status, _, body = rig.post_shadow()
    assert status == 201 and body["consent"] == "default_accepted", body
    server.admin("DELETE", f"/api/v1/shadow/sessions/{body['session']}")
    rig.wait_ended(body["session"])
    no_helpers_left(xvfb.display)


def test_policy_refusals(server, make_agent, xvfb):
    """Local policy wins: a viewer kind the device does not accept is refused (policy), and
    shadow.allowed=false refuses everything; a forced view-only is reported."""
    need()
    rig = Rig(server, make_agent, xvfb.display, **{"shadow.viewers": "browser",
                                                   "shadow.view_only": "true"})
    status, _, body = rig.post_shadow()  # external
    assert status == 403 and body["error"]["code"] == "policy", body
    assert "external" in body["error"]["message"]
    status, _, body = rig.post_shadow(viewer="browser", view_only=False)
    assert status == 201 and body["view_only"] is True, body
    server.admin("DELETE", f"/api/v1/shadow/sessions/{body['session']}")
    rig.wait_ended(body["session"])
    no_helpers_left(xvfb.display)
    rig.restart_agent(**{"shadow.allowed": "false"})
    status, _, body = rig.post_shadow(viewer="browser")
    assert status == 403 and body["error"]["code"] == "policy", body


def test_max_duration_ends_the_session(server, make_agent, xvfb):
    """shadow.max_duration ends a running session with that reason."""
    need()
    rig = Rig(server, make_agent, xvfb.display, **{"shadow.max_duration": "2s"})
    status, _, body = rig.post_shadow()
    assert status == 201, body
    row = rig.wait_ended(body["session"])
    assert row["end_reason"] == "max_duration", row
    no_helpers_left(xvfb.display)


def test_the_session_comes_from_logind(server, make_agent, xvfb, tmp_path):
    """Without shadow.display the agent asks logind (python3-dbusmock on a private bus): no
    graphical session is no_session; a Wayland one is no_session with the reason; an active
    x11 session on seat0 whose display is this test's Xvfb is shadowed (its pixels arrive)."""
    need("vncsnapshot", "convert")
    with logind_bus() as (bus, logind):
        rig = Rig(server, make_agent, None, agent_env=bus.env())
        status, _, body = rig.post_shadow()
        assert status == 409 and body["error"]["code"] == "no_session", body
        logind.add_session("c1", uid=os.getuid(), user="root", type="wayland", display="")
        status, _, body = rig.post_shadow()
        assert status == 409 and body["error"]["code"] == "no_session", body
        assert "X11" in body["error"]["message"], body
        logind.add_session("c2", uid=os.getuid(), user="root", type="x11",
                           display=xvfb.display, leader=xvfb.proc.pid)
        rig.display = xvfb.display
        port = free_port()
        proc, header = rig.ctl_shadow(port)
        result = vncsnapshot(port, tmp_path / "logind.jpg")
        assert result.returncode == 0, result.stderr + rig.agent.log()
        assert close_to(snapshot_colour(tmp_path / "logind.jpg"), BLUE)
        assert proc.wait(timeout=20) == 0
        rig.wait_ended(session_of(header))
        no_helpers_left(xvfb.display)
        rig.agent.stop()


# ---- ending mid-session -----------------------------------------------------------------

def running_session(rig):
    """A session with an RFB client connected through tetherctl; (proc, session, client)."""
    port = free_port()
    proc, header = rig.ctl_shadow(port)
    client = connect_tcp("127.0.0.1", port, timeout=20)
    client.handshake()
    client.full_frame()
    return proc, session_of(header), client


def test_each_way_of_ending_is_clean(rig, xvfb):
    """Killing the viewer, the tunnel (tetherctl), tether-vnc; the user's Stop sharing; the
    agent stopping: each ends the session on all sides, leaves no helper process, and the
    audit names the reason."""
    # The viewer goes away.
    proc, session, client = running_session(rig)
    client.close()
    assert proc.wait(timeout=20) == 0
    assert rig.wait_ended(session)["end_reason"] == "viewer_closed"
    no_helpers_left(rig.display)
    rig.agent_idle()

    # The viewer's tunnel is killed (tetherctl dies without a close).
    proc, session, client = running_session(rig)
    proc.kill()
    proc.wait()
    assert rig.wait_ended(session)["end_reason"] in ("viewer_closed",), rig.audit_row(session)
    no_helpers_left(rig.display)
    client.close()
    rig.agent_idle()

    # tether-vnc dies.
    proc, session, client = running_session(rig)
    vnc = [p for p in helpers_on(rig.display)
           if open(f"/proc/{p}/cmdline").read().split("\0")[0].endswith("tether-vnc")]
    assert len(vnc) == 1, helpers_on(rig.display)
    os.kill(vnc[0], signal.SIGKILL)
    row = rig.wait_ended(session)
    assert row["end_reason"] == "vnc_exited", row
    assert proc.wait(timeout=20) == 1  # tetherctl says the session ended from the other side
    client.close()
    no_helpers_left(rig.display)
    rig.agent_idle()

    # The user clicks Stop sharing on the indicator.
    proc, session, client = running_session(rig)
    windows = wait_until(lambda: xvfb.run("xdotool", "search", "--onlyvisible", "--classname",
                                          "tether-shadow-indicator").stdout.split(),
                         what="the indicator")
    xvfb.run("xdotool", "mousemove", "--window", windows[0], str(STOP[0]), str(STOP[1]),
             "click", "1")
    assert rig.wait_ended(session)["end_reason"] == "user"
    proc.wait(timeout=20)
    client.close()
    no_helpers_left(rig.display)
    rig.agent_idle()

    # The agent stops (SIGTERM).
    proc, session, client = running_session(rig)
    assert rig.agent.stop() == 0
    assert rig.wait_ended(session)["end_reason"] == "agent_stopping"
    proc.wait(timeout=20)
    client.close()
    no_helpers_left(rig.display)


def test_status_shows_the_session(rig):
    """`tether-agent status` shows a running session (and the STATUS= line carries it)."""
    port = free_port()
    proc, header = rig.ctl_shadow(port)
    session = session_of(header)
    client = connect_tcp("127.0.0.1", port, timeout=20)
    try:
        client.handshake()
        client.full_frame()
        shown = wait_until(lambda: rig.agent.status().get("shadow"), what="status.shadow")
        assert session in shown and "running" in shown and "external viewer" in shown, shown
        assert "Shadowing:" in rig.agent.run("status").stdout
    finally:
        client.close()
    proc.wait(timeout=20)
    rig.agent_idle()


# ---- tether-shadow-ui alone ---------------------------------------------------------------

def run_prompt(xvfb, *extra):
    return subprocess.Popen(
        [str(bin_dir() / "tether-shadow-ui"), "prompt", "--display", xvfb.display, "--admin",
         "Älice <b>admin</b>\x07", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


@pytest.mark.parametrize("where,code", [(ALLOW, 0), (DENY, 10)])
def test_ui_prompt_clicks(xvfb, where, code):
    """Clicking Allow exits 0, Deny 10."""
    proc = run_prompt(xvfb, "--timeout", "20", "--default", "deny")
    try:
        click_prompt(xvfb, where)
        assert proc.wait(timeout=10) == code, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_ui_prompt_escape_denies_and_enter_does_not_accept(xvfb):
    proc = run_prompt(xvfb, "--timeout", "20", "--default", "allow")
    try:
        windows = wait_until(lambda: xvfb.run("xdotool", "search", "--onlyvisible", "--classname",
                                              "tether-shadow-prompt").stdout.split(),
                             what="the prompt")
        xvfb.run("xdotool", "key", "--window", windows[0], "Return")
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)  # Enter does not answer
        xvfb.run("xdotool", "key", "--window", windows[0], "Escape")
        assert proc.wait(timeout=10) == 10
    finally:
        proc.kill()
        proc.wait()


def test_ui_prompt_times_out_and_names_itself(xvfb):
    proc = run_prompt(xvfb, "--timeout", "2", "--default", "allow", "--view-only")
    try:
        found = wait_until(lambda: xvfb.run("xdotool", "search", "--name",
                                            "Tether: screen sharing request").stdout.split(),
                           what="the prompt by its title")
        assert xvfb.run("xdotool", "search", "--class", "tether-shadow-ui").stdout.split() == found
        assert proc.wait(timeout=10) == 11
    finally:
        proc.kill()
        proc.wait()


def test_ui_usage_and_indicator(xvfb):
    bad = subprocess.run([str(bin_dir() / "tether-shadow-ui"), "prompt", "--display",
                          xvfb.display, "--admin", "x"], capture_output=True, text=True)
    assert bad.returncode == 2  # no --timeout/--default
    nodisplay = subprocess.run([str(bin_dir() / "tether-shadow-ui"), "indicator", "--display",
                                ":59999", "--admin", "x"], capture_output=True, text=True)
    assert nodisplay.returncode == 1 and "cannot open display" in nodisplay.stderr
    proc = subprocess.Popen([str(bin_dir() / "tether-shadow-ui"), "indicator", "--display",
                             xvfb.display, "--admin", "bob"])
    try:
        windows = wait_until(lambda: xvfb.run("xdotool", "search", "--onlyvisible",
                                              "--classname",
                                              "tether-shadow-indicator").stdout.split(),
                             what="the indicator")
        xvfb.run("xdotool", "mousemove", "--window", windows[0], "10", "12", "click", "1")
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)  # a click beside the button does nothing
        xvfb.run("xdotool", "mousemove", "--window", windows[0], str(STOP[0]), str(STOP[1]),
                 "click", "1")
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
