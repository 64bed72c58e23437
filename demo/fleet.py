"""The demo fleet as data: a client company with two brands in four cities, its stores, registers
(both protocols) with the problems ops should see first, OFD contracts, tags and demo users.

Nothing here does I/O; ``build_fleet(n)`` is deterministic, so the smoke test and the printed
logins always describe the same fleet.

Registers are dealt round-robin over the stores; the first ones get the problem profiles in
``PROBLEMS`` (so even a small ``--registers 12`` fleet shows every kind of alert), the rest are
mostly healthy with a few milder variations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

Protocol = Literal["shtrih", "atol"]

COMPANY = "ООО «Демо Ритейл»"
COMPANY_INN = "7700000009"  # a valid (check digit holds) but fictional ИНН
LEVELS = ("company", "brand", "city", "store")
BRANDS = ("Продукты у дома", "Гипермаркет «Берёзка»")
CITIES = (("Москва", "msk"), ("Казань", "kzn"), ("Новосибирск", "nsk"), ("Екатеринбург", "ekb"))
STORES_PER_BRAND = 12  # spread evenly over the cities: 3 per city
MIN_REGISTERS, MAX_REGISTERS, DEFAULT_REGISTERS = 1, 200, 48
CONTRACT_YEAR = timedelta(days=365)


@dataclass(frozen=True)
class Profile:
    """What one simulated register is like: a shipped scenario plus tweaks of its ``[state]``.

    ``agent_offline``: its agent is started, reports, then is killed (SIGKILL, so the broker
    publishes its last will) and never comes back. ``contract``: days until the OFD contract's
    paid-until (negative: already expired), None for a register with no contract on file,
    ``activated=False`` for a service never activated. ``cashier_day``: the store opens and closes
    the shift on the demo's daily timetable; off where the planted fault is about the shift or keeps
    the register from closing one (a long shift, a full or unfiscalised ФН).
    """

    name: str
    scenario: str
    expect: tuple[str, ...] = ()  # alert rules this profile must raise (the smoke test checks them)
    state: dict[str, Any] = field(default_factory=dict)
    drop_actions: tuple[str, ...] = ()  # timeline actions removed, e.g. paper never comes back
    contract_days: int | None = 300
    contract_activated: bool = True
    agent_offline: bool = False
    cashier_day: bool = True


HEALTHY = Profile("healthy", "healthy")
PROBLEMS: tuple[Profile, ...] = (
    Profile("long-shift", "long-shift", expect=("shift_too_long",), cashier_day=False),
    Profile("ofd-backlog-20d", "ofd-backlog", expect=("ofd_backlog",)),
    Profile("fn-expiring-10d", "fn-expiring", expect=("fn_validity",)),
    Profile("ofd-unpaid", "healthy", expect=("ofd_contract",), contract_days=-12),
    Profile("agent-offline", "healthy", expect=("agent_offline",), agent_offline=True),
    Profile("paper-out", "paper-out", expect=("paper_out",), drop_actions=("paper_in",)),
    Profile("fn-memory-full", "fn-memory-full", expect=("fn_memory",), cashier_day=False),
    Profile("not-fiscal", "not-fiscal", expect=("fn_not_fiscal",), contract_days=None, cashier_day=False),
    Profile("fn-expiring-2d", "fn-expiring", expect=("fn_validity",), state={"fn_valid_for": "2d"}),
    Profile("ofd-paid-5d", "healthy", expect=("ofd_contract",), contract_days=5),
    Profile("ofd-never-activated", "healthy", expect=("ofd_contract",), contract_activated=False),
)
# Every eighth of the remaining registers is a milder case, so larger fleets are not all green.
VARIATIONS: tuple[Profile, ...] = (
    Profile("shift-21h", "healthy", expect=("shift_too_long",), state={"shift_opened": "-21h"}, cashier_day=False),
    Profile(
        "ofd-backlog-3d",
        "ofd-backlog",
        expect=("ofd_backlog",),
        state={"unsent": {"count": 12, "oldest": "-3d"}},
    ),
    Profile("fn-expiring-25d", "fn-expiring", expect=("fn_validity",), state={"fn_valid_for": "25d"}),
)


@dataclass(frozen=True)
class Store:
    brand: str
    city: str
    city_code: str
    name: str
    code: str  # short, for agent ids: "msk-03"


@dataclass(frozen=True)
class DemoRegister:
    register_id: str
    agent_id: str
    protocol: Protocol
    profile: Profile
    store: Store
    serial: str
    fn_serial: str
    rnm: str
    tags: tuple[str, ...]

    def scenario_state(self) -> dict[str, Any]:
        """The ``[state]`` overrides that make this register itself: identity, then the profile's."""
        return {
            "serial": self.serial,
            "fn_serial": self.fn_serial,
            "rnm": self.rnm,
            "inn": COMPANY_INN,
            **self.profile.state,
        }

    def contract(self, today: date) -> tuple[bool, date | None] | None:
        """(activated, paid_until) of its OFD contract, or None when there is none on file."""
        days = self.profile.contract_days
        if days is None:
            return None
        return self.profile.contract_activated, today + timedelta(days=days)


