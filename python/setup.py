"""Build and install the h2tdb Python client.

    pip install ./python            (from the repository root; see docs/python.md)

build_py writes h2tdb/h2tdb_pb2.py into the built package, generated from the repository's
proto/h2tdb.proto (or $H2TDB_PROTO) by protoc (Debian: protobuf-compiler). Nothing is
downloaded: the runtime dependencies are Debian's python3-protobuf and python3-numpy.
"""
import importlib.util
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _gen():
    spec = importlib.util.spec_from_file_location("h2tdb_gen", os.path.join(HERE, "h2tdb",
                                                                            "_gen.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildPyWithProto(build_py):
    """build_py, then the protocol module generated from the .proto into the build."""

    def run(self):
        super().run()
        gen = _gen()
        proto = gen.source_proto(os.path.join(HERE, "h2tdb"))
        out = gen.generate(proto, os.path.join(self.build_lib, "h2tdb"))
        self.announce("generated %s from %s" % (out, proto), level=2)


setup(
    name="h2tdb",
    version="0.1.0",
    description="Client for the h2tdb feature-cache and head-training service",
    packages=["h2tdb"],
    python_requires=">=3.8",
    install_requires=["protobuf>=3.20", "numpy>=1.17"],
    cmdclass={"build_py": BuildPyWithProto},
)
