"""The management API: the kernel's L2TP netlink commands as JSON over a Unix socket.

Wire format: one JSON object per line. A request is ``{"seq": N, "cmd": NAME, "attrs": {...}}``
(``"dump": true`` for dumps); the reply is ``{"seq": N, "ok": true, "result": ...}`` or
``{"seq": N, "ok": false, "error": {"errno": "ENODEV", "code": 19, "message": ...}}``.
``{"cmd": "subscribe"}`` turns the connection into a stream of notifications
``{"event": "session_create", "attrs": {...}}``. docs/management-api.md is the schema.
"""
