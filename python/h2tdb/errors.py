"""Exceptions: every failure the client raises is an h2tdb.Error.

A server's Error reply becomes the subclass of its code (the negative H2T_E* numbers of
common/err.h), carrying the code and the server's message, which names the bad input.
Local failures (connect, timeout, a malformed or oversized reply) use the same classes.
"""


class Error(Exception):
    """An h2tdb failure. code: the negative H2T_E* number; message: what was wrong."""

    code = 0
    name = "error"

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return "%s: %s" % (self.name, self.message) if self.message else self.name


def _cls(name, code, text, *bases):
    return type(name, (Error,) + bases, {"code": code, "name": text,
                                         "__doc__": "%s (H2T code %d)." % (text, code)})


NoMemory = _cls("NoMemory", -1, "out of memory", MemoryError)
InvalidArgument = _cls("InvalidArgument", -2, "invalid argument", ValueError)
IOFailure = _cls("IOFailure", -3, "input/output error", OSError)
NotFound = _cls("NotFound", -4, "no such item", LookupError)
Exists = _cls("Exists", -5, "already exists")
Corrupt = _cls("Corrupt", -6, "corrupt or truncated data")
VersionMismatch = _cls("VersionMismatch", -7, "unsupported format version")
Unsupported = _cls("Unsupported", -8, "unsupported feature")
StoreFailure = _cls("StoreFailure", -9, "storage engine failure")
ProtocolError = _cls("ProtocolError", -10, "protocol error")
Cancelled = _cls("Cancelled", -11, "operation cancelled")
TooBig = _cls("TooBig", -12, "too large")
PermissionDenied = _cls("PermissionDenied", -13, "permission denied", PermissionError)
ShapeMismatch = _cls("ShapeMismatch", -14, "shape mismatch", ValueError)
NumericError = _cls("NumericError", -15, "NaN or infinity where a finite number is required")
StateError = _cls("StateError", -16, "object in the wrong state for this operation")
NetworkError = _cls("NetworkError", -17, "network error", ConnectionError)
AuthError = _cls("AuthError", -18, "authentication failed")
Busy = _cls("Busy", -19, "resource busy / limit reached")
Timeout = _cls("Timeout", -20, "timed out", TimeoutError)


class JobFailed(Error):
    """A job waited for ended FAILED. job: its final state; message: the job's error text."""

    name = "job failed"

    def __init__(self, message, job=None):
        super().__init__(message)
        self.job = job


BY_CODE = {c.code: c for c in (
    NoMemory, InvalidArgument, IOFailure, NotFound, Exists, Corrupt, VersionMismatch,
    Unsupported, StoreFailure, ProtocolError, Cancelled, TooBig, PermissionDenied,
    ShapeMismatch, NumericError, StateError, NetworkError, AuthError, Busy, Timeout)}


def from_code(code, message):
    """The exception for a server Error (code, message); an unknown code is a ProtocolError
    that keeps the server's number."""
    cls = BY_CODE.get(code)
    if cls is None:
        return ProtocolError(message, code=code)
    return cls(message)
