"""MQTT payloads: round-trips through encode/decode, and every rejection typed with its reason."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor
from protocol.mqtt.errors import (
    AgentMismatch,
    ContractError,
    InvalidJson,
    InvalidPayload,
    PayloadTooLarge,
    RegisterMismatch,
    TopicError,
    UnsupportedSchemaVersion,
)
from protocol.mqtt.models import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    UINT64_MAX,
    AckPayload,
    BirthPayload,
    CollectorStatusPayload,
    CommandPayload,
    DeviceInfo,
    EventKind,
    EventPayload,
    HistBatch,
    HistEventRecord,
    HistStateRecord,
    StatePayload,
    StatusPayload,
    decode,
    encode,
    encode_ack,
    encode_hist_batch,
    pack_hist_batches,
    seq_ranges,
)
from protocol.mqtt.topics import (
    COLLECTOR_STATUS_TOPIC,
    AgentTopic,
    TopicKind,
    ack_topic,
    birth_topic,
    cmd_topic,
    event_topic,
    hist_topic,
    state_topic,
    status_topic,
)

TS = datetime(2026, 11, 28, 9, 0, 0, 123000, tzinfo=UTC)
CLOCK = datetime(2026, 11, 28, 12, 0)


def register_state() -> RegisterState:
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial="0012345678901234",
        register_clock=CLOCK,
        read_at=TS,
        shift=ShiftState(status=ShiftStatus.OPEN, number=7, opened_at=CLOCK - timedelta(hours=3)),
        fn=FnState(serial="9999078900012345", valid_until=date(2027, 1, 1), warnings=["REPLACE_SOON"]),
        ofd=OfdState(unsent_count=5, first_unsent_at=CLOCK - timedelta(days=2)),
    )


def state_payload(seq: int = 3, register: str = "r1", agent: str = "a1") -> StatePayload:
    return StatePayload(
        agent=agent, session=2, seq=seq, ts=TS, device_ts=CLOCK, register=register, reason="change", state=register_state()
    )


def event_payload(seq: int = 4, register: str | None = "r1") -> EventPayload:
    return EventPayload(
        agent="a1", session=2, seq=seq, ts=TS, register=register, kind=EventKind.SHIFT_OPENED,
        message="Смена №7 открыта", data={"number": 7},
    )


def raw_dict(model: Any) -> dict[str, Any]:
    return json.loads(encode(model))


ROUND_TRIPS: list[tuple[str, Any]] = [
    (status_topic("a1"), StatusPayload(agent="a1", session=1, seq=0, ts=TS, status="online", agent_version="0.1.0")),
    (status_topic("a1"), StatusPayload(agent="a1", session=1, seq=0, ts=TS, status="offline", reason="lwt")),
    (
        birth_topic("a1"),
        BirthPayload(
            agent="a1", session=1, seq=0, ts=TS, agent_version="0.1.0", hostname="pos-1",
            devices=[
                DeviceInfo(register_id="r1", protocol="shtrih", url="/dev/ttyACM0", link_up=True, state=register_state()),
                DeviceInfo(register_id="r2", protocol="atol", url="socket://10.0.0.5:5555", link_up=False, error="нет ответа"),
            ],
        ),
    ),
    (state_topic("a1", "r1"), state_payload()),
    (event_topic("a1", "r1"), event_payload()),
    (event_topic("a1", None), event_payload(register=None)),
    (
        hist_topic("a1"),
        HistBatch(agent="a1", ts=TS, records=[HistStateRecord(payload=state_payload()), HistEventRecord(payload=event_payload())]),
    ),
    (cmd_topic("a1"), CommandPayload(id="c-1", cmd="poll-now", args={"register": "r1"})),
    (cmd_topic("a1"), CommandPayload(id="c-2", cmd="format-disk")),  # unknown commands still parse
    (ack_topic("a1"), AckPayload(session=2, seq=UINT64_MAX)),
    (COLLECTOR_STATUS_TOPIC, CollectorStatusPayload(status="online", ts=TS)),
]


@pytest.mark.parametrize(("topic", "payload"), ROUND_TRIPS, ids=[type(p).__name__ for _, p in ROUND_TRIPS])
def test_encode_decode_round_trip(topic: str, payload: Any) -> None:
    raw = encode(payload)
    assert b" " not in raw.replace("Смена №7 открыта".encode(), b"").replace("нет ответа".encode(), b"")  # compact
    assert decode(topic, raw) == payload
    assert decode(AgentTopic.parse(topic) if topic != COLLECTOR_STATUS_TOPIC else topic, raw) == payload


def test_encode_is_utf8_not_escaped() -> None:
    assert "Смена №7 открыта".encode() in encode(event_payload())


def test_timestamps_are_normalised_to_utc() -> None:
    msk = timezone(timedelta(hours=3))
    payload = StatusPayload(agent="a1", session=1, seq=0, ts=datetime(2026, 11, 28, 12, 0, tzinfo=msk), status="online")
    assert payload.ts == datetime(2026, 11, 28, 9, 0, tzinfo=UTC) and payload.ts.utcoffset() == timedelta(0)
    assert raw_dict(payload)["ts"].endswith("Z")


def test_naive_agent_timestamp_is_rejected() -> None:
    raw = raw_dict(state_payload())
    raw["ts"] = "2026-11-28T09:00:00"
    with pytest.raises(InvalidPayload, match="ts"):
        decode(state_topic("a1", "r1"), json.dumps(raw).encode())


def test_unknown_fields_are_ignored() -> None:
    raw = raw_dict(state_payload())
    raw["future_field"] = {"x": 1}
    raw["state"]["fn"]["new_counter"] = 5
    assert decode(state_topic("a1", "r1"), json.dumps(raw).encode()) == state_payload()


@given(session=st.integers(1, UINT64_MAX), seq=st.integers(0, UINT64_MAX))
def test_uint64_session_and_seq_round_trip(session: int, seq: int) -> None:
    ack = AckPayload(session=session, seq=seq)
    assert decode(ack_topic("a1"), encode(ack)) == ack


@pytest.mark.parametrize(("session", "seq"), [(0, 0), (1, -1), (UINT64_MAX + 1, 0), (1, UINT64_MAX + 1)])
def test_out_of_range_session_or_seq_is_invalid(session: int, seq: int) -> None:
    with pytest.raises(InvalidPayload):
        decode(ack_topic("a1"), json.dumps({"v": 1, "session": session, "seq": seq}).encode())


def mutated(change: dict[str, Any], drop: tuple[str, ...] = ()) -> bytes:
    raw = raw_dict(state_payload())
    raw.update(change)
    for key in drop:
        raw.pop(key)
    return json.dumps(raw).encode()


REJECTIONS: list[tuple[str, bytes, type[ContractError], str]] = [
    (state_topic("a1", "r1"), b"\xff\xfe", InvalidJson, "invalid_json"),
    (state_topic("a1", "r1"), b'{"v": 1,', InvalidJson, "invalid_json"),
    (state_topic("a1", "r1"), b"[1, 2]", InvalidPayload, "invalid_payload"),
    (state_topic("a1", "r1"), b"[" * 100_000, InvalidJson, "invalid_json"),  # nesting bomb
    (state_topic("a1", "r1"), mutated({}, drop=("v",)), UnsupportedSchemaVersion, "unsupported_version"),
    (state_topic("a1", "r1"), mutated({"v": SCHEMA_VERSION + 1}), UnsupportedSchemaVersion, "unsupported_version"),
    (state_topic("a1", "r1"), mutated({"v": 0}), UnsupportedSchemaVersion, "unsupported_version"),
    (state_topic("a1", "r1"), mutated({"agent": "a2"}), AgentMismatch, "agent_mismatch"),
    (state_topic("a1", "r1"), mutated({"agent": "a2", "seq": -5}), AgentMismatch, "agent_mismatch"),
    (state_topic("a1", "r2"), mutated({}), RegisterMismatch, "register_mismatch"),
    (state_topic("a1", "r1"), mutated({"reason": "whim"}), InvalidPayload, "invalid_payload"),
    (state_topic("a1", "r1"), mutated({"register": "bad/id"}), InvalidPayload, "invalid_payload"),
    (event_topic("a1", None), encode(event_payload()), RegisterMismatch, "register_mismatch"),
    (event_topic("a1", "r1"), encode(event_payload(register=None)), RegisterMismatch, "register_mismatch"),
    (status_topic("a1"), encode(event_payload()), InvalidPayload, "invalid_payload"),
    ("kassa/v1/a1/bogus", encode(event_payload()), TopicError, "bad_topic"),
    (cmd_topic("a1"), b'{"v": 1, "id": "", "cmd": "rebirth"}', InvalidPayload, "invalid_payload"),
]


@pytest.mark.parametrize(("topic", "raw", "error", "reason"), REJECTIONS)
def test_rejections_are_typed(topic: str, raw: bytes, error: type[ContractError], reason: str) -> None:
    with pytest.raises(error) as info:
        decode(topic, raw)
    assert isinstance(info.value, ContractError)
    assert info.value.reason == reason


def test_invalid_payload_lists_every_bad_field() -> None:
    with pytest.raises(InvalidPayload) as info:
        decode(state_topic("a1", "r1"), mutated({"seq": -1, "reason": "whim"}, drop=("state",)))
    message = str(info.value)
    assert "3 invalid field(s)" in message
    for field in ("seq", "reason", "state"):
        assert field in message


def test_oversized_payloads_are_refused_both_ways() -> None:
    with pytest.raises(PayloadTooLarge):
        decode(state_topic("a1", "r1"), b" " * (MAX_PAYLOAD_BYTES + 1))
    huge = EventPayload(agent="a1", session=1, seq=1, ts=TS, kind=EventKind.COMMAND_ERROR, message="x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLarge):
        encode(huge)


def test_hist_records_must_belong_to_the_topic_agent() -> None:
    batch = HistBatch(agent="a1", ts=TS, records=[HistStateRecord(payload=state_payload(agent="a2"))])
    with pytest.raises(AgentMismatch):
        decode(hist_topic("a1"), encode(batch))


def test_only_hist_payloads_carry_records() -> None:
    # ``check_identity`` looks for records on hist topics only; a records field elsewhere would go unchecked.
    from protocol.mqtt import wire
    from protocol.mqtt.models import MODEL_FOR_KIND

    for kind, model in MODEL_FOR_KIND.items():
        assert ("records" in model.model_fields) is (kind is TopicKind.HIST), kind
    for kind, struct in wire.STRUCT_FOR_KIND.items():
        assert ("records" in struct.__struct_fields__) is (kind is TopicKind.HIST), kind
    assert "records" not in CollectorStatusPayload.model_fields


def test_spliced_hist_batch_decodes_to_the_same_records() -> None:
    records = [state_payload(seq=n) for n in range(3)] + [event_payload(seq=9)]
    raw = encode_hist_batch("a1", TS, [("event" if isinstance(r, EventPayload) else "state", encode(r)) for r in records])
    batch = decode(hist_topic("a1"), raw)
    assert isinstance(batch, HistBatch)
    assert [record.payload for record in batch.records] == records
    assert [record.type for record in batch.records] == ["state", "state", "state", "event"]
    assert batch.ts == TS
    assert decode(hist_topic("a1"), encode_hist_batch("a1", TS, [])) == HistBatch(agent="a1", ts=TS, records=[])


def test_pack_hist_batches_splits_by_size_and_keeps_order() -> None:
    encoded = [encode(state_payload(seq=n)) for n in range(40)]
    limit = 5 * len(encoded[0])
    batches = pack_hist_batches("a1", TS, [("state", raw) for raw in encoded], max_bytes=limit)
    assert len(batches) > 1 and all(len(raw) <= limit for raw in batches)
    seqs = [r.payload.seq for raw in batches for r in decode(hist_topic("a1"), raw).records]  # type: ignore[union-attr]
    assert seqs == list(range(40))
    with pytest.raises(PayloadTooLarge):
        pack_hist_batches("a1", TS, [("state", encoded[0])], max_bytes=len(encoded[0]))
    with pytest.raises(PayloadTooLarge):
        encode_hist_batch("a1", TS, [("state", raw) for raw in encoded * 200])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
TOPICS = [r[0] for r in ROUND_TRIPS]


@given(raw=st.binary(max_size=200), topic=st.sampled_from(TOPICS))
def test_arbitrary_bytes_give_a_typed_error_never_a_crash(raw: bytes, topic: str) -> None:
    try:
        decode(topic, raw)
    except ContractError as exc:
        assert exc.reason
    # (a random byte string that happens to be a valid payload would simply decode)


@given(
    base=st.sampled_from([raw_dict(p) for _, p in ROUND_TRIPS]),
    key=st.sampled_from(["v", "agent", "session", "seq", "ts", "register", "state", "records", "status", "cmd"]),
    value=json_values,
    topic=st.sampled_from(TOPICS),
)
def test_mutated_payloads_give_a_typed_error_never_a_crash(base: dict[str, Any], key: str, value: Any, topic: str) -> None:
    try:
        decode(topic, json.dumps({**base, key: value}).encode())
    except ContractError as exc:
        assert exc.reason


def test_a_refusal_shares_the_ack_topic_with_acks() -> None:
    from protocol.mqtt.models import AckPayload, RefusalPayload

    topic = "kassa/v1/agent-1/ack"
    refusal = decode(topic, b'{"v":1,"refused":"agent_revoked","detail":"revoked","ts":"2026-12-01T10:00:00Z"}')
    assert isinstance(refusal, RefusalPayload) and refusal.refused == "agent_revoked"
    assert isinstance(decode(topic, b'{"v":1,"session":3,"seq":9}'), AckPayload)
    with pytest.raises(InvalidPayload):
        decode(topic, b'{"v":1,"refused":"because","detail":"","ts":"2026-12-01T10:00:00Z"}')
    # An agent that predates refusals reads one as a malformed ack (and logs it), never as an ack.
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AckPayload.model_validate_json(b'{"v":1,"refused":"agent_revoked","detail":"x","ts":"2026-12-01T10:00:00Z"}')


@given(
    session=st.integers(min_value=1, max_value=UINT64_MAX),
    seq=st.integers(min_value=0, max_value=UINT64_MAX),
    epoch=st.none() | st.from_regex(r"[0-9a-f]{16,64}", fullmatch=True),
)
def test_encode_ack_is_the_models_bytes(session: int, seq: int, epoch: str | None) -> None:
    assert encode_ack(session, seq, epoch) == encode(AckPayload(session=session, seq=seq, epoch=epoch))


@pytest.mark.parametrize(("session", "seq", "epoch"), [(0, 1, None), (1, -1, None), (1, UINT64_MAX + 1, None),
                                                       (1, 1, "0123456789abcdef\n"), (1, 1, "XYZ")])
def test_encode_ack_refuses_what_the_model_refuses(session: int, seq: int, epoch: str | None) -> None:
    with pytest.raises(ValidationError):
        encode_ack(session, seq, epoch)


@pytest.mark.parametrize("ranges", [[(5, 3)], [(-1, 2)], [(0, UINT64_MAX + 1)], [(0, 1), (3, 2)]])
def test_encode_ack_refuses_ranges_the_model_refuses(ranges: list[tuple[int, int]]) -> None:
    with pytest.raises(ValidationError):
        encode_ack(1, None, None, ranges)


@given(seqs=st.sets(st.integers(min_value=0, max_value=500), min_size=1, max_size=200))
def test_seq_ranges_cover_exactly_the_seqs_in_separate_runs(seqs: set[int]) -> None:
    ranges = seq_ranges(seqs)
    assert seq_ranges(sorted(seqs, reverse=True)) == ranges  # a list (one seq: the fast path) as a set
    assert {seq for low, high in ranges for seq in range(low, high + 1)} == seqs
    assert all(low <= high for low, high in ranges)
    assert all(later[0] > earlier[1] + 1 for earlier, later in itertools.pairwise(ranges))


@given(
    session=st.integers(min_value=1, max_value=UINT64_MAX),
    seq=st.none() | st.integers(min_value=0, max_value=UINT64_MAX),
    seqs=st.sets(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=50),
    epoch=st.none() | st.from_regex(r"[0-9a-f]{16,64}", fullmatch=True),
)
def test_selective_ack_bytes_are_the_models_and_decode_back(
    session: int, seq: int | None, seqs: set[int], epoch: str | None
) -> None:
    ranges = seq_ranges(seqs)
    raw = encode_ack(session, seq, epoch, ranges)
    assert raw == encode(AckPayload(session=session, seq=seq, ranges=ranges, epoch=epoch))
    decoded = decode("kassa/v1/agent-1/ack", raw)
    assert isinstance(decoded, AckPayload) and decoded.ranges == ranges and decoded.seq == seq


@pytest.mark.parametrize(
    "raw",
    [b'{"v":1,"session":3}', b'{"v":1,"session":3,"ranges":[]}', b'{"v":1,"session":3,"ranges":[[5,4]]}',
     b'{"v":1,"session":3,"ranges":[[1]]}', b'{"v":1,"session":3,"ranges":[[-1,2]]}'],
)
def test_ack_without_a_prefix_or_with_a_bad_range_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidPayload):
        decode("kassa/v1/agent-1/ack", raw)


def test_an_agent_that_predates_selective_acks_keeps_its_records() -> None:
    """An older agent parses ``ranges`` away (extra fields are ignored) and then finds no ``seq``: it
    logs a malformed ack and deletes nothing — never reads it as a prefix."""
    raw = encode_ack(3, None, None, [(0, 9)])

    class OldAck(BaseModel):
        model_config = ConfigDict(extra="ignore")
        v: int
        session: int
        seq: int

    with pytest.raises(ValidationError):
        OldAck.model_validate_json(raw)
