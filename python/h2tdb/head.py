"""A trained head, decoded from the solver's result blob (Result.blob of the protocol).

Blob layout (solver/result.c; integers little-endian):
    "H2TRES01" | u32 version (1) | u32 n_fields | fields... | u32 CRC-32C of everything before
    field: u8 name_len | name | u8 type | u64 count | payload
    types: 'u' u32[count], 'U' u64[count], 'd' f64[count], 'f' f32[count],
           's' count strings, each u32 length + UTF-8 bytes.
Fields this reader does not know are kept in Head.fields and otherwise ignored.
"""
import struct

import numpy as np

from .errors import Corrupt, VersionMismatch

MAGIC = b"H2TRES"
FORMAT = b"01"
VERSION = 1

_DTYPES = {"u": "<u4", "U": "<u8", "d": "<f8", "f": "<f4"}
_REQUIRED = ("n_classes", "layer_ids", "layer_dims", "layer_kept", "features", "weights",
             "bias", "lambdas", "keeps", "cv_acc")


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_TABLE = _crc_table()


_CRC_NP = np.array(_CRC_TABLE, dtype=np.uint32)
_CRC_MIN_SPLIT = 1 << 16  # below this, the byte loop


def _crc_bytes(state, data):
    """The raw register (no inversions) after data, from state: the byte loop."""
    t = _CRC_TABLE
    for b in data:
        state = t[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), as common/util.c h2t_crc32c, continuing from crc.

    Above 64 KiB the data is cut into K equal chunks whose registers (each started at 0)
    are computed side by side with numpy, together with the images of the 32 unit registers
    under L zero bytes: that is the linear map A that carries a register over a chunk, so
    the whole register is the fold r = A r ^ chunk_i, and the tail goes through the loop.
    """
    data = memoryview(bytes(data)) if not isinstance(data, (bytes, bytearray)) else data
    n = len(data)
    state = crc ^ 0xFFFFFFFF
    if n < _CRC_MIN_SPLIT:
        return _crc_bytes(state, data) ^ 0xFFFFFFFF
    k = min(16384, n // 256)
    length = n // k
    cols_in = np.zeros((length, k + 32), dtype=np.uint8)  # byte j of every chunk: one row
    cols_in[:, :k] = np.frombuffer(data, dtype=np.uint8, count=k * length).reshape(k, length).T
    reg = np.zeros(k + 32, dtype=np.uint32)
    reg[k:] = np.uint32(1) << np.arange(32, dtype=np.uint32)  # unit registers, zero bytes
    t = _CRC_NP
    for j in range(length):
        reg = t[(reg ^ cols_in[j]) & 0xFF] ^ (reg >> 8)
    cols = reg[k:]  # A e_b for each bit b
    # A as four byte tables: A r = T0[r & 255] ^ T1[(r >> 8) & 255] ^ ...
    tables = []
    for byte in range(4):
        tb = np.zeros(256, dtype=np.uint32)
        for bit in range(8):
            step = 1 << bit
            tb[step:2 * step] = tb[:step] ^ cols[8 * byte + bit]
        tables.append(tb.tolist())
    t0, t1, t2, t3 = tables
    for c in reg[:k].tolist():
        state = (t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^
                 t3[state >> 24] ^ c)
    return _crc_bytes(state, data[k * length:]) ^ 0xFFFFFFFF


def decode_fields(blob, verify=True):
    """The blob's fields as {name: numpy array or list of str}. Raises Corrupt (bad magic,
    truncated, checksum) or VersionMismatch. verify=False skips the CRC."""
    blob = bytes(blob)
    n = len(blob)
    if n < 20 or blob[:6] != MAGIC:
        raise Corrupt("not a result blob (%d bytes)" % n)
    version = struct.unpack_from("<I", blob, 8)[0]
    if blob[6:8] != FORMAT or version != VERSION:
        raise VersionMismatch("result blob version %s/%d, this client reads %s/%d" % (
            blob[6:8].decode("ascii", "replace"), version, FORMAT.decode(), VERSION))
    if verify and crc32c(blob[:-4]) != struct.unpack_from("<I", blob, n - 4)[0]:
        raise Corrupt("result blob checksum mismatch")
    nf = struct.unpack_from("<I", blob, 12)[0]
    pos, end = 16, n - 4
    fields = {}
    for i in range(nf):
        if pos + 1 > end or pos + 1 + blob[pos] + 9 > end:
            raise Corrupt("result blob truncated in field %d" % i)
        nl = blob[pos]
        name = blob[pos + 1:pos + 1 + nl].decode("utf-8", "replace")
        pos += 1 + nl
        typ = chr(blob[pos])
        count = struct.unpack_from("<Q", blob, pos + 1)[0]
        pos += 9
        if typ == "s":
            strings = []
            for _ in range(count):
                if pos + 4 > end:
                    raise Corrupt("result field %s truncated" % name)
                sl = struct.unpack_from("<I", blob, pos)[0]
                if sl > end - pos - 4:
                    raise Corrupt("result field %s truncated" % name)
                strings.append(blob[pos + 4:pos + 4 + sl].decode("utf-8", "replace"))
                pos += 4 + sl
            fields[name] = strings
        elif typ in _DTYPES:
            dt = np.dtype(_DTYPES[typ])
            if count > (end - pos) // dt.itemsize:
                raise Corrupt("result field %s truncated" % name)
            fields[name] = np.frombuffer(blob, dt, count, pos).astype(dt.newbyteorder("="))
            pos += count * dt.itemsize
        else:
            raise Corrupt("result field %s: unknown type %r" % (name, typ))
    return fields


class Head:
    """The head of a finished job: logits = weights @ x_kept + bias, where x_kept holds the kept
    raw features, L2-normalised per layer over the kept features of that layer (the solver's
    normalisation; a layer whose kept values are all zero stays zero).

    weights      (n_classes, n_kept) float32
    bias         (n_classes,) float32
    features     (n_kept, 2) uint32: (extraction layer index, index within the layer), ascending
    layer_ids    (n_layers,) uint32: the extraction layers the method looked at
    layer_names  list of str; layer_dims, layer_kept (n_layers,) uint32
    lambdas, keeps: the cross-validation grid; cv_acc (n_lambdas, n_keeps) float64 mean
    validation accuracy; fold_acc (folds,) of the chosen cell
    metrics      dict: val_acc, train_acc, test_acc, lambda, keep, n_train, n_test, ...
    fields       every decoded field by its blob name
    """

    def __init__(self, fields):
        missing = [f for f in _REQUIRED if f not in fields]
        if missing:
            raise Corrupt("result blob: field %s missing" % missing[0])
        self.fields = fields
        k = int(fields["n_classes"][0])
        feats = fields["features"]
        if feats.size % 2:
            raise Corrupt("result field features: odd count")
        n_kept = feats.size // 2
        self.features = feats.reshape(n_kept, 2)
        self.layer_ids = fields["layer_ids"]
        self.layer_dims = fields["layer_dims"]
        self.layer_kept = fields["layer_kept"]
        nl = self.layer_ids.size
        if self.layer_dims.size != nl or self.layer_kept.size != nl:
            raise Corrupt("result blob: layer arrays of different lengths")
        if int(self.layer_kept.sum()) != n_kept or np.any(self.layer_kept > self.layer_dims):
            raise Corrupt("result blob: kept features do not match the layers")
        self.layer_names = list(fields.get("layer_names", [""] * nl))
        if fields["weights"].size != k * n_kept or fields["bias"].size != k:
            raise Corrupt("result blob: weights %d, bias %d for %d classes x %d kept" % (
                fields["weights"].size, fields["bias"].size, k, n_kept))
        self.weights = fields["weights"].reshape(k, n_kept)
        self.bias = fields["bias"]
        self.lambdas = fields["lambdas"]
        self.keeps = fields["keeps"]
        cv = fields["cv_acc"]
        if cv.size != self.lambdas.size * self.keeps.size:
            raise Corrupt("result blob: cv_acc has %d cells for a %d x %d grid" % (
                cv.size, self.lambdas.size, self.keeps.size))
        self.cv_acc = cv.reshape(self.lambdas.size, self.keeps.size)
        self.fold_acc = fields.get("fold_acc", np.zeros(0))
        self.metrics = {}
        for name, v in fields.items():
            if name in ("n_classes",) or not isinstance(v, np.ndarray) or v.size != 1:
                continue
            self.metrics[name] = v.item()
        self.metrics["n_classes"] = k
        self.metrics["n_kept"] = n_kept

    def __repr__(self):
        return "<h2tdb.Head %d classes x %d kept features from %d layers>" % (
            self.n_classes, self.n_kept, len(self.layer_names))

    @property
    def n_classes(self):
        return self.weights.shape[0]

    @property
    def n_kept(self):
        return self.weights.shape[1]

    def kept(self, x):
        """The normalised kept columns of raw samples x (n, sum(layer_dims)): the concatenation
        of the result's layers, in layer_ids order, as the head was trained on."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        d = int(self.layer_dims.sum())
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError("x has shape %s; this head reads (n, %d): layers %s" % (
                x.shape, d, ", ".join(self.layer_names)))
        offsets = np.concatenate([[0], np.cumsum(self.layer_dims.astype(np.int64))[:-1]])
        pos = {int(lid): off for lid, off in zip(self.layer_ids, offsets)}
        cols = np.array([pos[int(l)] + int(j) for l, j in self.features], dtype=np.int64)
        xs = x[:, cols].astype(np.float64)
        c0 = 0
        for kept in self.layer_kept:
            c1 = c0 + int(kept)
            norm = np.sqrt(np.sum(xs[:, c0:c1] ** 2, axis=1, keepdims=True))
            np.divide(xs[:, c0:c1], norm, out=xs[:, c0:c1], where=norm > 0)
            c0 = c1
        return xs.astype(np.float32)

    def logits(self, x):
        """Class scores (n, n_classes) of raw samples x (see kept)."""
        xs = self.kept(x).astype(np.float64)
        return xs @ self.weights.astype(np.float64).T + self.bias.astype(np.float64)

    def predict(self, x):
        """The predicted class index of each raw sample of x (see kept)."""
        return np.argmax(self.logits(x), axis=1).astype(np.uint32)
