"""Shtrih-M "Протокол работы ККТ": framing, link state machine, messages, error codes."""
