"""pyl2tp.mgmt."""
