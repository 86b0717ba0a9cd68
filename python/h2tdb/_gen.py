"""Generate the protocol module from proto/h2tdb.proto with protoc (Debian: protobuf-compiler).

Used twice: by setup.py, which writes h2tdb_pb2.py into the package it builds, and by
h2tdb/_proto.py when the package runs from a source checkout (no generated module next to
it): the module is then generated into a temporary directory at import and loaded from there.
The generated code is never committed. This file imports nothing from the package, so that
setup.py can load it by path.
"""
import os
import shutil
import subprocess
import tempfile

PROTO_NAME = "h2tdb.proto"
MODULE = "h2tdb_pb2"


def find_protoc():
    """The protoc command: $PROTOC, else protoc on PATH; None when neither exists."""
    exe = os.environ.get("PROTOC") or shutil.which("protoc")
    return exe if exe and os.access(exe, os.X_OK) else None


def source_proto(package_dir):
    """The .proto a source checkout holds: $H2TDB_PROTO, else <repo>/proto/h2tdb.proto
    (package_dir is <repo>/python/h2tdb)."""
    env = os.environ.get("H2TDB_PROTO")
    if env:
        return env
    return os.path.normpath(os.path.join(package_dir, "..", "..", "proto", PROTO_NAME))


def generate(proto, out_dir):
    """Run protoc --python_out on proto, writing out_dir/h2tdb_pb2.py. Returns its path.
    Raises RuntimeError naming what is missing or what protoc said."""
    if not os.path.isfile(proto):
        raise RuntimeError("h2tdb: protocol definition %s not found" % proto)
    protoc = find_protoc()
    if not protoc:
        raise RuntimeError(
            "h2tdb: protoc not found (install Debian's protobuf-compiler, or set PROTOC) "
            "to generate the protocol module from %s" % proto)
    os.makedirs(out_dir, exist_ok=True)
    proto_dir = os.path.dirname(os.path.abspath(proto))
    cmd = [protoc, "--proto_path=" + proto_dir, "--python_out=" + out_dir,
           os.path.join(proto_dir, os.path.basename(proto))]
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:
        raise RuntimeError("h2tdb: %s failed (exit %d): %s" %
                           (" ".join(cmd), run.returncode, run.stderr.strip()))
    path = os.path.join(out_dir, os.path.splitext(os.path.basename(proto))[0] + "_pb2.py")
    if not os.path.isfile(path):
        raise RuntimeError("h2tdb: protoc wrote no %s" % path)
    return path


def generate_temp(proto):
    """Generate into a new temporary directory; returns (directory, module path). The caller
    removes the directory once the module is loaded."""
    tmp = tempfile.mkdtemp(prefix="h2tdb-proto-")
    try:
        return tmp, generate(proto, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
