"""Management errors: an errno the way the kernel's netlink API returns one, plus a message.

The CLI turns them into ``ip l2tp``'s texts (``RTNETLINK answers: File exists``) and the API
carries both the symbolic name and the number, so scripts can match either.
"""

from __future__ import annotations

import errno
import os

# Where Python's errno table prefers an alias, use the name the kernel's headers and docs use.
_KERNEL_NAMES = {errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EWOULDBLOCK: "EAGAIN"}


class L2tpError(Exception):
    """A refused management request: ``code`` is an errno value (EINVAL, ENODEV, ...)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or os.strerror(code))
        self.code = code
        self.message = message or os.strerror(code)

    @property
    def errno_name(self) -> str:
        return _KERNEL_NAMES.get(self.code) or errno.errorcode.get(self.code, str(self.code))

    def as_dict(self) -> dict[str, object]:
        return {"errno": self.errno_name, "code": self.code, "message": self.message}


def einval(message: str) -> L2tpError:
    return L2tpError(errno.EINVAL, message)
