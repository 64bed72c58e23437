"""Enrollment on a clustered broker hands every agent all the nodes, starting at one of its own
(collector/enrollment/service.py ``spread``), and the agent writes them into its config."""

from __future__ import annotations

import tomllib
from collections import Counter

from agent.config import load_config
from agent.enroll import Enrollment as AgentEnrollment
from agent.enroll import updated_config
from collector.enrollment.service import enrollment_token, spread

NODES = ("mqtts://n1:8883", "mqtts://n2:8883", "mqtts://n3:8883")


def test_every_agent_gets_all_nodes_in_ring_order_from_a_stable_start() -> None:
    first, fallbacks = spread("pos-1-3f9a2c1b", NODES)
    assert sorted((first, *fallbacks)) == sorted(NODES)
    ring = NODES + NODES
    start = ring.index(first)
    assert (first, *fallbacks) == ring[start : start + 3]
    assert spread("pos-1-3f9a2c1b", NODES) == (first, fallbacks)  # the same agent, the same order
    assert spread("pos-1", NODES[:1]) == (NODES[0], ())  # a single broker: unchanged


def test_a_fleet_starts_spread_over_the_nodes() -> None:
    starts = Counter(spread(f"pos-{n}-{n * 7919:08x}", NODES)[0] for n in range(3000))
    assert min(starts.values()) > 800, starts


def test_the_agent_writes_the_fallbacks_and_reads_them_back() -> None:
    enrollment = AgentEnrollment("pos-1", NODES[1], "pos-1", "secret", (NODES[2], NODES[0]))
    text = updated_config(None, enrollment)
    text += '\n[[devices]]\nprotocol = "shtrih"\nurl = "sim://x"\n'
    config = load_config(None, env={}, overrides=tomllib.loads(text))
    assert config.broker.endpoints() == [("n2", 8883), ("n3", 8883), ("n1", 8883)]
    again = updated_config(text, enrollment)  # enrolling again replaces, never duplicates, the key
    assert again.count("fallback_urls") == 1


def test_an_enrollment_token_never_starts_with_a_dash() -> None:
    """``kassa-agent enroll --token -abc…`` is an argparse error; token_urlsafe starts one in 64 so."""
    tokens = [enrollment_token() for _ in range(2000)]
    assert not [token for token in tokens if token.startswith("-")]
    assert len(set(tokens)) == len(tokens) and all(len(token) == 43 for token in tokens)
