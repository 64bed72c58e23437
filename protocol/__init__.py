"""Pure, sans-I/O wire formats shared by the agent, the simulator and the collector.

Nothing in this package opens a port, a socket or a file, reads a clock or starts a thread.
"""
