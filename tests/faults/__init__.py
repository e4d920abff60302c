"""Fault injection for the fault tests: :class:`tests.faults.proxy.FaultProxy`."""
