"""ATOL protocol v3: link layer, task buffer, commands (incl. A4 ФН pass-through), error codes."""
