"""The h2tdb client: one TCP connection to `h2tdb serve`, speaking proto/h2tdb.proto.

Frame: a 4-byte big-endian payload length, then a packed h2tdb.Envelope (request id + one
body). Every reply carries its request's id; a watch gets one Job per progress change, the
last one in a final state; any request may get an Error instead (id 0 when the server could
not read the request). With a token the first frame is Auth; a wrong or missing token gets an
Error and the server closes the connection.
"""
import json
import os
import socket
import struct
import threading
import time
import types

import numpy as np
from google.protobuf import descriptor as _desc

from . import errors
from ._proto import pb
from .head import Head, decode_fields

DEFAULT_ADDR = "127.0.0.1:7433"
DEFAULT_MAX_FRAME = 256 << 20  # the largest reply this client reads (as the C client)
FINAL_STATES = (pb.JOB_DONE, pb.JOB_FAILED, pb.JOB_CANCELLED)

_FD = _desc.FieldDescriptor
_NUMPY = {
    _FD.TYPE_DOUBLE: np.float64, _FD.TYPE_FLOAT: np.float32,
    _FD.TYPE_INT32: np.int32, _FD.TYPE_SINT32: np.int32, _FD.TYPE_SFIXED32: np.int32,
    _FD.TYPE_UINT32: np.uint32, _FD.TYPE_FIXED32: np.uint32,
    _FD.TYPE_INT64: np.int64, _FD.TYPE_SINT64: np.int64, _FD.TYPE_SFIXED64: np.int64,
    _FD.TYPE_UINT64: np.uint64, _FD.TYPE_FIXED64: np.uint64,
}


class Record(types.SimpleNamespace):
    """A reply message as attributes: every field of its .proto message by name, repeated
    numbers as numpy arrays, repeated strings as lists, nested messages as Records, enums
    as their numbers (h2tdb.JobState.Name(n) gives the name)."""

    def to_dict(self):
        def conv(v):
            if isinstance(v, Record):
                return v.to_dict()
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v
        return {k: conv(v) for k, v in vars(self).items()}


def record(msg):
    """The Record of a protobuf message (fields from its descriptor, so new .proto fields
    appear without a change here)."""
    out = Record()
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.label == _FD.LABEL_REPEATED:
            if f.type == _FD.TYPE_MESSAGE:
                v = [record(x) for x in v]
            elif f.type in _NUMPY:
                v = np.array(v, dtype=_NUMPY[f.type])
            elif f.type == _FD.TYPE_ENUM:
                v = np.array(v, dtype=np.int32)
            else:
                v = list(v)
        elif f.type == _FD.TYPE_MESSAGE:
            v = record(v) if msg.HasField(f.name) else None
        setattr(out, f.name, v)
    return out


def _enum_value(field, value):
    """An enum field's number from a number or a name: the full value name ("METHOD_HEAD2TOE")
    or its last part ("head2toe"), any case."""
    if isinstance(value, str):
        want = value.upper().replace("-", "_")
        for v in field.enum_type.values:
            if v.name == want or v.name.endswith("_" + want):
                return v.number
        raise errors.InvalidArgument("%s: unknown value '%s' (one of %s)" % (
            field.name, value, ", ".join(v.name.split("_", 1)[-1].lower()
                                         for v in field.enum_type.values)))
    return int(value)


