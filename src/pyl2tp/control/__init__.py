"""pyl2tp.control."""
