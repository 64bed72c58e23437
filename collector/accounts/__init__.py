"""Accounts, company hierarchy and access rights: tenants' users, sessions and API tokens, the
company tree, groups and grants (``rights.scope_for`` builds the storage ``Scope``), OFD
contracts, КЭП orders and the append-only audit log.

Import the submodules directly (``collector.accounts.rights`` …); this package imports nothing
eagerly, so ``collector.storage`` may import ``collector.accounts.schema`` without a cycle.
"""
