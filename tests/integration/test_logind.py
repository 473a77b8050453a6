"""platform::Logind (through tether-logind-probe) against python3-dbusmock's logind on a
private bus: reboot and power off reach logind, D-Bus errors come back as such, and the
graphical session is the one the rules in docs/architecture.md name."""

import json
import os
import subprocess
import time

import pytest

from dbusmock_harness import logind_bus
from tether_harness import bin_dir, wait_until


def probe(env, *args, timeout=60):
    proc = subprocess.run([str(bin_dir() / "tether-logind-probe"), *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"probe {args} exited {proc.returncode}: {proc.stderr}"
    assert "ERROR: AddressSanitizer" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def logind_mock():
    with logind_bus() as (bus, logind):
        yield bus, logind


def session_of(bus):
    out = probe(bus.env(), "session")
    assert out["ok"], out
    return out["session"]


# ---- reboot and power off ------------------------------------------------------------------

@pytest.mark.parametrize("command,method", [("reboot", "Reboot"), ("poweroff", "PowerOff")])
def test_power_actions_reach_logind_non_interactively(logind_mock, command, method):
    bus, logind = logind_mock
    out = probe(bus.env(), command)
    assert out["ok"] is True, out
    # interactive=false: polkit must not wait for somebody to type a password.
    assert logind.calls(method) == [[False]]
    other = {"Reboot": "PowerOff", "PowerOff": "Reboot"}[method]
    assert logind.calls(other) == []


def test_access_denied_comes_back_with_name_and_message(logind_mock):
    bus, logind = logind_mock
    logind.fail_method("Reboot", "org.freedesktop.DBus.Error.AccessDenied",
                       "Permission denied by polkit")
    out = probe(bus.env(), "reboot")
    assert out["ok"] is False
    assert out["errc"] == "permission_denied"
    assert out["error"] == ("org.freedesktop.DBus.Error.AccessDenied: "
                            "Permission denied by polkit")
    assert logind.calls("Reboot") == [[False]]  # it did arrive


def test_interactive_authorization_required_is_permission_denied(logind_mock):
    bus, logind = logind_mock
    logind.fail_method("PowerOff", "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                       "Interactive authentication required.")
    out = probe(bus.env(), "poweroff")
    assert out["errc"] == "permission_denied", out
    assert out["error"].startswith("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired: ")


def test_other_dbus_errors_are_internal_with_their_name(logind_mock):
    bus, logind = logind_mock
    logind.fail_method("Reboot", "org.freedesktop.login1.OperationInProgress",
                       "There's already a shutdown or sleep operation in progress")
    out = probe(bus.env(), "reboot")
    assert out["errc"] == "internal", out
    assert out["error"] == ("org.freedesktop.login1.OperationInProgress: "
                            "There's already a shutdown or sleep operation in progress")


def test_no_logind_on_the_bus_is_unavailable_at_once():
    with logind_bus(with_logind=False) as (bus, _):
        started = time.monotonic()
        out = probe(bus.env(), "reboot")
        elapsed = time.monotonic() - started
    assert out["errc"] == "unavailable", out
    assert out["error"].startswith("org.freedesktop.DBus.Error.ServiceUnknown: ")
    # Not the 25 s call timeout: the bus says at once that nobody owns the name.
    assert elapsed < 10, elapsed


def test_no_bus_at_all_is_unavailable(tmp_path):
    out = probe({"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}, "reboot")
    assert (out["ok"], out["errc"], out["stage"]) == (False, "unavailable", "connect"), out
    assert "system bus" in out["error"]


def test_an_unanswered_call_times_out(logind_mock):
    bus, logind = logind_mock
    logind.delay_method("PowerOff", 3)
    out = probe(bus.env(), "--call-timeout-ms", "300", "poweroff")
    assert out["errc"] == "unavailable", out
    assert out["error"] == "org.freedesktop.DBus.Error.NoReply: Method call timed out"


def test_losing_the_bus_fails_the_call_in_flight(logind_mock):
    bus, logind = logind_mock
    logind.delay_method("Reboot", 5)
    proc = subprocess.Popen([str(bin_dir() / "tether-logind-probe"), "reboot"],
                            env={**os.environ, **bus.env()}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: logind.logged("Reboot") == 1, what="Reboot at the mock")
        bus.kill()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    out = json.loads(stdout)
    assert out["ok"] is False
    assert out["errc"] == "unavailable", out
    assert out["error"].startswith("org.freedesktop.DBus.Error."), out


# ---- destroying the client with calls in flight ---------------------------------------------

def test_destroying_with_calls_in_flight_runs_no_callback(logind_mock):
    bus, logind = logind_mock
    logind.add_session("c1", type="x11")
    out = probe(bus.env(), "destroy-in-flight")
    assert out["ok"] is True, out
    assert out["callbacks"] == 0
    assert out["in_flight"] == 2  # Reboot and ListSessions, both sent
    # The Reboot was sent (the warm-up's ListSessions and the second one too).
    assert logind.calls("Reboot") == [[False]]
    assert len(logind.calls("ListSessions")) == 2


def test_destroying_from_a_callback_stops_the_other_callbacks(logind_mock):
    bus, logind = logind_mock
    logind.add_session("c1", type="x11")
    logind.add_session("c2", type="wayland", uid=1001, user="bob")
    out = probe(bus.env(), "destroy-in-callback")
    assert out["ok"] is True, out
    assert out["callbacks"] == 1
    assert out["in_flight_at_destroy"] >= 1


def test_a_throwing_callback_is_reported_by_process(logind_mock):
    bus, _ = logind_mock
    out = probe(bus.env(), "callback-throws")
    assert out["ok"] is True, out
    assert out["process_error"] == "internal: a logind callback threw: thrown by the test"


# ---- the graphical session --------------------------------------------------------------------

def test_no_sessions_is_none(logind_mock):
    bus, _ = logind_mock
    assert session_of(bus) is None


def test_the_x11_user_session_on_seat0(logind_mock):
    bus, logind = logind_mock
    logind.add_session("c2", uid=1000, user="alice", type="x11", display=":0",
                       service="lightdm", leader=777)
    assert session_of(bus) == {
        "id": "c2", "object_path": "/org/freedesktop/login1/session/c2", "uid": 1000,
        "user": "alice", "display": ":0", "seat": "seat0", "type": "x11", "class": "user",
        "leader": 777, "service": "lightdm"}


@pytest.mark.parametrize("kind,props", [
    ("remote", {"remote": True}),
    ("inactive", {"active": False}),
    ("tty", {"type": "tty", "display": "", "tty": "tty2", "service": "login"}),
    ("seatless", {"seat": "", "type": "tty", "display": "", "service": "sshd"}),
    ("other seat", {"seat": "seat1"}),
    ("lock screen", {"session_class": "lock-screen"}),
    ("closing", {"state": "closing"}),
])
def test_sessions_that_cannot_be_shown_are_ignored(logind_mock, kind, props):
    bus, logind = logind_mock
    logind.add_session("c1", uid=1000, user="alice", **props)
    assert session_of(bus) is None, kind
    # With a proper session beside it, that one is picked.
    logind.add_session("c9", uid=1002, user="carol")
    assert session_of(bus)["id"] == "c9", kind


def test_the_greeter_only_when_nobody_is_logged_in(logind_mock):
    bus, logind = logind_mock
    logind.add_session("c1", uid=113, user="lightdm", session_class="greeter")
    greeter = session_of(bus)
    assert greeter["id"] == "c1" and greeter["class"] == "greeter"
    logind.set_session_properties("c1", Active=False, State="online")
    logind.add_session("c2", uid=1000, user="alice")
    assert session_of(bus)["id"] == "c2"


def test_a_user_session_beats_an_active_greeter(logind_mock):
    bus, logind = logind_mock
    logind.add_session("c1", uid=113, user="lightdm", session_class="greeter")
    logind.add_session("c2", uid=1000, user="alice")
    assert session_of(bus)["id"] == "c2"


def test_wayland_is_reported_but_x11_preferred(logind_mock):
    bus, logind = logind_mock
    logind.add_session("c1", uid=1000, user="alice", type="wayland", display="")
    wayland = session_of(bus)
    assert wayland["type"] == "wayland" and wayland["display"] == ""
    logind.add_session("c2", uid=1001, user="bob", type="x11", display=":1")
    x11 = session_of(bus)
    assert (x11["id"], x11["display"], x11["user"], x11["uid"]) == ("c2", ":1", "bob", 1001)


def test_only_the_first_64_sessions_are_looked_at(logind_mock):
    bus, logind = logind_mock
    for i in range(64):
        logind.add_session(f"t{i}", uid=2000 + i, user=f"u{i}", type="tty", display="",
                           active=False)
    logind.add_session("late", uid=1000, user="alice")
    assert session_of(bus) is None
    # The bound is on the number of sessions, not on finding one: one fewer and it is seen.
    logind.remove_session("t0")
    assert session_of(bus)["id"] == "late"
