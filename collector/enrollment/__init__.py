"""Agent enrollment: one-time tokens bound to a store node, exchanged by an agent for its identity
and per-agent broker credentials whose ACLs confine it to its own topics.

* ``schema``   — the ``enrollment_tokens`` and ``agent_credentials`` tables (migration 0003);
* ``acl``      — what an agent and the collector may publish and read (one list, two backends);
* ``passwords``— Mosquitto's ``$7$`` PBKDF2-SHA512 password hashes;
* ``broker``   — credential backends: dynamic-security plugin, or password + ACL files;
* ``service``  — create tokens, redeem them, revoke agents;
* ``http``     — aiohttp handlers (``add_routes``);
* ``settings`` — config names → backend and service; ``cli`` — ``kassa-collector enrollment …``.
"""