def fill(msg, fields):
    """Set msg's fields from a dict by their .proto names: enums by name or number, repeated
    fields from any iterable, nested messages from dicts, map-like repeated messages with two
    string fields (MapEntry) also from a dict. Unknown names raise InvalidArgument naming
    them and the message's fields."""
    by_name = msg.DESCRIPTOR.fields_by_name
    for name, value in fields.items():
        if value is None:
            continue
        f = by_name.get(name)
        if f is None:
            raise errors.InvalidArgument("%s has no field '%s' (fields: %s)" % (
                msg.DESCRIPTOR.name, name, ", ".join(by_name)))
        if f.label == _FD.LABEL_REPEATED:
            target = getattr(msg, name)
            del target[:]
            if f.type == _FD.TYPE_MESSAGE:
                sub = f.message_type.fields
                items = value.items() if isinstance(value, dict) else value
                for item in items:
                    if isinstance(item, dict):
                        fill(target.add(), item)
                    elif isinstance(item, (tuple, list)):
                        fill(target.add(), {sf.name: x for sf, x in zip(sub, item)})
                    else:
                        target.add().CopyFrom(item)
            elif f.type == _FD.TYPE_ENUM:
                target.extend(_enum_value(f, v) for v in value)
            else:
                if isinstance(value, (str, bytes)):
                    raise errors.InvalidArgument("%s.%s is a list, got %r" % (
                        msg.DESCRIPTOR.name, name, value))
                target.extend(np.asarray(value).tolist())
        elif f.type == _FD.TYPE_MESSAGE:
            if isinstance(value, dict):
                fill(getattr(msg, name), value)
            else:
                getattr(msg, name).CopyFrom(value)
        elif f.type == _FD.TYPE_ENUM:
            setattr(msg, name, _enum_value(f, value))
        else:
            try:
                setattr(msg, name, value)
            except (TypeError, ValueError) as e:
                raise errors.InvalidArgument("%s.%s: %s" % (msg.DESCRIPTOR.name, name, e))
    return msg


def _split_addr(addr):
    """("host", port) of "HOST:PORT", "PORT" or "[V6]:PORT"."""
    a = str(addr).strip()
    try:
        if a.startswith("["):
            host, rest = a[1:].split("]", 1)
            if not rest.startswith(":"):
                raise ValueError
            port = int(rest[1:])
        elif ":" in a:
            host, p = a.rsplit(":", 1)
            port = int(p)
        else:
            host, port = "127.0.0.1", int(a)
    except ValueError:
        raise errors.InvalidArgument(
            "server address '%s': want HOST:PORT, PORT or [V6]:PORT" % addr) from None
    if not 0 < port < 65536:
        raise errors.InvalidArgument("server address '%s': port %d out of range" % (addr, port))
    return host or "127.0.0.1", port


def _read_token_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().rstrip(b" \t\r\n")
    except OSError as e:
        raise errors.IOFailure("token file %s: %s" % (path, e.strerror or e)) from None


