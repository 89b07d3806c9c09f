"""pyl2tp test suite; a package so that ``tests.support`` is importable from any test."""
