"""Tests of the h2tdb Python client against a real server, run by tests/test_python.c in
`make test` (H2TDB_TEST_ADDR, H2TDB_TEST_TOKEN_FILE). The server's store holds one extraction
"ext": 240 samples of 3 classes (alpha, beta, gamma; 180 train, 60 test), layers l1 (8
features, which carry the class) and l2 (4). Tasks named slow* train slowly (progress every
10 ms for 30 s, stage "sleeping") so that a watch sees progress and a cancel lands mid-run;
jobs of tasks named fail* fail. The server reads frames of at most H2TDB_TEST_MAX_FRAME
bytes (64 KiB), so a request can exceed it."""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

import h2tdb
from h2tdb import head as headmod

ADDR = os.environ.get("H2TDB_TEST_ADDR")
TOKEN_FILE = os.environ.get("H2TDB_TEST_TOKEN_FILE")
SERVER_MAX_FRAME = int(os.environ.get("H2TDB_TEST_MAX_FRAME", "0"))  # the server's limit


def connect(**kw):
    return h2tdb.Client(ADDR, token_file=TOKEN_FILE, timeout=20, **kw)


@unittest.skipUnless(ADDR and TOKEN_FILE, "needs a server (run through make test)")
class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = connect()
        cls.c.create_task("t", "ext", train="train", test="test")
        cls.job = cls.c.train("t", method="head2toe", lambdas=[1e-3], keep_fractions=[0.5],
                              folds=2, seed=1, wait=True)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    # ---- state ----

    def test_health(self):
        h = self.c.health()
        self.assertTrue(h.version)
        self.assertGreaterEqual(h.workers, 1)
        self.assertGreaterEqual(h.connections, 1)
        self.assertGreater(self.c.health().requests, h.requests)

    def test_extractions_and_layers(self):
        exts = self.c.extractions()
        self.assertEqual([e.name for e in exts], ["ext"])
        self.assertEqual(exts[0].n_samples, 240)
        self.assertEqual(exts[0].samples_done, 240)
        e = self.c.extraction("ext")
        self.assertEqual(e.class_names, ["alpha", "beta", "gamma"])
        self.assertEqual((e.n_train, e.n_test), (180, 60))
        self.assertEqual(e.total_dim, 12)
        self.assertEqual(self.c.extraction(e.id).name, "ext")  # by id
        layers = self.c.layers("ext")
        self.assertEqual([l.name for l in layers], ["l1", "l2"])
        self.assertEqual([l.dim for l in layers], [8, 4])
        self.assertEqual(layers[0].op, "Relu")
        self.assertIsInstance(layers[0].shape, np.ndarray)
        self.assertEqual(layers[0].shape.tolist(), [8])

    def test_features_pages(self):
        f = self.c.features("ext", "l1")
        self.assertEqual(f.values.shape, (240, 8))
        self.assertEqual(f.values.dtype, np.float32)
        np.testing.assert_array_equal(f.samples, np.arange(240))
        # the class signal the store was built with: feature j == label is high
        labels = np.arange(240) % 3
        self.assertTrue(np.all(np.argmax(f.values[:, :3], axis=1) == labels))
        paged = self.c.features("ext", "l1", page=7)
        np.testing.assert_array_equal(paged.values, f.values)
        part = self.c.features("ext", "l1", first=100, count=30, page=8)
        np.testing.assert_array_equal(part.samples, np.arange(100, 130))
        np.testing.assert_array_equal(part.values, f.values[100:130])
        some = self.c.features("ext", "l2", samples=[5, 3, 200], page=2)
        np.testing.assert_array_equal(some.samples, [5, 3, 200])
        l2 = self.c.features("ext", "l2")
        np.testing.assert_array_equal(some.values, l2.values[[5, 3, 200]])

    def test_stats(self):
        both = self.c.stats("ext")
        self.assertEqual([s.layer for s in both], ["l1", "l2"])
        self.assertEqual([s.count for s in both], [240, 240])
        self.assertEqual(both[0].mean.size, 0)  # per-feature arrays only when asked
        s = self.c.stats("ext", layer="l1", per_feature=True)
        self.assertEqual(len(s), 1)
        s = s[0]
        x = self.c.features("ext", "l1").values.astype(np.float64)
        self.assertEqual(s.mean.dtype, np.float64)
        self.assertEqual(s.fmin.dtype, np.float32)
        np.testing.assert_allclose(s.mean, x.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(s.var, x.var(axis=0), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(s.fmin, x.min(axis=0).astype(np.float32))
        np.testing.assert_array_equal(s.fmax, x.max(axis=0).astype(np.float32))
        self.assertAlmostEqual(s.mean_of_means, x.mean(axis=0).mean(), places=9)
        self.assertAlmostEqual(s.norm_mean, np.linalg.norm(x, axis=1).mean(), places=5)

    # ---- tasks ----

    def test_tasks(self):
        t = self.c.create_task("two", "ext", train="train:60", test="test",
                               map={"alpha": "alpha", "beta": "b", "gamma": "-"},
                               replace=True)
        self.assertEqual(t.class_names, ["alpha", "b"])
        self.assertEqual(t.n_train, 40)  # 60 train samples less the gammas
        t = self.c.create_task("shots", "ext", train="train", test="test[0:30]", shots=5,
                               replace=True)
        self.assertEqual((t.shots, t.n_train, t.n_test), (5, 15, 30))
        t = self.c.create_task("pairs", "ext", train="train", test="test",  # map as pairs
                               map=[("alpha", "ab"), ("beta", "ab"), ("gamma", "g")],
                               replace=True)
        self.assertEqual(t.class_names, ["ab", "g"])
        self.assertEqual(t.train_per_class.tolist(), [120, 60])
        d = t.to_dict()  # plain Python values, JSON-ready
        self.assertEqual(json.loads(json.dumps(d))["class_names"], ["ab", "g"])
        names = [x.name for x in self.c.tasks()]
        for n in ("t", "two", "shots"):
            self.assertIn(n, names)
        with self.assertRaises(h2tdb.Exists) as cm:
            self.c.create_task("two", "ext")
        self.assertIn("two", cm.exception.message)
        self.assertEqual(cm.exception.code, -5)
        with self.assertRaises(h2tdb.InvalidArgument) as cm:
            self.c.create_task("bad", "ext", train="trian:10")
        self.assertIn("trian", str(cm.exception))
        with self.assertRaises(h2tdb.NotFound) as cm:
            self.c.create_task("bad", "nosuch")
        self.assertIn("nosuch", cm.exception.message)
        with self.assertRaises(h2tdb.InvalidArgument) as cm:  # not a TaskSpec field
            self.c.create_task("bad", "ext", shotz=3)
        self.assertIn("shotz", cm.exception.message)

    # ---- jobs ----

    def test_train_result_predict(self):
        job = self.job
        self.assertEqual(job.state, h2tdb.JOB_DONE)
        self.assertEqual(h2tdb.JobState.Name(job.state), "JOB_DONE")
        self.assertEqual(job.spec.task, "t")
        self.assertEqual(job.spec.method, h2tdb.METHOD_HEAD2TOE)
        self.assertEqual(job.spec.lambdas.tolist(), [1e-3])
        res = self.c.result(job.id)
        h = res.head
        self.assertEqual(res.job, job.id)
        self.assertIn("head2toe", res.summary)
        self.assertEqual(res.info["method"], "head2toe")
        self.assertEqual(h.weights.shape, (3, res.n_kept))
        self.assertEqual(repr(h), "<h2tdb.Head 3 classes x %d kept features from 2 layers>"
                         % res.n_kept)
        self.assertEqual(h.weights.dtype, np.float32)
        self.assertEqual(h.bias.shape, (3,))
        self.assertEqual(h.features.shape, (res.n_kept, 2))
        self.assertEqual(res.n_classes, 3)
        self.assertEqual(list(h.layer_names), ["l1", "l2"])
        self.assertEqual(h.layer_dims.tolist(), [8, 4])
        self.assertEqual(int(h.layer_kept.sum()), res.n_kept)
        keys = [tuple(r) for r in h.features.tolist()]
        self.assertEqual(keys, sorted(keys))
        self.assertEqual(h.cv_acc.shape, (1, 1))
        self.assertEqual(h.metrics["test_acc"], res.test_accuracy)
        self.assertEqual(h.metrics["val_acc"], res.val_accuracy)
        self.assertEqual(res.info["n_kept"], res.n_kept)
        self.assertGreater(res.test_accuracy, 0.9)
        # the server's predictions on the test split
        p = self.c.predict(job.id)
        np.testing.assert_array_equal(p.samples, np.arange(180, 240))
        np.testing.assert_array_equal(p.labels, p.samples % 3)
        self.assertEqual(p.class_names, ["alpha", "beta", "gamma"])
        self.assertAlmostEqual(p.accuracy, res.test_accuracy)
        self.assertAlmostEqual(p.accuracy, float(np.mean(p.predicted == p.labels)))
        # the head applied here to the stored features gives the same classes
        x = np.concatenate([self.c.features("ext", n, samples=p.samples).values
                            for n in h.layer_names], axis=1)
        np.testing.assert_array_equal(h.predict(x), p.predicted)
        # kept(): each layer's kept block has unit norm per sample, columns in feature order
        k = h.kept(x)
        self.assertEqual(k.shape, (60, res.n_kept))
        c0 = 0
        for lid, kept in zip(h.layer_ids, h.layer_kept):
            block = k[:, c0:c0 + kept]
            np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, rtol=1e-5)
            cols = h.features[c0:c0 + kept]
            self.assertTrue(np.all(cols[:, 0] == lid))
            raw = np.concatenate([self.c.features("ext", n, samples=p.samples).values
                                  for n in h.layer_names], axis=1)
            off = int(h.layer_dims[:list(h.layer_ids).index(lid)].sum())
            sel = raw[:, off + cols[:, 1].astype(np.int64)]
            np.testing.assert_allclose(block * np.linalg.norm(sel, axis=1, keepdims=True), sel,
                                       rtol=1e-5, atol=1e-6)
            c0 += kept
        # every sample, train and test
        allx = np.concatenate([self.c.features("ext", n).values for n in h.layer_names], axis=1)
        np.testing.assert_array_equal(h.predict(allx),
                                      self.c.predict(job.id, samples="train+test").predicted)
        # by selection and by ids
        q = self.c.predict(job.id, samples="train[0:9]")
        np.testing.assert_array_equal(q.samples, np.arange(9))
        q2 = self.c.predict(job.id, samples=[0, 1, 2, 200])
        np.testing.assert_array_equal(q2.samples, [0, 1, 2, 200])
        np.testing.assert_array_equal(q2.predicted[:3], q.predicted[:3])
        # without the head
        bare = self.c.result(job.id, head=False)
        self.assertIsNone(bare.head)
        self.assertEqual(bare.n_kept, res.n_kept)

    @unittest.skipUnless(os.environ.get("H2T_BIN"), "needs the h2tdb binary (make test)")
    def test_head_equals_cli_export(self):
        # the C decoder's export of the same head (h2tdb result --export) holds the same arrays
        out = tempfile.mkdtemp(prefix="h2tdb-export-")
        try:
            env = dict(os.environ, H2T_SERVER=ADDR, H2T_TOKEN_FILE=TOKEN_FILE)
            run = subprocess.run([os.environ["H2T_BIN"], "result", str(self.job.id),
                                  "--export", out], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=60)
            self.assertEqual(run.returncode, 0, run.stdout)
            res = self.c.result(self.job.id)
            h = res.head
            for name, arr in (("weights", h.weights), ("bias", h.bias),
                              ("features", h.features), ("cv_acc", h.cv_acc)):
                ref = np.load(os.path.join(out, name + ".npy"))
                self.assertEqual(ref.dtype, arr.dtype, name)
                np.testing.assert_array_equal(ref, arr, name)
            with open(os.path.join(out, "result.json")) as f:
                self.assertEqual(json.load(f), res.info)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def test_linear_jobs_reuse(self):
        a = self.c.train("t", method="linear", lambdas=[1e-3], folds=2, wait=True)
        self.assertEqual(a.state, h2tdb.JOB_DONE)
        self.assertEqual(a.spec.method, h2tdb.METHOD_LINEAR)
        b = self.c.train("t", method=h2tdb.METHOD_LINEAR, lambdas=[1e-3], folds=2)
        self.assertTrue(b.reused)
        self.assertEqual(b.id, a.id)
        c = self.c.train("t", method="linear", lambdas=[1e-3], folds=2, retrain=True)
        self.assertNotEqual(c.id, a.id)
        self.assertFalse(c.reused)
        done = self.c.watch(c.id, timeout=60)
        self.assertEqual(done.state, h2tdb.JOB_DONE)
        self.assertEqual(self.c.job(c.id).state, h2tdb.JOB_DONE)
        ids = [j.id for j in self.c.jobs()]
        for i in (self.job.id, a.id, c.id):
            self.assertIn(i, ids)
        r = self.c.result(a.id)
        self.assertEqual(r.head.layer_names, ["l2"])  # a linear probe reads the last layer
        x = self.c.features("ext", "l2", samples=range(180, 240)).values
        np.testing.assert_array_equal(r.head.predict(x), self.c.predict(a.id).predicted)

    def test_watch_progress_and_cancel(self):
        self.c.create_task("slow", "ext", train="train", test="test", replace=True)
        job = self.c.train("slow", method="linear", lambdas=[1e-3], folds=2, seed=7)
        self.assertIn(job.state, (h2tdb.JOB_QUEUED, h2tdb.JOB_RUNNING))
        seen = []
        other = connect()

        def progress(j):
            seen.append((j.state, j.progress, j.stage))
            if len(seen) == 5:
                other.cancel(job.id)

        t0 = time.monotonic()
        final = self.c.watch(job.id, progress=progress, timeout=30)
        other.close()
        self.assertEqual(final.state, h2tdb.JOB_CANCELLED)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertGreaterEqual(len(seen), 5)
        running = [s for s in seen if s[0] == h2tdb.JOB_RUNNING]
        self.assertTrue(running)
        self.assertIn("sleeping", [s[2] for s in running], seen)
        prog = [s[1] for s in running]
        self.assertEqual(prog, sorted(prog))
        self.assertEqual(seen[-1][0], h2tdb.JOB_CANCELLED)
        with self.assertRaises(h2tdb.StateError) as cm:
            self.c.result(job.id)
        self.assertIn(str(job.id), cm.exception.message)
        # train(wait=True) on a job that gets cancelled while it runs raises Cancelled
        calls = []
        with connect() as canceller:
            def cancel_when_sleeping(j):
                calls.append(j)
                if j.stage == "sleeping" and [c.stage for c in calls].count("sleeping") == 1:
                    canceller.cancel(j.id)

            with self.assertRaises(h2tdb.Cancelled) as cm:
                self.c.train("slow", method="linear", lambdas=[1e-2], folds=2, wait=True,
                             progress=cancel_when_sleeping, timeout=30)
        self.assertIn(str(calls[-1].id), cm.exception.message)
        self.assertEqual(calls[-1].state, h2tdb.JOB_CANCELLED)
        # a watch with a deadline shorter than the job
        j = self.c.train("slow", method="linear", lambdas=[1e-4], folds=2)
        with self.assertRaises(h2tdb.Timeout):
            with connect() as w:
                w.watch(j.id, timeout=0.3)
        self.assertEqual(self.c.cancel(j.id).id, j.id)
        self.assertEqual(self.c.watch(j.id, timeout=10).state, h2tdb.JOB_CANCELLED)

    def test_failed_job(self):
        self.c.create_task("fail1", "ext", train="train", test="test", replace=True)
        with self.assertRaises(h2tdb.JobFailed) as cm:
            self.c.train("fail1", method="linear", wait=True)
        e = cm.exception
        self.assertEqual(e.job.state, h2tdb.JOB_FAILED)
        self.assertIn("fail1 fails on purpose", e.job.error)
        self.assertIn("fail1 fails on purpose", e.message)
        self.assertIn(str(e.job.id), e.message)
        self.assertEqual(self.c.job(e.job.id).state, h2tdb.JOB_FAILED)
        with self.assertRaises(h2tdb.StateError):
            self.c.result(e.job.id)
        j = self.c.train("fail1", method="all", wait=False)  # without wait: no exception
        self.assertEqual(self.c.watch(j.id, timeout=30).state, h2tdb.JOB_FAILED)

    def test_server_frame_limit(self):
        self.assertEqual(SERVER_MAX_FRAME, 65536)
        # every reply so far came through; the server's pages stay under half its limit
        f = self.c.features("ext", "l1", page=0)
        self.assertEqual(f.values.shape, (240, 8))
        # a request over the server's limit: its error, then the connection is closed
        with connect() as c:
            with self.assertRaises(h2tdb.TooBig) as cm:
                c.predict(self.job.id, samples=[1] * SERVER_MAX_FRAME)
            self.assertEqual(cm.exception.code, -12)
            self.assertIn(str(SERVER_MAX_FRAME), cm.exception.message)
            self.assertTrue(c.closed)
            with self.assertRaises(h2tdb.NetworkError):
                c.health()
        # just under it: answered
        ids = [7] * ((SERVER_MAX_FRAME - 64) // 1)
        p = self.c.predict(self.job.id, samples=ids)
        self.assertEqual(p.samples.size, len(ids))

    def test_errors(self):
        for call in (self.c.job, self.c.cancel, self.c.result, self.c.predict, self.c.watch):
            with self.assertRaises(h2tdb.NotFound) as cm:
                call(987654)
            self.assertEqual(cm.exception.code, -4)
            self.assertIn("987654", cm.exception.message)
            self.assertIsInstance(cm.exception, h2tdb.Error)
            self.assertIsInstance(cm.exception, LookupError)
        with self.assertRaises(h2tdb.NotFound) as cm:
            self.c.train("no-such-task")
        self.assertIn("no-such-task", cm.exception.message)
        with self.assertRaises(h2tdb.InvalidArgument) as cm:  # checked here, from the enum
            self.c.train("t", method="lasso")
        self.assertIn("head2toe", cm.exception.message)
        with self.assertRaises(h2tdb.InvalidArgument) as cm:  # checked by the server
            self.c.train("t", method="head2toe", keep_fractions=[2.0])
        self.assertIn("keep", cm.exception.message)
        with self.assertRaises(h2tdb.InvalidArgument):
            self.c.stats("ext", per_feature=True)  # needs one layer
        with self.assertRaises(h2tdb.NotFound):
            self.c.extraction("nosuch")
        with self.assertRaises(h2tdb.NotFound):
            self.c.layers("nosuch")
        with self.assertRaises(h2tdb.NotFound):
            self.c.stats("ext", layer="l9")
        with self.assertRaises(h2tdb.NotFound):
            self.c.features("ext", "l1", first=230, count=20)
        with self.assertRaises(h2tdb.InvalidArgument):
            self.c.predict(self.job.id, samples="test[0:x]")
        # the connection stays usable after server errors
        self.assertTrue(self.c.health().version)

    # ---- connection ----

    def test_token(self):
        with self.assertRaises(h2tdb.AuthError) as cm:
            h2tdb.Client(ADDR, token="wrong", timeout=10)
        self.assertIn("wrong token", cm.exception.message)
        self.assertEqual(cm.exception.code, -18)
        # no token: the first request is refused and the server closes the connection
        c = h2tdb.Client(ADDR, timeout=10)
        with self.assertRaises(h2tdb.AuthError) as cm:
            c.health()
        self.assertIn("token", cm.exception.message)
        self.assertTrue(c.closed)
        with self.assertRaises(h2tdb.NetworkError):
            c.health()
        c.close()
        with open(TOKEN_FILE) as f:
            token = f.read().strip()
        with h2tdb.Client(ADDR, token=token, timeout=10) as c:  # a str token
            self.assertTrue(c.health().version)
        old = os.environ.get("H2T_TOKEN_FILE")
        os.environ["H2T_TOKEN_FILE"] = TOKEN_FILE  # as the command line
        try:
            with h2tdb.Client(ADDR, timeout=10) as c:
                self.assertTrue(c.health().version)
        finally:
            os.environ.pop("H2T_TOKEN_FILE")
            if old is not None:
                os.environ["H2T_TOKEN_FILE"] = old
        with self.assertRaises(h2tdb.IOFailure) as cm:
            h2tdb.Client(ADDR, token_file="/nonexistent/token")
        self.assertIn("/nonexistent/token", cm.exception.message)

    def test_network_errors_and_timeouts(self):
        with self.assertRaises(h2tdb.InvalidArgument):
            h2tdb.Client("127.0.0.1:notaport")
        with self.assertRaises(h2tdb.InvalidArgument):
            h2tdb.Client("127.0.0.1:70000")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaises(h2tdb.NetworkError) as cm:  # nobody listens there
            h2tdb.Client("127.0.0.1:%d" % port, timeout=5)
        self.assertIn(str(port), cm.exception.message)
        # a listener that never answers: the reply times out, the connection is closed
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        try:
            c = h2tdb.Client("127.0.0.1:%d" % mute.getsockname()[1], timeout=0.3)
            t0 = time.monotonic()
            with self.assertRaises(h2tdb.Timeout):
                c.health()
            self.assertLess(time.monotonic() - t0, 5)
            self.assertTrue(c.closed)
            with self.assertRaises(h2tdb.NetworkError):
                c.health()
        finally:
            mute.close()

    def test_max_frame(self):
        c = connect(max_frame=64)
        self.assertTrue(c.health().version)  # a small reply fits
        with self.assertRaises(h2tdb.TooBig) as cm:
            c.result(self.job.id)  # the head does not
        self.assertIn("max_frame", cm.exception.message)
        self.assertTrue(c.closed)
        with self.assertRaises(h2tdb.NetworkError):
            c.health()

    def test_threads_share_a_client(self):
        # calls from several threads on one connection each get their own reply
        errs, got = [], {}

        def work(i):
            try:
                for _ in range(10):
                    got.setdefault(i, []).append(self.c.job(self.job.id).id)
                    self.assertEqual(self.c.layers("ext")[i % 2].name, ["l1", "l2"][i % 2])
            except Exception as e:  # reported below: assertions in threads do not fail a test
                errs.append(e)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        self.assertEqual(got, {i: [self.job.id] * 10 for i in range(4)})

    def test_addresses(self):
        split = h2tdb.client._split_addr
        self.assertEqual(split("10.0.0.1:7433"), ("10.0.0.1", 7433))
        self.assertEqual(split("7433"), ("127.0.0.1", 7433))
        self.assertEqual(split("[::1]:9000"), ("::1", 9000))
        self.assertEqual(split(":9000"), ("127.0.0.1", 9000))
        for bad in ("[::1]9000", "host:", "host:0", "[::1"):
            with self.assertRaises(h2tdb.InvalidArgument):
                split(bad)
        old = os.environ.get("H2T_SERVER")
        os.environ["H2T_SERVER"] = ADDR  # the default address, as the command line
        try:
            with h2tdb.Client(token_file=TOKEN_FILE, timeout=10) as c:
                self.assertEqual(c.addr, ADDR)
                self.assertTrue(c.health().version)
        finally:
            os.environ.pop("H2T_SERVER")
            if old is not None:
                os.environ["H2T_SERVER"] = old

    def test_context_manager(self):
        with connect() as c:
            self.assertFalse(c.closed)
            self.assertEqual(repr(c), "<h2tdb.Client %s open>" % ADDR)
            self.assertTrue(c.health().version)
        self.assertTrue(c.closed)
        with self.assertRaises(h2tdb.NetworkError):
            c.health()
        c.close()  # idempotent

    def test_raw_frames(self):
        # the framing by hand: 4-byte big-endian length + packed Envelope, reply id echoed
        with socket.create_connection(h2tdb.client._split_addr(ADDR), timeout=10) as s:
            def send(env):
                data = env.SerializeToString()
                s.sendall(struct.pack(">I", len(data)) + data)

            def recv():
                buf = b""
                while len(buf) < 4:
                    buf += s.recv(4 - len(buf))
                (n,) = struct.unpack(">I", buf)
                data = b""
                while len(data) < n:
                    data += s.recv(n - len(data))
                env = h2tdb.pb.Envelope()
                env.ParseFromString(data)
                return env

            with open(TOKEN_FILE, "rb") as f:
                send(h2tdb.pb.Envelope(id=41, auth=h2tdb.pb.Auth(token=f.read().strip())))
            r = recv()
            self.assertEqual((r.id, r.WhichOneof("body")), (41, "auth_ok"))
            send(h2tdb.pb.Envelope(id=42, health_req=h2tdb.pb.HealthRequest()))
            r = recv()
            self.assertEqual((r.id, r.WhichOneof("body")), (42, "health"))

    # ---- the head blob ----

    def test_head_blob_checks(self):
        blob = self.c._call("get_result", h2tdb.pb.GetResultRequest(
            job=self.job.id, include_head=True), "result").blob
        self.assertEqual(blob[:8], b"H2TRES01")
        f = headmod.decode_fields(blob)
        self.assertIn("weights", f)
        bad = bytearray(blob)
        bad[len(bad) - 5] ^= 1  # the last payload byte before the CRC
        with self.assertRaises(h2tdb.Corrupt):
            headmod.decode_fields(bytes(bad))
        headmod.decode_fields(bytes(bad), verify=False)  # same layout, checksum not read
        with self.assertRaises(h2tdb.Corrupt):
            headmod.decode_fields(blob[:100])
        with self.assertRaises(h2tdb.VersionMismatch):
            headmod.decode_fields(b"H2TRES02" + blob[8:])
        self.assertEqual(headmod.crc32c(b"123456789"), 0xE3069283)  # the CRC-32C check value
        # the chunked numpy path equals the byte loop, at and around its split sizes
        rng = np.random.default_rng(5)
        for n in (65535, 65536, 65537, 300007):
            data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            loop = headmod._crc_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF
            self.assertEqual(headmod.crc32c(data), loop, n)
            self.assertEqual(headmod.crc32c(data[n // 3:], headmod.crc32c(data[:n // 3])), loop)


if __name__ == "__main__":
    if not (ADDR and TOKEN_FILE):
        sys.exit("test_client.py: set H2TDB_TEST_ADDR and H2TDB_TEST_TOKEN_FILE (make test does)")
    unittest.main(verbosity=2)
