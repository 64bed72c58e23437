"""Cash-register (ККТ) protocols: one sub-package per vendor family plus shared ФН layouts."""
