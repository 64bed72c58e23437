"""The simulated register: one pure state machine rendered through every protocol.

No I/O and no real clock: time comes from an injected ``clock`` callable (see
``firmware_sim.clock``), so tests move time by hand and the CLI runs it faster than real time.
Derived values (warning flags, shift expiry, blocking errors) are computed from the state on
every read, exactly as the ФН rules in specs/kkt-protocols.md §5.1 and §6 describe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from protocol.kkt.fn import (
    FN_ERROR_ARCHIVE_FULL,
    FN_ERROR_OFD_WAIT_EXHAUSTED,
    FN_ERROR_SERVICE_LIFE_ENDED,
    FN_ERROR_SHIFT_OVER_24H,
    FnDocument,
    FnDocumentType,
    FnExchangeStatus,
    FnPhase,
    FnResource,
    FnShiftParams,
    FnStatus,
    FnValidity,
    FnWarning,
    OfdExchangeFlag,
)
from protocol.kkt.fn_fiscalisation import FnFiscalisation, WorkMode
from protocol.kkt.state import ShiftStatus

SHIFT_LIMIT = timedelta(hours=24)
OFD_WAIT_LIMIT = timedelta(days=30)
# Firmware picks when to raise "OFD timeout"; we warn a week before the 30-day block [I].
OFD_TIMEOUT_WARNING = timedelta(days=23)
FN_ERROR_WRONG_STATE = 0x02
DOCUMENT_HISTORY = 2000  # documents kept for "find FD" look-ups (FF0A / A4 40)


class FiscalRefused(Exception):
    """The ФН refuses to make a fiscal document; ``code`` is the ФН result code (§2.5)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"ФН refused the document: code {code:#04x}")


class ReceiptState(Exception):
    """A receipt is (or is not) open when the command needs the opposite."""


@dataclass
class Document:
    number: int
    type: FnDocumentType
    created_at: datetime
    shift_number: int | None = None
    ticket_received: bool = False


