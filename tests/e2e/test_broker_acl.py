"""Per-agent broker credentials and ACLs against real Mosquitto processes, both backends:

* ``dynsec`` — the shipped ``packaging/mosquitto/kassa-prod.conf`` (dynamic-security plugin, TLS
  agent listener, loopback collector listener), accounts created over ``$CONTROL``;
* ``files``  — a ``mosquitto_passwd``-format password file and a ``%u`` ACL file written by the
  collector, reloaded with SIGHUP.

Forbidden actions are checked twice: by the broker's MQTT 5 reason code (PUBACK/SUBACK 0x87 "Not
authorized") and by a subscriber that must not receive the message. "Not received" is made exact
with a marker: an allowed message published afterwards on the same connection is delivered in
order, so once the marker is in, a forbidden message published before it would be too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))  # importlib mode: the shared helper
import enrollment_testkit as kit

from collector.enrollment.broker import AdminConnection, DynsecBackend
from collector.enrollment.errors import BrokerError
from collector.enrollment.passwords import new_password

pytestmark = [pytest.mark.mosquitto]

NOT_AUTHORIZED = 0x87


@pytest.fixture(params=["dynsec", "files"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[kit.SecuredBroker]:
    with kit.secured_broker(request.param, tmp_path) as secured:
        yield secured


def enroll_two_agents(broker: kit.SecuredBroker) -> dict[str, str]:
    """Two enrolled agents: id → password."""
    assert broker.backend is not None
    accounts = {"pos-a-1234abcd": new_password(), "pos-b-5678ef01": new_password()}
    for username, password in accounts.items():
        broker.backend.add_agent(username, password)
    for username, password in accounts.items():  # the files backend applies after the SIGHUP reload
        kit.connect_until(broker, username, password, accepted=True).close()
    return accounts


@pytest.fixture
def agents(broker: kit.SecuredBroker) -> dict[str, str]:
    return enroll_two_agents(broker)


@pytest.fixture
def dynsec(tmp_path: Path) -> Iterator[tuple[kit.SecuredBroker, dict[str, str]]]:
    """The production-config broker only (features the password-file backend does not have)."""
    with kit.secured_broker("dynsec", tmp_path) as secured:
        yield secured, enroll_two_agents(secured)


def test_agent_publishes_its_own_uplink_topics_and_reads_its_own_downlink(
    broker: kit.SecuredBroker, agents: dict[str, str]
) -> None:
    collector = broker.collector()
    assert collector.subscribe("kassa/v1/#").value == 1  # granted QoS 1
    agent = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd")
    assert agent.accepted
    for filt in ("kassa/v1/pos-a-1234abcd/cmd", "kassa/v1/pos-a-1234abcd/ack", "kassa/v1/_collector/status"):
        assert not agent.subscribe(filt).is_failure, filt

    uplink = [
        "kassa/v1/pos-a-1234abcd/status",
        "kassa/v1/pos-a-1234abcd/birth",
        "kassa/v1/pos-a-1234abcd/state/kkt-1",
        "kassa/v1/pos-a-1234abcd/event/_agent",
        "kassa/v1/pos-a-1234abcd/hist",
    ]
    for topic in uplink:
        assert not agent.publish(topic, b"up").is_failure, topic
        collector.wait_for(topic, b"up")

    for topic in ("kassa/v1/pos-a-1234abcd/cmd", "kassa/v1/pos-a-1234abcd/ack", "kassa/v1/_collector/status"):
        assert not collector.publish(topic, b"down").is_failure, topic
        agent.wait_for(topic, b"down")
    agent.close()
    collector.close()


def test_agent_cannot_publish_into_another_agents_topics_nor_send_cmd_or_ack(
    broker: kit.SecuredBroker, agents: dict[str, str]
) -> None:
    collector = broker.collector()
    collector.subscribe("kassa/v1/#")
    victim = broker.probe("pos-b-5678ef01", agents["pos-b-5678ef01"], "pos-b-5678ef01")
    victim.subscribe("kassa/v1/pos-b-5678ef01/cmd")
    victim.subscribe("kassa/v1/pos-b-5678ef01/ack")
    agent = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd")

    forbidden = [
        "kassa/v1/pos-b-5678ef01/state/kkt-9",  # impersonating another agent
        "kassa/v1/pos-b-5678ef01/status",
        "kassa/v1/pos-b-5678ef01/cmd",  # commanding another agent
        "kassa/v1/pos-b-5678ef01/ack",  # faking the collector's high-water mark
        "kassa/v1/pos-a-1234abcd/cmd",  # downlink kinds only come from the collector
        "kassa/v1/pos-a-1234abcd/ack",
        "kassa/v1/_collector/status",  # pretending the collector went offline
        "kassa/v1/pos-a-1234abcd/other",
    ]
    for topic in forbidden:
        assert agent.publish(topic, b"forged").value == NOT_AUTHORIZED, topic

    marker = "kassa/v1/pos-a-1234abcd/state/marker"
    assert not agent.publish(marker, b"marker").is_failure
    collector.wait_for(marker, b"marker")
    leaked = [topic for topic, payload in collector.messages + victim.messages if payload == b"forged"]
    assert leaked == []
    for probe in (agent, victim, collector):
        probe.close()


FOREIGN_FILTERS = (
    "kassa/v1/pos-b-5678ef01/cmd",
    "kassa/v1/pos-b-5678ef01/ack",
    "kassa/v1/+/cmd",
    "kassa/v1/#",
    "#",
    "$share/spy/kassa/v1/pos-b-5678ef01/cmd",
    "kassa/v1/pos-b-5678ef01/state/+",
)


def test_agent_cannot_read_another_agents_cmd(broker: kit.SecuredBroker, agents: dict[str, str]) -> None:
    """dynsec refuses the SUBSCRIBE itself; Mosquitto's ACL file grants any SUBACK and enforces
    ``read`` when delivering. Either way nothing of another agent may arrive."""
    agent = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd")
    for filt in FOREIGN_FILTERS:
        reason = agent.subscribe(filt)
        if broker.kind == "dynsec":
            assert reason.value == NOT_AUTHORIZED, filt
    assert not agent.subscribe("kassa/v1/pos-a-1234abcd/cmd").is_failure

    collector = broker.collector()
    for topic in ("kassa/v1/pos-b-5678ef01/cmd", "kassa/v1/pos-b-5678ef01/ack"):
        assert not collector.publish(topic, b"secret").is_failure
    other = broker.probe("pos-b-5678ef01", agents["pos-b-5678ef01"], "pos-b-5678ef01")
    assert not other.publish("kassa/v1/pos-b-5678ef01/state/kkt-1", b"secret").is_failure
    other.close()
    collector.publish("kassa/v1/pos-a-1234abcd/cmd", b"marker")
    agent.wait_for("kassa/v1/pos-a-1234abcd/cmd", b"marker")
    assert {topic for topic, _ in agent.messages} == {"kassa/v1/pos-a-1234abcd/cmd"}
    agent.close()
    collector.close()


def test_mqtt_311_agent_gets_failure_subacks_for_another_agents_cmd(
    dynsec: tuple[kit.SecuredBroker, dict[str, str]],
) -> None:
    broker, agents = dynsec
    agent = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd", protocol=mqtt.MQTTv311)
    assert agent.accepted
    for filt in FOREIGN_FILTERS:
        assert agent.subscribe(filt).is_failure, filt  # SUBACK 0x80
    assert not agent.subscribe("kassa/v1/pos-a-1234abcd/cmd").is_failure
    agent.close()


def test_revoked_credentials_are_refused_at_connect(broker: kit.SecuredBroker, agents: dict[str, str]) -> None:
    assert broker.backend is not None
    connected = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd")
    assert connected.accepted
    broker.backend.remove_agent("pos-a-1234abcd")
    connected.wait_disconnected()  # a live session of the revoked agent is closed as well
    refused = kit.connect_until(broker, "pos-a-1234abcd", agents["pos-a-1234abcd"], accepted=False)
    assert refused.connack in {"Not authorized", "Bad user name or password"}
    refused.close()
    other = broker.probe("pos-b-5678ef01", agents["pos-b-5678ef01"], "pos-b-5678ef01")
    assert other.accepted  # revoking one agent leaves the others alone
    other.close()


def test_wrong_password_and_anonymous_are_refused(broker: kit.SecuredBroker, agents: dict[str, str]) -> None:
    wrong = broker.probe("pos-a-1234abcd", "not-the-password", "pos-a-1234abcd")
    assert not wrong.accepted
    for port in {broker.agent_port, broker.collector_port}:
        tls = broker.ca_file if port == broker.agent_port else None
        anonymous = kit.MqttProbe(port, None, None, f"anon-{port}", ca_file=tls)
        assert anonymous.connack == "Not authorized", port
        anonymous.close()
    wrong.close()


def test_dynsec_binds_the_client_id_so_an_agent_cannot_take_over_another_session(
    dynsec: tuple[kit.SecuredBroker, dict[str, str]],
) -> None:
    broker, agents = dynsec
    victim = broker.probe("pos-b-5678ef01", agents["pos-b-5678ef01"], "pos-b-5678ef01")
    assert victim.accepted
    thief = broker.probe("pos-b-5678ef01", agents["pos-b-5678ef01"], "pos-a-1234abcd")  # right password, other id
    assert thief.connack == "Not authorized"
    assert victim.client.is_connected()
    victim.close()
    thief.close()


def test_production_config_refuses_plain_mqtt_on_the_agent_listener(
    dynsec: tuple[kit.SecuredBroker, dict[str, str]],
) -> None:
    """Valid credentials in clear text on the agents' port: the TLS listener drops the connection."""
    broker, agents = dynsec
    plain = kit.MqttProbe(broker.agent_port, "pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd", timeout=3)
    assert not plain.accepted
    plain.close()


