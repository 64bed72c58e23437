"""Scenario files: the initial state of a simulated register and a timeline of what happens to it.

A scenario is a versioned TOML file (``format = 1``). Times are relative to the simulation
start, written as signed durations (``"10d"``, ``"-23h40m"``, ``"+30s"``). Example::

    format = 1
    description = "shift opened 23 h 40 min ago: expires 20 sim-minutes after start"

    [state]
    shift_opened = "-23h40m"
    unsent = { count = 40, oldest = "-20d" }
    ofd_connected = false

    [life]                 # optional background activity
    sell_every = "5m"      # one receipt every 5 sim-minutes
    ofd_drain_every = "1m" # the OFD takes the whole queue when connected
    opens = "08:00"        # the store's day on the register clock: the cashier opens the shift
    closes = "22:00"       # ... and closes it (Z-report); sales only in between

    [[at]]
    t = "+30s"
    action = "paper_out"

``[state]`` keys (all optional): ``fn_valid_for`` (duration, default 450d), ``fn_phase``
(setup/ready/fiscal/post-fiscal/archive or the phase byte), ``shift_opened`` (negative duration),
``shift_number`` (of the open shift, else of the last closed one), ``receipts`` (sold at start in
the open shift), ``unsent = {count, oldest}`` (``count`` is what the register reports at start,
this shift's open report and receipts included), ``ofd_connected``, ``paper``, ``cover_open``,
``documents_left``, ``fn_memory_full``, ``critical_error``, the OFD diagnosis keys ``ofd_acks``
(false: the OFD takes documents but sends no receipts), ``autonomous`` (registered in autonomous
mode: no OFD exchange), ``ofd_host``/``ofd_port`` (table 19: where the register sends),
``ofd_settings_changed`` (the OFD sent new connection settings: FF39 b4), and the identity strings ``serial``,
``rnm``, ``inn``, ``model_name``, ``fn_serial``, ``ffd_version`` ("1.05", "1.1" or "1.2"). ``start`` (top level) pins the register clock's
start. Timeline actions: see :data:`ACTIONS` (``sell`` takes ``count``/``amount``,
``replace_fn`` takes ``serial``/``valid_for``, ``ofd_server`` takes ``ofd_host``/``ofd_port``).

``[[action_faults]]`` (top level) scripts the remote actions, each entry firing once in file order:
``action`` (x_report, z_report, open_shift, set_datetime, reboot) and either ``refuse`` — the
register's error code, one number or per protocol ``{ shtrih = 0x6B, atol = 103 }`` (a protocol
left out runs the action) — or ``drop = "2s"`` — the register falls silent mid-action, having
carried it out unless ``executed = false``. An action's refusals fire before its drops. Same effect
as ``kassa-sim --action-fault``.

Shipped scenarios live in ``firmware_sim/scenarios/``; :func:`load_scenario` takes a name
or a path. Bad files raise :class:`ScenarioError` naming the file and the offending key.

The package reads files (:mod:`.loading`), holds what they say (:mod:`.definition`, in the
:mod:`.values` they are written in), defines the timeline's :mod:`.actions` and runs a scenario
against a register model (:mod:`.runner`); callers import from ``firmware_sim.scenario``.
"""

from firmware_sim.scenario.actions import ACTIONS, DEFAULT_NEW_FN_LIFE
from firmware_sim.scenario.definition import ActionFault, Life, Scenario, TimedAction
from firmware_sim.scenario.loading import (
    FORMAT_VERSION,
    SCENARIO_DIR,
    available_scenarios,
    load_scenario,
    parse_scenario,
)
from firmware_sim.scenario.runner import MAX_CATCH_UP_SALES, ScenarioRunner
from firmware_sim.scenario.values import ScenarioError, parse_duration

__all__ = [
    "ACTIONS",
    "DEFAULT_NEW_FN_LIFE",
    "FORMAT_VERSION",
    "MAX_CATCH_UP_SALES",
    "SCENARIO_DIR",
    "ActionFault",
    "Life",
    "Scenario",
    "ScenarioError",
    "ScenarioRunner",
    "TimedAction",
    "available_scenarios",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]
