import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_harness import Agent  # noqa: E402
from tether_harness import Server  # noqa: E402


@pytest.fixture
def make_server(tmp_path):
    """Starts tether-servers in private state directories; stops them after the test."""
    started = []

    def make(name="state", **kwargs):
        server = Server(tmp_path / name, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server):
    return make_server().start()


@pytest.fixture
def make_agent(tmp_path):
    """Makes tether-agents with private state directories; stops them after the test."""
    made = []

    def make(name="agent", **kwargs):
        agent = Agent(tmp_path / name, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()
