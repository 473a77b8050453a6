"""tetherctl against a real server: commands, output formats, settings precedence, errors."""

import json
import re

from tether_harness import DeviceKey, run_ctl


def test_enroll_token_create_prints_only_the_token(server):
    out = server.ctl("enroll-token", "create")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert re.fullmatch(r"tether1\.[A-Za-z0-9_-]+\.[0-9a-f]{64}\.[A-Za-z0-9_-]{43}", token)
    assert out.stdout.count("\n") == 1
    assert "expires" in out.stderr


def test_enroll_token_create_json_with_ttl_and_mac(server):
    out = server.ctl("enroll-token", "create", "--ttl", "15m", "--mac", "52:54:00:AB:CD:EF",
                     "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["mac"] == "52:54:00:ab:cd:ef"
    assert body["token"].startswith("tether1.")
    assert set(body) == {"id", "token", "expires_at", "mac"}


def test_the_printed_token_enrolls_a_device(server, tmp_path):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    device = DeviceKey(tmp_path)
    assert device.enroll(server, token)[0] == 201
    listed = json.loads(server.ctl("devices", "--json", check=True).stdout)["devices"]
    assert [d["id"] for d in listed] == [device.device_id]
    table = server.ctl("devices", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "ONLINE", "VIA", "ADDRESS", "VERSION", "LAST",
                                "SEEN"]
    assert table[1].startswith(device.device_id[:12])
    shown = json.loads(server.ctl("device", "show", device.device_id[:8], "--json",
                                  check=True).stdout)
    assert shown["id"] == device.device_id and shown["inventory"] is None
    text = server.ctl("device", "show", "tc-test", check=True).stdout
    assert device.device_id in text


def test_devices_empty(server):
    out = server.ctl("devices", "--json", check=True)
    assert json.loads(out.stdout) == {"devices": []}


def test_ambiguous_and_unknown_ids(server, tmp_path):
    for name in ("a", "b"):
        DeviceKey(tmp_path, name).enroll(server, server.create_token()["token"],
                                         hostname="same-name")
    out = server.ctl("device", "show", "same-name")
    assert out.returncode == 1
    assert "matches several devices" in out.stderr
    out = server.ctl("device", "show", "ffffff")
    assert out.returncode == 1 and "no device matches" in out.stderr


def test_wrong_token_file_is_an_error(server, tmp_path):
    bad = tmp_path / "bad.token"
    bad.write_text("x" * 43)
    out = run_ctl("--server", server.url, "--token-file", str(bad), "--ca-file",
                  str(server.ca_file), "devices")
    assert out.returncode == 1
    assert "wrong admin token" in out.stderr and "401" in out.stderr


def test_wrong_ca_is_refused(server, make_server):
    other = make_server("other").start()
    out = run_ctl("--server", server.url, "--token-file", str(server.token_file), "--ca-file",
                  str(other.ca_file), "devices")
    assert out.returncode == 1
    assert "certificate" in out.stderr


def test_usage_errors_exit_2(server):
    assert server.ctl("frobnicate").returncode == 2
    assert server.ctl("devices", "--bogus").returncode == 2
    assert run_ctl("--server", "http://x:1", "devices").returncode == 2
    out = server.ctl("--help")
    assert out.returncode == 0 and "enroll-token create" in out.stdout
    assert server.ctl("device", "show", "--help").returncode == 0


def test_settings_from_environment_and_config_file(server, tmp_path):
    env = {"TETHER_SERVER": f"wss://127.0.0.1:{server.port}",
           "TETHER_TOKEN_FILE": str(server.token_file), "TETHER_CA_FILE": str(server.ca_file)}
    out = run_ctl("devices", "--json", env=env)
    assert out.returncode == 0, out.stderr

    home = tmp_path / "home"
    (home / ".config" / "tether").mkdir(parents=True)
    (home / ".config" / "tether" / "ctl.conf").write_text(
        f"[ctl]\nserver = {server.url}\ntoken_file = {server.token_file}\n"
        f"ca_file = {server.ca_file}\n")
    assert run_ctl("devices", home=str(home)).returncode == 0
    # A flag beats the environment, which beats the file.
    out = run_ctl("devices", home=str(home), env={"TETHER_SERVER": "https://127.0.0.1:1"})
    assert out.returncode == 1 and "127.0.0.1:1" in out.stderr
    out = run_ctl("--server", server.url, "devices", home=str(home),
                  env={"TETHER_SERVER": "https://127.0.0.1:1"})
    assert out.returncode == 0, out.stderr