@dataclass(frozen=True)
class DemoUser:
    email: str
    password: str
    role: str  # a collector.accounts.rights.Role value
    group: str
    scope: tuple[str, ...]  # node names from below the root: () = the whole company
    description: str


USERS: tuple[DemoUser, ...] = (
    DemoUser("owner@demo.kassa", "demo-owner-pass", "owner", "Владельцы", (), "владелец: вся компания"),
    DemoUser(
        "kazan@demo.kassa",
        "demo-kazan-pass",
        "operator",
        "Управляющие Казани",
        (BRANDS[0], "Казань"),
        f"управляющий: только {BRANDS[0]} / Казань",
    ),
    DemoUser(
        "accountant@demo.kassa",
        "demo-accountant-pass",
        "accountant",
        "Бухгалтерия",
        (),
        "бухгалтер: договоры ОФД, только просмотр",
    ),
)


@dataclass(frozen=True)
class Fleet:
    stores: tuple[Store, ...]
    registers: tuple[DemoRegister, ...]
    users: tuple[DemoUser, ...] = USERS

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted({tag for register in self.registers for tag in register.tags}))

    def expected_rules(self) -> set[str]:
        return {rule for register in self.registers for rule in register.profile.expect}


def stores() -> tuple[Store, ...]:
    per_city = STORES_PER_BRAND // len(CITIES)
    out = []
    for brand_index, brand in enumerate(BRANDS):
        for city, code in CITIES:
            for n in range(per_city):
                number = brand_index * per_city + n + 1
                out.append(Store(brand, city, code, f"Магазин №{number} ({city})", f"{code}-{number:02d}"))
    return tuple(out)


def _profile_for(index: int) -> Profile:
    if index < len(PROBLEMS):
        return PROBLEMS[index]
    rest = index - len(PROBLEMS)
    if rest % 8 == 7:
        return VARIATIONS[(rest // 8) % len(VARIATIONS)]
    return HEALTHY


def _tags(store: Store, index: int) -> tuple[str, ...]:
    fmt = "формат: гипермаркет" if store.brand == BRANDS[1] else "формат: у дома"
    return (fmt, "касса самообслуживания") if index % 5 == 4 else (fmt,)


def _serial(protocol: Protocol, index: int) -> str:
    """Factory serials as the drivers read them back: Shtrih 16 digits, ATOL the 8 digits of 3Fh."""
    return f"0012345600{index + 1:06d}" if protocol == "shtrih" else f"2810{index + 1:04d}"


def build_fleet(count: int = DEFAULT_REGISTERS) -> Fleet:
    if not MIN_REGISTERS <= count <= MAX_REGISTERS:
        raise ValueError(f"--registers must be between {MIN_REGISTERS} and {MAX_REGISTERS}, got {count}")
    all_stores = stores()
    # Step through the stores so consecutive registers land in different cities and brands.
    order = sorted(range(len(all_stores)), key=lambda i: (i % 3, i))
    registers = []
    per_store: dict[str, int] = {}
    for index in range(count):
        store = all_stores[order[index % len(order)]]
        protocol: Protocol = "shtrih" if index % 2 == 0 else "atol"
        per_store[store.code] = per_store.get(store.code, 0) + 1
        serial = _serial(protocol, index)
        registers.append(
            DemoRegister(
                register_id=f"{protocol}-{serial}",  # what the driver derives: vendor + serial
                agent_id=f"pos-{store.code}-{per_store[store.code]}",
                protocol=protocol,
                profile=_profile_for(index),
                store=store,
                serial=serial,
                fn_serial=f"99990789{index + 1:08d}",
                rnm=f"000000{index + 1:04d}012345",
                tags=_tags(store, index),
            )
        )
    return Fleet(all_stores, tuple(registers))
