"""A private D-Bus "system" bus with python3-dbusmock's logind on it, for tests.

Runs with Debian's Python (/usr/bin/python3), which has dbus-python and dbusmock. Nothing
here touches the machine's real system bus: the bus daemon listens on a socket in a private
directory, and programs under test find it through DBUS_SYSTEM_BUS_ADDRESS (env()).

In pytest:

    with logind_bus() as (bus, logind):
        logind.add_session("c1", uid=1000, user="alice", type="x11", display=":0")
        subprocess.run([...], env={**os.environ, **bus.env()})
        assert logind.calls("Reboot") == [[False]]

From another language (the C++ unit tests), as a process that serves until SIGTERM:

    /usr/bin/python3 dbusmock_harness.py serve [--no-logind] [--session JSON]...
        [--fail METHOD=ERROR_NAME:MESSAGE]... [--delay METHOD=SECONDS]...

prints "DBUS_SYSTEM_BUS_ADDRESS=<address>" and then "READY" on stdout once everything is up.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import dbus

PYTHON = "/usr/bin/python3"
LOGIND_NAME = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
MANAGER_IFACE = "org.freedesktop.login1.Manager"
SESSION_IFACE = "org.freedesktop.login1.Session"
MOCK_IFACE = "org.freedesktop.DBus.Mock"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- "session": as root a "system" bus would try (and fail, in containers) to raise its fd
       limit, and it changes nothing else here. -->
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <!-- No service directories: nothing is ever activated, so a missing logind stays missing
       (ServiceUnknown) instead of being started from the machine's own service files. -->
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
"""


