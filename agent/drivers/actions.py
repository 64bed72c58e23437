"""Remote actions on a register through its own protocol, and their typed outcomes.

Each session class (``ShtrihSession``, ``AtolSession`` …) implements :class:`ActionSession`: one
method per action, raising the driver's typed errors. :func:`perform_action` runs one of them and
turns what happened into an :class:`ActionOutcome` — done, refused by the register (its code and
meaning; a refusal because of the shift's state told apart), the link lost, or not supported.

An action is never retried here: a second Z-report is not what anyone asked for. The link
layers' own repeats are safe (the register answers a repeated frame from its cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Protocol

from agent.drivers.errors import ChecksumError, DeviceRefused, NoAnswer, ProtocolViolation
from agent.drivers.link import LinkError
from protocol.mqtt.actions import ActionName


class OutcomeKind(StrEnum):
    DONE = "done"
    REGISTER_ERROR = "register_error"  # the register refused: code and meaning
    WRONG_SHIFT_STATE = "wrong_shift_state"  # refused because the shift is open (or closed)
    LINK_LOST = "link_lost"  # no answer: whether the register carried it out is unknown
    UNSUPPORTED = "unsupported"  # the protocol has no such command


@dataclass(frozen=True)
class ActionOutcome:
    kind: OutcomeKind
    code: int | None = None
    meaning: str | None = None

    @property
    def done(self) -> bool:
        return self.kind is OutcomeKind.DONE


class ActionUnsupported(Exception):
    """The register's protocol has no command for this action."""


# Added to the register's own meaning when it refuses the password: where the installer sets it.
WRONG_PASSWORD_HINT = " — пароль для действий задаётся в конфигурации агента (action_password в разделе устройства)"


class ActionSession(Protocol):
    # Error codes by which this protocol refuses an action because of the shift's state.
    shift_state_errors: ClassVar[frozenset[int]]
    wrong_password_error: ClassVar[int]  # the protocol's "неверный пароль"

    def x_report(self) -> None: ...

    def close_shift(self) -> None: ...

    def open_shift(self) -> None: ...

    def set_datetime(self, when: datetime) -> None:
        """Set the register's clock to ``when``: naive local time, as registers keep it."""
        ...

    def reboot(self) -> None: ...


def perform_action(session: ActionSession, action: ActionName, local_now: datetime) -> ActionOutcome:
    """Run ``action`` once; ``local_now`` (naive local time) is what ``set_datetime`` sets."""
    try:
        if action is ActionName.X_REPORT:
            session.x_report()
        elif action is ActionName.CLOSE_SHIFT:
            session.close_shift()
        elif action is ActionName.OPEN_SHIFT:
            session.open_shift()
        elif action is ActionName.SET_DATETIME:
            session.set_datetime(local_now.replace(microsecond=0))
        elif action is ActionName.REBOOT:
            session.reboot()
        else:
            raise ActionUnsupported(f"{action} is not a register command")
    except DeviceRefused as refused:
        kind = OutcomeKind.WRONG_SHIFT_STATE if refused.code in session.shift_state_errors else OutcomeKind.REGISTER_ERROR
        hint = WRONG_PASSWORD_HINT if refused.code == session.wrong_password_error else ""
        return ActionOutcome(kind, refused.code, refused.meaning + hint)
    except ActionUnsupported as exc:
        return ActionOutcome(OutcomeKind.UNSUPPORTED, meaning=str(exc))
    except (LinkError, NoAnswer, ChecksumError) as exc:
        return ActionOutcome(OutcomeKind.LINK_LOST, meaning=str(exc))
    except ProtocolViolation as exc:
        return ActionOutcome(OutcomeKind.REGISTER_ERROR, meaning=str(exc))
    return ActionOutcome(OutcomeKind.DONE)
