"""Tests of Client.classify against a real server, run by tests/test_python.c in `make test`
(H2TDB_TEST_ADDR, H2TDB_TEST_TOKEN_FILE, H2TDB_TEST_IMAGES). The server's store holds one
extraction "imgs" of tests/data/extract_tiny.onnx (layers conv, relu, gap, fc) over 12 PNG
images in H2TDB_TEST_IMAGES/c0..c2 (sample ids: class folders, then file names); it finds the
model in the source tree's tests/data and takes at most 8 images a request. Jobs of tasks
named fail* fail."""
import glob
import os
import sys
import unittest

import numpy as np

import h2tdb

ADDR = os.environ.get("H2TDB_TEST_ADDR")
TOKEN_FILE = os.environ.get("H2TDB_TEST_TOKEN_FILE")
IMAGES = os.environ.get("H2TDB_TEST_IMAGES")
MAX_IMAGES = 8  # the test server's classify_max_images


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@unittest.skipUnless(ADDR and TOKEN_FILE and IMAGES, "needs a server (run through make test)")
class ClassifyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = h2tdb.Client(ADDR, token_file=TOKEN_FILE, timeout=60)
        cls.paths = sorted(glob.glob(os.path.join(IMAGES, "c*", "*.png")))
        assert len(cls.paths) == 12, cls.paths
        cls.c.create_task("t", "imgs", train="ids:0-2,4-6,8-10", test="ids:3,7,11")
        cls.jobs = {}
        for method in ("linear", "all", "head2toe"):
            cls.jobs[method] = cls.c.train("t", method=method, lambdas=[1e-3], folds=2,
                                           keep_fractions=[0.4] if method == "head2toe" else None,
                                           wait=True).id

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def test_classify_equals_predict(self):
        # stored images classified from their files give predict's probabilities, for every
        # method; the numpy head on the stored features gives them too
        for method, job in self.jobs.items():
            r = self.c.classify(job, self.paths[:MAX_IMAGES])
            self.assertEqual(r.job, job)
            self.assertEqual(r.n_classes, 3)
            self.assertEqual(r.class_names, ["c0", "c1", "c2"])
            self.assertEqual(r.probs.shape, (MAX_IMAGES, 3))
            self.assertEqual(r.probs.dtype, np.float32)
            np.testing.assert_allclose(r.probs.sum(axis=1), 1.0, rtol=1e-5)
            np.testing.assert_array_equal(r.predicted, np.argmax(r.probs, axis=1))
            self.assertGreater(r.macs, 0)
            self.assertLessEqual(r.macs_needed, r.macs)
            self.assertGreater(r.macs_needed, 0)
            rest = self.c.classify(job, self.paths[MAX_IMAGES:])
            probs = np.concatenate([r.probs, rest.probs])
            p = self.c.predict(job, samples=list(range(12)))
            self.assertEqual(p.probs.shape, (12, 3))
            np.testing.assert_allclose(probs, p.probs, atol=1e-5, err_msg=method)
            np.testing.assert_array_equal(np.concatenate([r.predicted, rest.predicted]),
                                          p.predicted)
            head = self.c.result(job).head
            x = np.concatenate([self.c.features("imgs", n, samples=range(12)).values
                                for n in head.layer_names], axis=1)
            np.testing.assert_allclose(softmax(head.logits(x)), p.probs, atol=1e-5)
        # a linear probe reads one layer: it needs less of the backbone than "all"
        lin = self.c.classify(self.jobs["linear"], self.paths[:1])
        full = self.c.classify(self.jobs["all"], self.paths[:1])
        self.assertEqual(lin.macs, full.macs)
        self.assertLess(lin.macs_needed, full.macs_needed)

    def test_bytes_and_names(self):
        job = self.jobs["all"]
        with open(self.paths[5], "rb") as f:
            data = f.read()
        by_bytes = self.c.classify(job, [data, bytearray(data)], names=["a.png", "b.png"])
        by_path = self.c.classify(job, [self.paths[5]])
        np.testing.assert_array_equal(by_bytes.probs[0], by_path.probs[0])
        np.testing.assert_array_equal(by_bytes.probs[1], by_path.probs[0])
        with self.assertRaises(h2tdb.Corrupt) as cm:
            self.c.classify(job, [data, b"not an image"], names=["ok.png", "broken.png"])
        self.assertIn("broken.png", cm.exception.message)
        with self.assertRaises(h2tdb.Corrupt) as cm:  # a path names itself
            bad = os.path.join(IMAGES, "cut.png")
            with open(bad, "wb") as f:
                f.write(data[:40])
            self.c.classify(job, [self.paths[0], bad])
        self.assertIn("cut.png", cm.exception.message)
        with self.assertRaises(h2tdb.InvalidArgument):
            self.c.classify(job, [data], names=["one", "two"])
        with self.assertRaises(h2tdb.IOFailure) as cm:
            self.c.classify(job, [os.path.join(IMAGES, "nope.png")])
        self.assertIn("nope.png", cm.exception.message)
        # the connection is still usable after the server's errors
        self.assertEqual(self.c.classify(job, [data]).probs.shape, (1, 3))

    def test_limits_and_bad_jobs(self):
        job = self.jobs["linear"]
        with self.assertRaises(h2tdb.TooBig) as cm:
            self.c.classify(job, self.paths[:MAX_IMAGES + 1])
        self.assertIn("at most %d" % MAX_IMAGES, cm.exception.message)
        with self.assertRaises(h2tdb.NotFound) as cm:
            self.c.classify(424242, self.paths[:1])
        self.assertIn("424242", cm.exception.message)
        self.c.create_task("fail-t", "imgs", train="ids:0-2,4-6,8-10", test="ids:3,7,11")
        with self.assertRaises(h2tdb.JobFailed) as cm:
            self.c.train("fail-t", method="linear", wait=True)
        with self.assertRaises(h2tdb.StateError) as cm2:
            self.c.classify(cm.exception.job.id, self.paths[:1])
        self.assertIn(str(cm.exception.job.id), cm2.exception.message)


if __name__ == "__main__":
    if not (ADDR and TOKEN_FILE and IMAGES):
        sys.exit("test_classify.py: set H2TDB_TEST_ADDR, H2TDB_TEST_TOKEN_FILE and "
                 "H2TDB_TEST_IMAGES (make test does)")
    unittest.main(verbosity=2)
