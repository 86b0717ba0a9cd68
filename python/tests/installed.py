"""Run by tests/test_python.c after `pip install` of the package into a venv: the installed
package is the one imported, it carries the generated protocol module (not generated at
import), and it talks to the test's server."""
import os
import sys

import h2tdb

venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
assert os.path.abspath(h2tdb.__file__).startswith(venv), (h2tdb.__file__, venv)
assert h2tdb._proto.SOURCE == "installed", h2tdb._proto.SOURCE
pb2 = os.path.join(os.path.dirname(h2tdb.__file__), "h2tdb_pb2.py")
assert os.path.isfile(pb2), pb2
with h2tdb.Client(os.environ["H2TDB_TEST_ADDR"],
                  token_file=os.environ["H2TDB_TEST_TOKEN_FILE"]) as c:
    h = c.health()
    assert h.version and h.workers >= 1, h
    assert [e.name for e in c.extractions()] == ["ext"]
print("installed h2tdb %s at %s: ok" % (h2tdb.__version__, os.path.dirname(h2tdb.__file__)))
