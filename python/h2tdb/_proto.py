"""The protocol module generated from proto/h2tdb.proto (see _gen.py).

An installed package carries h2tdb_pb2.py, written by setup.py at build time. A source
checkout has none: the module is generated at import from the repository's .proto with protoc.
SOURCE says which happened ("installed" or the .proto path).
"""
import importlib.util
import os
import shutil
import sys

from . import _gen

try:
    from . import h2tdb_pb2 as pb  # noqa: F401  (written by setup.py)
    SOURCE = "installed"
except ImportError:
    _proto = _gen.source_proto(os.path.dirname(os.path.abspath(__file__)))
    try:
        _tmp, _path = _gen.generate_temp(_proto)
    except RuntimeError as e:
        raise ImportError(str(e)) from None
    try:
        _spec = importlib.util.spec_from_file_location(__package__ + ".h2tdb_pb2", _path)
        pb = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = pb
        _spec.loader.exec_module(pb)
    finally:
        shutil.rmtree(_tmp, ignore_errors=True)
    SOURCE = _proto
