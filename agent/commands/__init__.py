"""``kassa-agent`` subcommands: every module here with ``add_parser(subparsers)`` is one (see ``agent.cli``)."""