def _wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _plain(value):
    """dbus-python values as plain Python values (dbus.Boolean → bool, ...)."""
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.Byte, dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16,
                          dbus.UInt32, dbus.UInt64)):
        return int(value)
    if isinstance(value, dbus.Double):
        return float(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath, dbus.Signature)):
        return str(value)
    if isinstance(value, (dbus.Array, dbus.Struct, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dbus.Dictionary):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


class PrivateBus:
    """A dbus-daemon of our own, with a permissive policy (we may run as root or not)."""

    def __init__(self):
        # A short directory under /tmp: unix socket paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="tether-dbus-", dir="/tmp"))
        self.proc = None
        self.address = None
        self._conn = None

    def start(self, timeout=10.0):
        conf = self.dir / "bus.conf"
        conf.write_text(BUS_CONFIG.format(socket=self.dir / "bus"))
        # Its stderr goes to a file: as root it warns about its fd limit on every start.
        with open(self.dir / "bus.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address=1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            self.stop()
            raise RuntimeError("dbus-daemon did not print its address")
        self.address = line
        _wait_until(lambda: (self.dir / "bus").exists(), timeout, "the bus socket")
        return self

    def env(self):
        """What a program under test needs in its environment to use this bus."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def connection(self):
        if self._conn is None:
            self._conn = dbus.bus.BusConnection(self.address)
        return self._conn

    def name_has_owner(self, name):
        return bool(self.connection().name_has_owner(name))

    def kill(self):
        """The bus daemon dies at once, as on a crash: every client loses its connection."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class LogindMock:
    """python3-dbusmock's logind template on a PrivateBus.

    Every call to a mocked method (Reboot, PowerOff, ListSessions...) is recorded; calls()
    reads them through org.freedesktop.DBus.Mock.GetCalls. Property reads (GetAll) are not.
    """

    def __init__(self, bus, parameters=None):
        self.bus = bus
        self.parameters = parameters
        self.proc = None
        self.log_path = bus.dir / "logind-mock.log"

    def start(self, timeout=15.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
        env.update(self.bus.env())
        argv = [PYTHON, "-m", "dbusmock", "--system", "--template", "logind",
                "-l", str(self.log_path)]
        if self.parameters:
            argv += ["--parameters", json.dumps(self.parameters)]
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dbusmock exited with {self.proc.returncode}")
            return self.bus.name_has_owner(LOGIND_NAME)
        _wait_until(up, timeout, "dbusmock's logind on the bus")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # ---- talking to the mock ---------------------------------------------------------

    def _mock(self, path=LOGIND_PATH):
        obj = self.bus.connection().get_object(LOGIND_NAME, path)
        return dbus.Interface(obj, MOCK_IFACE)

    def add_session(self, session_id, uid=1000, user="user", seat="seat0", active=True,
                    type="x11", session_class="user", display=":0", remote=False,
                    service="lightdm", tty="", leader=4242, state=None):
        """Adds a session (and its seat and user when new); returns its object path.

        seat="" makes a seat-less session (as ssh logins are)."""
        path = self._mock().AddSession(session_id, seat or "seat0", dbus.UInt32(uid), user,
                                       dbus.Boolean(active))
        props = {
            "Type": dbus.String(type),
            "Class": dbus.String(session_class),
            "Display": dbus.String(display),
            "Remote": dbus.Boolean(remote),
            "Service": dbus.String(service),
            "TTY": dbus.String(tty),
            "Leader": dbus.UInt32(leader),
            "State": dbus.String(state or ("active" if active else "online")),
        }
        if not seat:
            props["Seat"] = dbus.Struct(("", dbus.ObjectPath("/")), signature="so")
        self.set_session_properties(session_id, **props)
        return str(path)

    def remove_session(self, session_id):
        """Removes a session object (logind forgetting a session that ended)."""
        self._mock().RemoveObject(f"{LOGIND_PATH}/session/{session_id}")

    def set_session_properties(self, session_id, **props):
        """Sets properties of a session (values typed as dbus-python types)."""
        obj = self.bus.connection().get_object(LOGIND_NAME, f"{LOGIND_PATH}/session/{session_id}")
        properties = dbus.Interface(obj, dbus.PROPERTIES_IFACE)
        # Properties.Set one by one: the mock's UpdateProperties cannot handle structs (Seat).
        for name, value in props.items():
            properties.Set(SESSION_IFACE, name, value)

    def fail_method(self, method, error_name="org.freedesktop.DBus.Error.AccessDenied",
                    message="Permission denied", in_sig="b"):
        """Makes a Manager method answer with a D-Bus error (the call is still recorded)."""
        code = (f"raise dbus.exceptions.DBusException({message!r}, name={error_name!r})")
        self._mock().AddMethod(MANAGER_IFACE, method, in_sig, "", code)

    def delay_method(self, method, seconds, in_sig="b"):
        """Makes a Manager method answer only after `seconds` (the whole mock waits)."""
        self._mock().AddMethod(MANAGER_IFACE, method, in_sig, "",
                               f"import time; time.sleep({float(seconds)!r})")

    def calls(self, method=None):
        """The recorded calls: [[name, args], ...], or [args, ...] of one method."""
        rows = [[str(name), _plain(args)] for _, name, args in self._mock().GetCalls()]
        if method is None:
            return rows
        return [args for name, args in rows if name == method]

    def wait_for_calls(self, method, count=1, timeout=10.0):
        return _wait_until(lambda: len(self.calls(method)) >= count and self.calls(method),
                           timeout, f"{count} call(s) of {method}")

    def clear_calls(self):
        self._mock().ClearCalls()

    def logged(self, method):
        """How many calls of `method` the mock's log file shows. Unlike calls(), this works
        while the mock is busy (inside a delay_method)."""
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return 0
        return sum(1 for line in lines if line.split(" ")[1:2] == [method])


@contextmanager
def logind_bus(with_logind=True, parameters=None):
    """A private bus, with the logind mock on it unless with_logind is False. Yields
    (bus, logind) with logind None when absent; stops both afterwards."""
    bus = PrivateBus().start()
    logind = None
    try:
        if with_logind:
            logind = LogindMock(bus, parameters).start()
        yield bus, logind
    finally:
        if logind is not None:
            logind.stop()
        bus.stop()


# ---- command line: serve until SIGTERM ---------------------------------------------------

def _serve(args):
    stop = {"now": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with logind_bus(with_logind=not args.no_logind) as (bus, logind):
        if logind is not None:
            for spec in args.session:
                fields = json.loads(spec)
                logind.add_session(fields.pop("id"), **fields)
            for spec in args.fail:
                method, _, rest = spec.partition("=")
                name, _, message = rest.partition(":")
                logind.fail_method(method, name, message or "failed")
            for spec in args.delay:
                method, _, seconds = spec.partition("=")
                logind.delay_method(method, float(seconds))
        print(f"DBUS_SYSTEM_BUS_ADDRESS={bus.address}", flush=True)
        print("READY", flush=True)
        parent = os.getppid()
        # Also stop when the test that started us died without saying so (a crash).
        while not stop["now"] and os.getppid() == parent:
            if logind is not None and logind.proc.poll() is not None:
                return 1
            time.sleep(0.05)
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a private bus with logind until SIGTERM")
    serve.add_argument("--no-logind", action="store_true", help="the bus alone")
    serve.add_argument("--session", action="append", default=[],
                       help='JSON object: {"id": "c1", "uid": 1000, "type": "x11", ...}')
    serve.add_argument("--fail", action="append", default=[],
                       help="METHOD=ERROR_NAME:MESSAGE, e.g. "
                            "Reboot=org.freedesktop.DBus.Error.AccessDenied:denied")
    serve.add_argument("--delay", action="append", default=[], help="METHOD=SECONDS")
    args = parser.parse_args(argv)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
