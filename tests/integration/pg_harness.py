"""PostgreSQL for integration tests: fresh_database() returns the URL of a new, empty database.

The cluster is the one the ctest fixture "postgresql" started (tests/pg/pg_fixture; its
directory in TETHER_PG_FIXTURE, set for tests that have FIXTURES_REQUIRED postgresql), or the
server TETHER_PG_URL names; without either, this module starts its own throwaway cluster with
the same script, once per process, and stops it at exit. Every database gets a random name, so
tests can run in parallel on one cluster.
"""

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_FIXTURE = REPO / "tests" / "pg" / "pg_fixture"

_own_cluster = None  # the directory of the cluster this process started, if any


def _stop_own_cluster():
    global _own_cluster
    if _own_cluster is not None:
        subprocess.run([str(PG_FIXTURE), "stop", _own_cluster], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(_own_cluster, ignore_errors=True)
        _own_cluster = None


def _start_own_cluster():
    global _own_cluster
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL is not installed ({PG_BIN}/initdb missing): scripts/deps "
                    "installs Debian's postgresql package")
    directory = tempfile.mkdtemp(prefix="tether-pg-fixture-")
    proc = subprocess.run([str(PG_FIXTURE), "start", directory], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError("cannot start a PostgreSQL cluster for the test:\n" + proc.stdout +
                           proc.stderr)
    print(proc.stdout.strip())
    _own_cluster = directory
    atexit.register(_stop_own_cluster)
    return directory


def server_url():
    """The URL of the cluster's maintenance database (postgresql://tether@127.0.0.1:PORT/postgres)."""
    if os.environ.get("TETHER_PG_URL"):
        return os.environ["TETHER_PG_URL"]
    directory = os.environ.get("TETHER_PG_FIXTURE") or _own_cluster or _start_own_cluster()
    url_file = Path(directory) / "url"
    if not url_file.exists():
        raise RuntimeError(f"no {url_file}: the PostgreSQL fixture did not start (see the "
                           "pg_fixture_start test's output)")
    return url_file.read_text().strip()


def _with_database(url, name):
    scheme_end = url.find("://") + 3
    slash = url.find("/", scheme_end)
    return (url if slash < 0 else url[:slash]) + "/" + name


def psql(url, sql):
    """Runs `sql` on the database `url`; returns psql's output (unaligned, tuples only)."""
    proc = subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-d", url, "-c", sql], capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"psql on {url} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def fresh_database(prefix="tether_it"):
    """Creates an empty database with a random name; returns its URL (for store.url)."""
    base = server_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    psql(base, f"CREATE DATABASE {name}")
    return _with_database(base, name)


def drop_database(url):
    """Drops the database `url` names (closing any connection left to it)."""
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    psql(_with_database(url, "postgres"), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