@dataclass
class RegisterModel:
    """State of one register and its ФН. Mutate only through the methods below."""

    clock: Callable[[], datetime]
    serial: str = "0012345678901234"
    rnm: str = "0000000001012345"
    inn: str = "7701234567"
    model_name: str = "Симулятор ККТ"
    firmware: str = "1.0"
    fn_serial: str = "9999078900012345"
    fn_firmware: str = "fn-1.1-sim"
    fn_phase: FnPhase = FnPhase.FISCAL
    fn_valid_until: date = date(2027, 12, 31)
    registrations_left: int = 11
    registrations_done: int = 1
    documents_left: int = 250_000
    free_kb: int = 2048
    memory_almost_full: bool = False
    critical_error: bool = False
    ffd_version: str = "1.2"
    shift_open: bool = False
    shift_number: int = 0
    shift_opened_at: datetime | None = None
    receipts_in_shift: int = 0
    receipt_open: bool = False
    receipt_type: int = 0
    receipt_total: int = 0  # kopecks
    last_fd_number: int = 0
    ofd_connected: bool = True  # the register's own transport to the OFD is up (FF39 b0)
    ofd_acks: bool = True  # the OFD answers documents with receipts (not: contract or registration trouble)
    autonomous: bool = False  # registered in autonomous mode: documents never go to an OFD
    ofd_settings_changed: bool = False  # the OFD sent new connection settings (FF39 b4)
    ofd_host: str = "127.0.0.1"  # table 19: where the register sends documents
    ofd_port: int = 7777
    paper_present: bool = True
    cover_open: bool = False
    drawer_open: bool = False
    cashier: int = 1
    clock_offset: timedelta = timedelta(0)  # set by the register's "set date/time" commands
    x_reports: int = 0  # X-reports printed (they change no fiscal state)
    ofd_queue: deque[Document] = field(default_factory=deque)
    documents: deque[Document] = field(default_factory=lambda: deque(maxlen=DOCUMENT_HISTORY))

    # ----------------------------------------------------------------- derived, read-only views

    def now(self) -> datetime:
        return self.clock() + self.clock_offset

    def warnings(self) -> FnWarning:
        flags = FnWarning(0)
        days_left = (self.fn_valid_until - self.now().date()).days
        if days_left <= 3:
            flags |= FnWarning.URGENT_REPLACEMENT
        if days_left <= 30:
            flags |= FnWarning.REPLACE_SOON
        if self.memory_almost_full or self.documents_left == 0:
            flags |= FnWarning.MEMORY_ALMOST_FULL
        oldest = self.oldest_unsent_age()
        if oldest is not None and oldest >= OFD_TIMEOUT_WARNING:
            flags |= FnWarning.OFD_TIMEOUT
        if self.critical_error:
            flags |= FnWarning.CRITICAL_ERROR
        return flags

    def oldest_unsent_age(self) -> timedelta | None:
        return self.now() - self.ofd_queue[0].created_at if self.ofd_queue else None

    def shift_status(self) -> ShiftStatus:
        if not self.shift_open:
            return ShiftStatus.CLOSED
        if self.shift_opened_at is not None and self.now() - self.shift_opened_at >= SHIFT_LIMIT:
            return ShiftStatus.EXPIRED
        return ShiftStatus.OPEN

    def blocking_error(self, *, for_shift_close: bool = False) -> int | None:
        """ФН result code that refuses the next fiscal document, or None when it would be made.

        Closing an expired shift is always allowed: that is how a cashier clears error 16h.
        """
        if self.fn_phase != FnPhase.FISCAL:
            return FN_ERROR_WRONG_STATE
        if self.now().date() > self.fn_valid_until:
            return FN_ERROR_SERVICE_LIFE_ENDED
        if self.documents_left == 0:
            return FN_ERROR_ARCHIVE_FULL
        oldest = self.oldest_unsent_age()
        if oldest is not None and oldest > OFD_WAIT_LIMIT:
            return FN_ERROR_OFD_WAIT_EXHAUSTED
        if not for_shift_close and self.shift_status() is ShiftStatus.EXPIRED:
            return FN_ERROR_SHIFT_OVER_24H
        return None

    def fn_status(self) -> FnStatus:
        last = self.documents[-1].created_at if self.documents else None
        return FnStatus(
            phase=int(self.fn_phase),
            current_document=0,
            document_data=False,
            shift_open=self.shift_open,
            warnings=self.warnings(),
            last_document_at=last,
            fn_serial=self.fn_serial,
            last_fd_number=self.last_fd_number,
        )

    def exchange_status(self) -> FnExchangeStatus:
        flags = OfdExchangeFlag(0)
        if self.ofd_connected and not self.autonomous:
            flags |= OfdExchangeFlag.TRANSPORT_CONNECTED
        if self.ofd_settings_changed:
            flags |= OfdExchangeFlag.SETTINGS_CHANGED
        if self.ofd_queue:
            flags |= OfdExchangeFlag.MESSAGE_PENDING
            if self.ofd_connected and not self.ofd_acks:
                flags |= OfdExchangeFlag.WAITING_FOR_TICKET  # sent, no receipt comes back
        first = self.ofd_queue[0] if self.ofd_queue else None
        return FnExchangeStatus(
            flags=flags,
            reading_message=False,
            unsent_count=len(self.ofd_queue),
            first_unsent_number=first.number if first else 0,
            first_unsent_at=first.created_at if first else None,
        )

    def fiscalisation(self) -> FnFiscalisation | None:
        """The registration result (FF09 / ФН 43h); None before the ФН was fiscalised."""
        if self.fn_phase < FnPhase.FISCAL:
            return None
        first = self.documents[0].created_at if self.documents else None
        mode = WorkMode.AUTONOMOUS if self.autonomous else WorkMode(0)
        return FnFiscalisation(first, self.inn, self.rnm, tax_systems=1, work_mode=mode, fd_number=1, fiscal_sign=1)

    def shift_params(self) -> FnShiftParams:
        return FnShiftParams(
            shift_open=self.shift_open, shift_number=self.shift_number, receipt_number=self.receipts_in_shift
        )

    def validity(self) -> FnValidity:
        return FnValidity(self.fn_valid_until, self.registrations_left, self.registrations_done)

    def resource(self) -> FnResource:
        return FnResource(documents_left=self.documents_left, free_kb=self.free_kb)

    def find_document(self, number: int) -> FnDocument | None:
        for doc in reversed(self.documents):
            if doc.number == number:
                return FnDocument(
                    document_type=int(doc.type),
                    ticket_received=doc.ticket_received,
                    created_at=doc.created_at,
                    fd_number=doc.number,
                    fiscal_sign=(doc.number * 2_654_435_761) & 0xFFFFFFFF,
                    shift_number=doc.shift_number,
                )
        return None

    # ----------------------------------------------------------------- state-changing operations

    def _make_document(
        self, kind: FnDocumentType, *, for_shift_close: bool = False, at: datetime | None = None
    ) -> Document:
        code = self.blocking_error(for_shift_close=for_shift_close)
        if code is not None:
            raise FiscalRefused(code)
        self.last_fd_number += 1
        self.documents_left = max(0, self.documents_left - 1)
        doc = Document(self.last_fd_number, kind, at or self.now(), self.shift_number)
        self.documents.append(doc)
        if not self.autonomous:  # an autonomous register keeps its documents: nothing goes to an OFD
            self.ofd_queue.append(doc)
        return doc

    def open_shift(self, at: datetime | None = None) -> Document:
        """Open a shift now, or (scenarios) as if it had been opened at ``at`` in the past."""
        if self.shift_open:
            raise ReceiptState("shift already open")
        self.shift_number += 1
        try:
            doc = self._make_document(FnDocumentType.SHIFT_OPEN, at=at)
        except FiscalRefused:
            self.shift_number -= 1
            raise
        self.shift_open = True
        self.shift_opened_at = doc.created_at
        self.receipts_in_shift = 0
        return doc

    def close_shift(self) -> Document:
        if not self.shift_open:
            raise ReceiptState("shift not open")
        if self.receipt_open:
            raise ReceiptState("receipt open")
        doc = self._make_document(FnDocumentType.SHIFT_CLOSE, for_shift_close=True)
        self.shift_open = False
        self.shift_opened_at = None
        self.receipts_in_shift = 0
        return doc

    def x_report(self) -> None:
        """Print the shift's totals without closing it: no fiscal document, nothing changes."""
        if self.receipt_open:
            raise ReceiptState("receipt open")
        self.x_reports += 1

    def set_clock(self, when: datetime) -> None:
        """The register's clock now reads ``when`` (local time); only with the shift closed."""
        if self.shift_open:
            raise ReceiptState("shift open")
        self.clock_offset = when.replace(microsecond=0) - self.clock()

    def open_receipt(self, receipt_type: int = 0) -> None:
        if not self.shift_open:
            raise ReceiptState("shift not open")
        if self.receipt_open:
            raise ReceiptState("receipt already open")
        code = self.blocking_error()
        if code is not None:
            raise FiscalRefused(code)
        self.receipt_open, self.receipt_type, self.receipt_total = True, receipt_type, 0

    def add_item(self, amount: int) -> None:
        if not self.receipt_open:
            raise ReceiptState("receipt not open")
        self.receipt_total += amount

    def close_receipt(self) -> Document:
        if not self.receipt_open:
            raise ReceiptState("receipt not open")
        doc = self._make_document(FnDocumentType.RECEIPT)
        self.receipt_open = False
        self.receipts_in_shift += 1
        return doc

    def cancel_receipt(self) -> None:
        self.receipt_open = False
        self.receipt_total = 0

    def sell(self, amount: int = 10_000) -> Document:
        """A whole sale: open, one item, close."""
        self.open_receipt(0)
        self.add_item(amount)
        return self.close_receipt()

    def deliver_to_ofd(self, limit: int | None = None) -> int:
        """The OFD acknowledges queued documents (oldest first) if the transport is up and it acks."""
        if not self.ofd_connected or not self.ofd_acks:
            return 0
        delivered = 0
        while self.ofd_queue and (limit is None or delivered < limit):
            self.ofd_queue.popleft().ticket_received = True
            delivered += 1
        return delivered

    def backdate_unsent(self, count: int, oldest_at: datetime) -> None:
        """Fill the OFD queue with ``count`` documents, the oldest made at ``oldest_at`` (scenarios).

        Documents are spread evenly between ``oldest_at`` and now, as receipts of past shifts.
        """
        now = self.now()
        step = (now - oldest_at) / max(count, 1)
        for i in range(count):
            self.last_fd_number += 1
            doc = Document(self.last_fd_number, FnDocumentType.RECEIPT, oldest_at + step * i, self.shift_number)
            self.documents.append(doc)
            self.ofd_queue.append(doc)

    def replace_fn(self, serial: str, valid_until: date) -> None:
        """Field engineer swaps the ФН: a fresh accumulator, empty queue, shift closed."""
        self.fn_serial, self.fn_valid_until = serial, valid_until
        self.fn_phase = FnPhase.FISCAL
        self.ofd_queue.clear()
        self.documents.clear()
        self.shift_open, self.shift_opened_at, self.receipt_open = False, None, False
        self.documents_left, self.memory_almost_full, self.critical_error = 250_000, False, False
