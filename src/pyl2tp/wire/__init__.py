"""Pure codecs for every byte L2TP puts on the wire: no I/O, no clock.

Everything that parses network bytes raises only :class:`pyl2tp.wire.errors.ParseError` (or a
subclass), carrying the result and error code the protocol prescribes for the failure.
"""
