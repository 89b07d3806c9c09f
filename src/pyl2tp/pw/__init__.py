"""pyl2tp.pw."""