class Client:
    """A connection to an h2tdb server.

        with h2tdb.Client("127.0.0.1:7433", token_file="token") as c:
            print(c.health().version)

    addr: "HOST:PORT", "PORT" or "[V6]:PORT"; default $H2T_SERVER, else 127.0.0.1:7433.
    token (bytes or str) or token_file: sent as Auth first; with neither, $H2T_TOKEN_FILE
    when set (as the command line). timeout: seconds for the connect and for each reply
    (None: no limit); a watch has its own. max_frame: the largest reply accepted.
    Calls are serialised by a lock, so one client may be shared by threads. Every failure
    raises an h2tdb.Error subclass; after a network failure or a frame error the connection
    is closed and later calls raise NetworkError.
    """

    def __init__(self, addr=None, token=None, token_file=None, timeout=30.0,
                 max_frame=DEFAULT_MAX_FRAME):
        self.addr = addr or os.environ.get("H2T_SERVER") or DEFAULT_ADDR
        self.timeout = timeout
        self.max_frame = max_frame
        self._next_id = 0
        self._lock = threading.RLock()
        self._sock = None
        self._buf = bytearray()
        if token is None and token_file is None:
            token_file = os.environ.get("H2T_TOKEN_FILE") or None
        if token is None and token_file is not None:
            token = _read_token_file(token_file)
        host, port = _split_addr(self.addr)
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except socket.timeout:
            raise errors.Timeout("connect to %s: no answer within %gs" % (self.addr, timeout)) \
                from None
        except OSError as e:
            hint = " (is `h2tdb serve` running there?)" \
                if isinstance(e, ConnectionRefusedError) else ""
            raise errors.NetworkError("cannot connect to %s: %s%s" % (
                self.addr, e.strerror or e, hint)) from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(timeout)
        if token is not None:
            if isinstance(token, str):
                token = token.encode()
            try:
                self._call("auth", pb.Auth(token=token), "auth_ok")
            except BaseException:
                self.close()
                raise

    # ---- connection ----

    def close(self):
        """Close the connection (idempotent)."""
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.close()
                finally:
                    self._sock = None

    @property
    def closed(self):
        return self._sock is None

    def __repr__(self):
        return "<h2tdb.Client %s %s>" % (self.addr, "closed" if self.closed else "open")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _lost(self, exc):
        self.close()
        return exc

    def _send(self, body, msg):
        """Send one request; returns its id."""
        if self._sock is None:
            raise errors.NetworkError("connection to %s is closed" % self.addr)
        self._next_id += 1
        env = pb.Envelope(id=self._next_id)
        getattr(env, body).CopyFrom(msg)
        payload = env.SerializeToString()
        if len(payload) > 0xFFFFFFFF:
            raise errors.TooBig("request of %d bytes" % len(payload))
        try:
            self._sock.settimeout(self.timeout)  # a watch may have left it unbounded
            self._sock.sendall(struct.pack(">I", len(payload)) + payload)
        except socket.timeout:
            raise self._lost(errors.Timeout("send to %s: no progress within %gs" % (
                self.addr, self.timeout))) from None
        except OSError as e:
            raise self._lost(errors.NetworkError("send to %s: %s" % (
                self.addr, e.strerror or e))) from None
        return self._next_id

    def _read(self, n, deadline):
        while len(self._buf) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                self._sock.settimeout(left)
            chunk = self._sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionResetError("server %s closed the connection" % self.addr)
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _recv(self, timeout):
        """The next Envelope from the server (any id). timeout: seconds for the whole frame."""
        if self._sock is None:
            raise errors.NetworkError("connection to %s is closed" % self.addr)
        deadline = None if timeout is None else time.monotonic() + timeout
        if deadline is None:
            self._sock.settimeout(None)
        try:
            (n,) = struct.unpack(">I", self._read(4, deadline))
            if n > self.max_frame:
                raise self._lost(errors.TooBig(
                    "reply of %d bytes from %s is over this client's limit of %d (max_frame)" % (
                        n, self.addr, self.max_frame)))
            payload = self._read(n, deadline)
        except socket.timeout:
            raise self._lost(errors.Timeout("server %s did not answer within %gs" % (
                self.addr, timeout))) from None
        except ConnectionResetError as e:
            raise self._lost(errors.NetworkError(str(e) if e.args else
                                                 "server %s closed the connection" % self.addr)) \
                from None
        except OSError as e:
            raise self._lost(errors.NetworkError("receive from %s: %s" % (
                self.addr, e.strerror or e))) from None
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except Exception as e:  # protobuf's DecodeError
            raise self._lost(errors.ProtocolError("undecodable reply from %s: %s" % (
                self.addr, e))) from None
        return env

    def _reply_for(self, rid, timeout):
        """The next frame for request rid (or an id-0 Error); other ids are skipped."""
        while True:
            env = self._recv(timeout)
            body = env.WhichOneof("body")
            if env.id != rid and not (env.id == 0 and body == "error"):
                continue
            if body == "error":
                e = errors.from_code(env.error.code, env.error.message)
                # the server closes the connection after these: a refused token, or a frame
                # it could not take (answered with id 0: oversized, undecodable)
                if env.id == 0 or isinstance(e, errors.AuthError):
                    self.close()
                raise e
            return env, body

    def _call(self, body, msg, want, timeout=...):
        """Send body=msg, wait for its reply of type want; returns that message."""
        with self._lock:
            rid = self._send(body, msg)
            env, got = self._reply_for(rid, self.timeout if timeout is ... else timeout)
            if got != want:
                raise errors.ProtocolError("expected a '%s' reply, got '%s'" % (want, got))
            return getattr(env, got)

    # ---- service state ----

    def health(self):
        """Server version, uptime, connections, job counts, design-cache counters (Record of
        h2tdb.Health)."""
        return record(self._call("health_req", pb.HealthRequest(), "health"))

    def extractions(self):
        """Every extraction of the store (list of Records of h2tdb.Extraction)."""
        return [record(e) for e in
                self._call("list_extractions", pb.ListExtractionsRequest(),
                           "extraction_list").extractions]

    def extraction(self, extraction):
        """One extraction by id or name, with class names, split sizes and layers."""
        req = pb.DescribeExtractionRequest(extraction=str(extraction))
        return record(self._call("describe_extraction", req, "extraction"))

    def layers(self, extraction):
        """The layer table of an extraction (list of Records of h2tdb.Layer)."""
        req = pb.LayersRequest(extraction=str(extraction))
        return record(self._call("layers_req", req, "layer_table")).layers

    def stats(self, extraction, layer=None, per_feature=False):
        """Per-layer feature statistics (list of Records of h2tdb.LayerStats). With
        per_feature (one layer only) each has mean, var (float64) and fmin, fmax (float32)
        arrays of the layer's dim."""
        req = pb.StatsRequest(extraction=str(extraction), layer=layer or "",
                              per_feature=per_feature)
        return record(self._call("stats_req", req, "stats")).layers

    def features(self, extraction, layer, samples=None, first=0, count=None, page=0):
        """Stored features of one layer: samples is a list of sample ids, or take count samples
        from first (default: every stored sample). Pages of at most `page` rows (0: the
        server's page size) are fetched until done. Returns a Record: layer (index), dim,
        samples (uint32 ids), values (float32, samples x dim)."""
        req = pb.FeaturesRequest(extraction=str(extraction), layer=str(layer), limit=page)
        if samples is not None:
            req.samples.extend(np.asarray(samples, dtype=np.uint64).tolist())
            req.first = 0
        else:
            if count is None:
                count = self.extraction(extraction).samples_done - first
            req.first, req.count = first, count
        ids, rows, dim, lay = [], [], 0, 0
        while True:
            f = self._call("features_req", req, "features")
            dim, lay = f.dim, f.layer
            ids.append(np.array(f.samples, dtype=np.uint32))
            rows.append(np.array(f.values, dtype=np.float32).reshape(len(f.samples), dim))
            if f.done:
                break
            if samples is None:
                req.count -= f.next_first - req.first
            req.first = f.next_first
        return Record(layer=lay, dim=dim, samples=np.concatenate(ids),
                      values=np.concatenate(rows) if rows else np.zeros((0, dim), np.float32))

    # ---- tasks ----

    def tasks(self):
        """Every task (list of Records of h2tdb.Task)."""
        return [record(t) for t in
                self._call("list_tasks", pb.ListTasksRequest(), "task_list").tasks]

    def create_task(self, name, extraction, train="train", test="test", **spec):
        """Create a task over an extraction: train/test/val are selections ("train:1000",
        "test[0:2000]", "ids:1,5,7-9", "train"); further h2tdb.TaskSpec fields by name:
        val, map ({from: to} or [(from, to)], "-" drops a class), shots, replace.
        Returns the task (Record of h2tdb.Task)."""
        ts = fill(pb.TaskSpec(), dict(spec, name=name, extraction=str(extraction),
                                      train=train, test=test))
        return record(self._call("create_task", pb.CreateTaskRequest(spec=ts), "task"))

    # ---- jobs ----

    def train(self, task, method="head2toe", wait=False, progress=None, timeout=None, **spec):
        """Submit a train job for a task. method: "linear", "all", "head2toe" (or the enum);
        further h2tdb.TrainRequest fields by name (optimizer, lambdas, keep_fractions, folds,
        steps, lr, seed, threads, retrain). Returns the job (Record of h2tdb.Job; reused is
        set when a finished job with the same spec answered). With wait, watches it to the
        end (see watch) and returns the final job; a FAILED job raises JobFailed, a
        CANCELLED one Cancelled."""
        req = fill(pb.TrainRequest(), dict(spec, task=task, method=method))
        job = record(self._call("train", req, "job"))
        if not wait:
            return job
        if progress is not None:
            progress(job)
        if job.state in FINAL_STATES:
            final = job
        else:
            final = self.watch(job.id, progress=progress, timeout=timeout)
        if final.state == pb.JOB_FAILED:
            raise errors.JobFailed("job %d failed: %s" % (final.id, final.error), job=final)
        if final.state == pb.JOB_CANCELLED:
            raise errors.Cancelled("job %d was cancelled" % final.id)
        return final

    def watch(self, job, progress=None, timeout=None):
        """Follow a job until it is DONE, FAILED or CANCELLED and return that final state.
        progress(job) is called for every Job the server pushes (one per progress change,
        the final one included). timeout: seconds for the whole watch (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            rid = self._send("watch_job", pb.WatchJobRequest(job=int(job)))
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                env, got = self._reply_for(rid, left)
                if got != "job":
                    raise self._lost(errors.ProtocolError("watch: unexpected '%s' reply" % got))
                j = record(env.job)
                if progress is not None:
                    progress(j)
                if j.state in FINAL_STATES:
                    return j

    def jobs(self):
        """Every job of the store (list of Records of h2tdb.Job)."""
        return [record(j) for j in self._call("list_jobs", pb.ListJobsRequest(), "job_list").jobs]

    def job(self, job):
        """One job's state (Record of h2tdb.Job)."""
        return record(self._call("get_job", pb.GetJobRequest(job=int(job)), "job"))

    def cancel(self, job):
        """Cancel a queued or running job; returns its state after the request (a running
        solve stops within a moment: watch it to see CANCELLED)."""
        return record(self._call("cancel_job", pb.CancelJobRequest(job=int(job)), "job"))

    def result(self, job, head=True, verify=True):
        """A finished job's result: a Record of h2tdb.Result (summary, val_accuracy,
        test_accuracy, n_kept, n_classes; json parsed into `info`) with `head`, the decoded
        head (h2tdb.Head: weights, bias, kept features, layers, cross-validation grid,
        metrics), unless head=False. verify checks the head's CRC-32C."""
        r = self._call("get_result", pb.GetResultRequest(job=int(job), include_head=head),
                       "result")
        out = record(r)
        out.info = json.loads(r.json) if r.json else {}
        out.head = Head(decode_fields(r.blob, verify=verify)) if head else None
        del out.blob
        return out

    def predict(self, job, samples=None):
        """Apply a finished job's head to stored samples of its extraction: samples is a
        selection string (default "test") or a list of sample ids. Returns a Record of
        h2tdb.Prediction: samples, predicted, labels (uint32 arrays), class_names, accuracy
        (over the samples the task labels)."""
        req = pb.PredictRequest(job=int(job))
        if isinstance(samples, str):
            req.samples = samples
        elif samples is not None:
            req.ids.extend(np.asarray(samples, dtype=np.uint64).tolist())
        out = record(self._call("predict", req, "prediction"))
        if out.probs.size:
            out.probs = out.probs.reshape(out.samples.size, -1)
        return out

    def classify(self, job, images, names=None):
        """Apply a finished job's head to new images on the server (it runs the part of the
        job's backbone the head needs; nothing is stored). images: each the bytes of a PNG or
        JPEG file, or a path to one (read here; its path names it in errors). names: one per
        image for the server's error messages (default: the paths, else empty). Returns a
        Record of h2tdb.Classification: probs (images x n_classes, float32), predicted
        (uint32), class_names, macs / macs_needed, the multiply-accumulates per image of
        the whole backbone and of the part the head needs, cached (True when a classifier
        kept from an earlier request served it) and classifier_loads (classifiers the server
        has built since it started)."""
        req = pb.ClassifyRequest(job=int(job))
        given = list(names) if names is not None else None
        auto = []
        for img in images:
            if isinstance(img, (bytes, bytearray, memoryview)):
                req.images.append(bytes(img))
                auto.append("")
            else:
                path = os.fspath(img)
                try:
                    with open(path, "rb") as f:
                        req.images.append(f.read())
                except OSError as e:
                    raise errors.IOFailure("image %s: %s" % (path, e.strerror or e)) from None
                auto.append(str(path))
        if given is not None and len(given) != len(req.images):
            raise errors.InvalidArgument("%d names for %d images" % (len(given),
                                                                     len(req.images)))
        labels = given if given is not None else auto
        if any(labels):
            req.names.extend(str(n) for n in labels)
        out = record(self._call("classify", req, "classification"))
        if out.n_classes:
            out.probs = out.probs.reshape(-1, out.n_classes)
        return out
