"""Which ``DeviceEndpoint`` class renders the model for each protocol, imported only when asked for.

Dotted names keep this module importable while a protocol's device module is missing or broken,
and keep ``kassa-sim --help`` fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.model import RegisterModel

DEVICE_CLASSES: dict[str, str] = {
    "shtrih": "firmware_sim.shtrih:ShtrihDevice",
    "shtrih-alt": "firmware_sim.shtrih:ShtrihAltLinkDevice",
    "atol": "firmware_sim.atol:AtolDevice",
    "atol2": "firmware_sim.atol:AtolV2Device",
}


class UnknownProtocol(ValueError):
    def __init__(self, protocol: str) -> None:
        super().__init__(f"unknown protocol {protocol!r}: the simulator speaks {', '.join(sorted(DEVICE_CLASSES))}")


def device_protocols() -> list[str]:
    return sorted(DEVICE_CLASSES)


def device_class(protocol: str) -> Any:
    try:
        module_name, _, attr = DEVICE_CLASSES[protocol].partition(":")
    except KeyError:
        raise UnknownProtocol(protocol) from None
    return getattr(importlib.import_module(module_name), attr)


def make_device(protocol: str, model: RegisterModel, *, tcp: bool = False) -> DeviceEndpoint:
    """The device role of ``protocol`` answering from ``model``; ``tcp`` selects network quirks."""
    endpoint: DeviceEndpoint = device_class(protocol)(model, tcp=tcp)
    return endpoint
