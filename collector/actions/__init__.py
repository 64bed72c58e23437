"""Remote actions on a register, the collector's side (issue 10; the contract is
``protocol.mqtt.actions``).

* ``catalogue`` — what each action is called and does, in Russian, and the checks on the register's
  stored state before anything is sent (a clock change with the shift open, a Z-report with no shift);
* ``store`` — the lifecycle rows (``register_actions``): request (rights, one unfinished action
  per register, audit), the agent's results, expiry, reads;
* ``dispatch`` — the collector-process loop that publishes requested commands on the agent's
  ``cmd`` topic (QoS 1, deadline on the agent's clock) and expires the overdue ones; the web tier
  only writes rows, so it needs no broker connection;
* ``bulk`` — «закрыть смены, открытые дольше N ч» on a tree node: preview and per-register results.
"""
