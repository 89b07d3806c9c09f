"""pyl2tp.daemon."""
