"""Helpers shared by tests: namespace hosts and topologies."""