def test_only_the_dynsec_admin_can_change_accounts(dynsec: tuple[kit.SecuredBroker, dict[str, str]]) -> None:
    broker, agents = dynsec
    agent = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd")
    create = b'{"commands":[{"command":"createClient","username":"evil","password":"x"}]}'
    assert agent.publish("$CONTROL/dynamic-security/v1", create).value == NOT_AUTHORIZED
    assert agent.subscribe("$CONTROL/dynamic-security/#").value == NOT_AUTHORIZED
    agent.close()
    collector = broker.collector()
    assert collector.publish("$CONTROL/dynamic-security/v1", create).value == NOT_AUTHORIZED
    collector.close()
    evil = broker.probe("evil", "x", "evil")
    assert evil.connack == "Not authorized"
    evil.close()

    wrong_admin = DynsecBackend(AdminConnection("127.0.0.1", broker.collector_port, kit.ADMIN_USER, "wrong"))
    with pytest.raises(BrokerError, match="admin login refused"):
        wrong_admin.add_agent("pos-z-0", "pw")


def test_collectors_scaled_out_under_a_shared_subscription_receive_agent_states(
    broker: kit.SecuredBroker, agents: dict[str, str]
) -> None:
    collector = broker.collector("kassa-collector-2")
    assert not collector.subscribe("$share/collectors/kassa/v1/+/state/+").is_failure
    agent = broker.probe("pos-a-1234abcd", agents["pos-a-1234abcd"], "pos-a-1234abcd")
    agent.publish("kassa/v1/pos-a-1234abcd/state/kkt-1", b"shared")
    collector.wait_for("kassa/v1/pos-a-1234abcd/state/kkt-1", b"shared")
    agent.close()
    collector.close()
