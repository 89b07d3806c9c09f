"""pyl2tp.cli."""
