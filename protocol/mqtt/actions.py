"""Remote actions on a register: the names, who may run them by default, and the result an agent
reports back.

An action travels collector → agent as a :class:`~protocol.mqtt.models.CommandPayload` whose
``cmd`` is an :class:`ActionName`, with ``register`` set and a ``deadline``; the agent answers
with ``action_result`` events (``ActionResult`` of ``protocol.mqtt.models`` in the event's ``data``) on the ordinary
event path, so outcomes are store-and-forward like everything else the agent says.

Safety rules every implementation keeps (the reason this module exists):

* An agent never starts an action after its ``deadline`` (a Z-report hours late is harmful); it
  answers ``expired`` instead.
* One command ``id`` is executed at most once per outbox, however often it is delivered; a repeat
  is answered with the first outcome again.
* The agent's local policy decides which actions the register's PC allows; by default only
  :data:`READ_ONLY_ACTIONS`. A refusal says which setting to change.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Final, Literal, TypeAlias


class ActionName(StrEnum):
    CLOSE_SHIFT = "close_shift"  # Z-report: Shtrih 41h; ATOL 56h (mode 3) then 5Ah
    X_REPORT = "x_report"  # Shtrih 40h; ATOL 67h (mode 2)
    OPEN_SHIFT = "open_shift"  # Shtrih E0h; ATOL 9Ah
    SET_DATETIME = "set_datetime"  # Shtrih 21h + 22h/23h; ATOL EDh; only with the shift closed
    CHECK_NOW = "check_now"  # poll at once, with the OFD diagnosis
    REBOOT = "reboot"  # ATOL CE 41h; Shtrih has none


# Actions that change nothing in the register's fiscal state. An X-report prints, but makes no
# fiscal document and closes nothing.
READ_ONLY_ACTIONS: Final[frozenset[ActionName]] = frozenset({ActionName.CHECK_NOW, ActionName.X_REPORT})

DEFAULT_DEADLINE: Final = timedelta(minutes=2)

ActionStatus: TypeAlias = Literal["accepted", "done", "failed", "refused", "expired"]
# Terminal outcomes; "accepted" only says the agent has started.
FINAL_STATUSES: Final[frozenset[str]] = frozenset({"done", "failed", "refused", "expired"})
