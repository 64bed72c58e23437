"""Fuzz: the ФН layouts both vendors pass through (``protocol/kkt/fn.py``).

Property: a decoder raises only :class:`~protocol.kkt.errors.DecodeError`; what decodes encodes
back to bytes that decode to the same value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.errors import DecodeError
from protocol.kkt.fn import (
    FnDocument,
    FnExchangeStatus,
    FnFirmware,
    FnResource,
    FnShiftParams,
    FnStatus,
    FnValidity,
    decode_date3,
    decode_datetime5,
    decode_unconfirmed_count,
    encode_date3,
    encode_datetime5,
    encode_unconfirmed_count,
)

sys.path.insert(0, str(Path(__file__).parent))
from fuzzkit import FUZZ

Codec = tuple[Callable[[bytes], Any], Callable[[Any], bytes]]
CODECS: dict[str, Codec] = {
    layout.__name__: (layout.decode, layout.encode)
    for layout in (FnStatus, FnExchangeStatus, FnShiftParams, FnValidity, FnResource, FnFirmware, FnDocument)
}
CODECS |= {
    "datetime5": (decode_datetime5, encode_datetime5),
    "date3": (decode_date3, encode_date3),
    "unconfirmed_count": (decode_unconfirmed_count, encode_unconfirmed_count),
}

# Valid-looking dates are rare in random bytes: bias towards them so the round trip gets exercised.
plausible_dates = st.tuples(st.integers(0, 99), st.integers(1, 12), st.integers(1, 28)).map(bytes)


@FUZZ
@given(st.sampled_from(sorted(CODECS)), st.binary(max_size=48), plausible_dates, st.booleans())
def test_fn_decoders_raise_only_decode_errors_and_round_trip(
    name: str, data: bytes, day: bytes, date_first: bool
) -> None:
    decode, encode = CODECS[name]
    if date_first:
        data = day + data
    try:
        value = decode(data)
    except DecodeError:
        return
    assert decode(encode(value)) == value
