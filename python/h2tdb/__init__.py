"""h2tdb: a Python client for the h2tdb feature-cache service (`h2tdb serve`).

    import h2tdb
    with h2tdb.Client("127.0.0.1:7433") as c:
        c.create_task("shirts", "fmnist", train="train:1000", test="test")
        job = c.train("shirts", method="head2toe", wait=True,
                      progress=lambda j: print(f"{j.progress:.0%} {j.stage}"))
        res = c.result(job.id)
        print(res.test_accuracy, res.head.weights.shape)

The messages are generated from proto/h2tdb.proto (h2tdb.pb); replies are Records with the
.proto's field names. Errors raise h2tdb.Error subclasses (NotFound, InvalidArgument,
AuthError, ...), each with the server's code and message.
"""
from ._proto import pb
from .client import Client, Record, DEFAULT_ADDR, FINAL_STATES
from .errors import (Error, NoMemory, InvalidArgument, IOFailure, NotFound, Exists, Corrupt,
                     VersionMismatch, Unsupported, StoreFailure, ProtocolError, Cancelled,
                     TooBig, PermissionDenied, ShapeMismatch, NumericError, StateError,
                     NetworkError, AuthError, Busy, Timeout, JobFailed)
from .head import Head

__version__ = "0.1.0"
__all__ = ["pb", "Client", "Record", "DEFAULT_ADDR", "FINAL_STATES", "Head", "Error", "NoMemory",
           "InvalidArgument", "IOFailure", "NotFound", "Exists", "Corrupt", "VersionMismatch",
           "Unsupported", "StoreFailure", "ProtocolError", "Cancelled", "TooBig",
           "PermissionDenied", "ShapeMismatch", "NumericError", "StateError", "NetworkError",
           "AuthError", "Busy", "Timeout", "JobFailed"]

# the .proto's enums and their values (JobState.Name(job.state), JOB_DONE, METHOD_HEAD2TOE, ...)
for _name, _enum in pb.DESCRIPTOR.enum_types_by_name.items():
    globals()[_name] = getattr(pb, _name)
    for _v in _enum.values:
        globals()[_v.name] = _v.number
        __all__.append(_v.name)
    __all__.append(_name)
del _name, _enum, _v
