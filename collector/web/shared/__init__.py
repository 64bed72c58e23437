"""What the JSON API (``web.api``) and the pages (``web.pages``) both use, so neither imports the
other:

* the fleet's read model — ``fleet_models`` (query and answer models of registers, alerts, the
  tree), ``fleet_queries`` (scoped list queries), ``present`` (rows → answer models) — because the
  register and alert pages render the very summaries the API returns;
* ``alert_actions`` (acknowledge, comment, silence within the caller's action scope);
* the account plumbing — ``accounts`` (session auth and its form token, the caller, one
  transaction with mail after the commit, library errors → problems, rate limits), ``csrf`` (form
  tokens), ``zones`` (the company's time zone, cached), ``account_actions`` (lists and audit
  records both show or write: groups, КЭП orders, enrollment rights, receiver changes).
"""
