"""``kassa-collector`` subcommands: one module each, exposing ``add_parser(subparsers)``.

The CLI discovers every module of this package, so adding ``tenant.py`` (``tenant create``) or
``token.py`` needs no change to ``collector.cli``. ``add_parser`` registers its parser and sets
``func`` (``args -> exit code``) with ``set_defaults``.
"""
