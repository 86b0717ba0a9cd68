#!/usr/bin/python3
"""Task generators of the evaluation suite (make eval, docs/eval.md).

    deploy/eval/gen.py OUT [DATASET ...] [--train N] [--test M] [--size S]

writes, per data set, OUT/NAME/tasks.json (the tasks over that data set's one extraction:
train / test selections, class maps, shots) and, for the rendered data sets, the images as a
`folder:` source in OUT/NAME/images/CLASS/NNNNN.png. Data sets (all by default):

  fmnist   Fashion-MNIST (Debian dataset-fashion-mnist, an `idx:` source; nothing rendered):
           the demo's three tasks: 10 classes, footwear/tops/other, 10-shot.
  shapes   dSprites-style: one white shape (arrow, L, half-disc) on black; tasks: x position
           (8 bins), orientation (8 bins of 45 degrees), scale (4 bins), which shape.
  count    CLEVR-count-style: 1..8 non-overlapping gray shapes; task: how many.
  glyphs   one uppercase letter rendered from Debian's font packages (DejaVu, Liberation,
           FreeFont); tasks: which letter (26), which typeface (9).

Every rendered sample has its own attributes; the folder's class of a sample is the tuple
of all its labels (e.g. "p3-o5-s1-k2"), and each task maps those tuples onto one attribute
with a class map. Samples are drawn i.i.d. with a fixed seed per data set; sample number i
(file NNNNN.png) is a training sample when i < N (default 1000) and a test sample otherwise
(M, default 2000). The selections are written as sample ids of the folder source, whose
order is the class folders sorted bytewise, then the files sorted bytewise.

A data set whose tasks.json already holds the same parameters is skipped, so a rerun writes
nothing and the folder's content hash (hence the extraction) stays the same. A data set is
written into a temporary folder and renamed into place, so an interrupted run leaves no
half-written data set behind.
"""
import json
import math
import os
import shutil
import sys

import numpy as np

GEN_VERSION = 2
SEEDS = {"shapes": 101, "count": 102, "glyphs": 103}

# (family label, Debian package, file) of the glyph typefaces; all regular weights.
FONTS = [
    ("DejaVuSans", "fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    ("DejaVuSerif", "fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"),
    ("DejaVuSansMono", "fonts-dejavu-core",
     "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
    ("LiberationSans", "fonts-liberation",
     "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
    ("LiberationSerif", "fonts-liberation",
     "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf"),
    ("LiberationMono", "fonts-liberation",
     "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf"),
    ("FreeSans", "fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeSans.ttf"),
    ("FreeSerif", "fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeSerif.ttf"),
    ("FreeMono", "fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeMono.ttf"),
]
LETTERS = [chr(ord("A") + i) for i in range(26)]
SHAPES = ["arrow", "ell", "halfdisc"]
FMNIST_COARSE = {"Sandal": "footwear", "Sneaker": "footwear", "Ankle boot": "footwear",
                 "T-shirt/top": "tops", "Pullover": "tops", "Coat": "tops", "Shirt": "tops",
                 "*": "other"}


def die(msg):
    sys.stderr.write("gen.py: %s\n" % msg)
    sys.exit(1)


PART_MAX = 200  # characters of one '+'-joined part (the server takes parts under 256)


def id_list(ids):
    """Selection of sorted sample ids: 'ids:' parts joined by '+', runs written as ranges
    (inclusive), each part at most PART_MAX characters."""
    runs = []
    ids = sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        runs.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    parts, cur = [], ""
    for r in runs:
        if cur and len(cur) + 1 + len(r) > PART_MAX:
            parts.append(cur)
            cur = ""
        cur = r if not cur else cur + "," + r
    parts.append(cur)
    return "+".join("ids:" + p for p in parts)


def folder_order(classes):
    """Sample id of each sample number in the folder source: class folders sorted bytewise,
    then files (NNNNN.png, zero-padded, so numeric order) within a class."""
    order = sorted(range(len(classes)), key=lambda i: (classes[i].encode(), i))
    sid = [0] * len(classes)
    for k, i in enumerate(order):
        sid[i] = k
    return sid


def rotate(pts, ang):
    c, s = math.cos(ang), math.sin(ang)
    return [(x * c - y * s, x * s + y * c) for x, y in pts]


def shape_poly(kind, r, ang):
    """Outline of a shape of radius r around (0, 0), turned by ang (radians, counter-clockwise
    on screen). No shape has a rotational symmetry, so orientation is defined on [0, 360)."""
    if kind == "arrow":  # isosceles triangle pointing along +x
        pts = [(r, 0.0), (-0.7 * r, 0.55 * r), (-0.7 * r, -0.55 * r)]
    elif kind == "ell":
        w = 0.45 * r
        pts = [(-r, -r), (-r + w, -r), (-r + w, r - w), (r, r - w), (r, r), (-r, r)]
        pts = [(x, y) for x, y in pts]
    else:  # half-disc, flat side facing -x
        pts = [(0.0, -r)] + [(r * math.cos(t), r * math.sin(t))
                              for t in np.linspace(-math.pi / 2, math.pi / 2, 24)] + [(0.0, r)]
        pts = [(x - 0.4 * r, y) for x, y in pts]
    return rotate(pts, -ang)  # screen y grows downwards


def render_shapes(n, size, rng, Image, ImageDraw):
    ss = 2  # drawn at twice the size, then downsampled (anti-aliasing)
    margin = 0.16 * size
    for _ in range(n):
        kind = int(rng.randint(len(SHAPES)))
        pbin, obin, sbin = int(rng.randint(8)), int(rng.randint(8)), int(rng.randint(4))
        r = size * (0.06 + 0.035 * sbin + 0.035 * rng.rand())
        x = margin + (size - 2 * margin) * (pbin + rng.rand()) / 8
        y = margin + (size - 2 * margin) * rng.rand()
        ang = math.radians(45 * (obin + rng.rand()))
        im = Image.new("L", (size * ss, size * ss), 0)
        pts = [((x + px) * ss, (y + py) * ss) for px, py in shape_poly(SHAPES[kind], r, ang)]
        ImageDraw.Draw(im).polygon(pts, fill=255)
        cls = "p%d-o%d-s%d-k%d" % (pbin, obin, sbin, kind)
        yield cls, im.resize((size, size), Image.LANCZOS)


def render_count(n, size, rng, Image, ImageDraw):
    ss = 2
    for _ in range(n):
        k = int(rng.randint(1, 9))
        placed = []
        tries = 0
        while len(placed) < k:
            tries += 1
            if tries > 10000:
                die("count: cannot place %d objects" % k)
            r = size * (0.045 + 0.04 * rng.rand())
            x, y = rng.uniform(r + 4, size - r - 4, 2)
            if all(math.hypot(x - a, y - b) > r + c + 6 for a, b, c in placed):
                placed.append((x, y, r))
        im = Image.new("L", (size * ss, size * ss), int(rng.randint(20, 70)))
        d = ImageDraw.Draw(im)
        for x, y, r in placed:
            kind = SHAPES[int(rng.randint(len(SHAPES)))]
            pts = [((x + px) * ss, (y + py) * ss)
                   for px, py in shape_poly(kind, r, rng.rand() * 2 * math.pi)]
            d.polygon(pts, fill=int(rng.randint(140, 256)))
        yield "n%d" % k, im.resize((size, size), Image.LANCZOS)


def render_glyphs(n, size, rng, Image, ImageDraw, ImageFont):
    cache = {}
    for _ in range(n):
        c, f = int(rng.randint(len(LETTERS))), int(rng.randint(len(FONTS)))
        px = int(size * (0.35 + 0.3 * rng.rand()))
        key = (f, px)
        if key not in cache:
            cache[key] = ImageFont.truetype(FONTS[f][2], px)
        font = cache[key]
        bg = int(rng.randint(190, 256))
        ink = int(rng.randint(0, 90))
        im = Image.new("L", (size, size), bg)
        d = ImageDraw.Draw(im)
        l, t, rgt, b = d.textbbox((0, 0), LETTERS[c], font=font)
        w, h = rgt - l, b - t
        x = (size - w) / 2 - l + rng.uniform(-0.12, 0.12) * size
        y = (size - h) / 2 - t + rng.uniform(-0.12, 0.12) * size
        d.text((x, y), LETTERS[c], fill=ink, font=font)
        im = im.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR, fillcolor=bg)
        yield "c%02d-f%d" % (c, f), im


def attr_tasks(name, classes, n_train, fields):
    """Tasks over a rendered data set: fields is [(task suffix, class-name part index,
    label of a part value, description)]."""
    sid = folder_order(classes)
    train = id_list(sid[:n_train])
    test = id_list(sid[n_train:])
    tasks = []
    for suffix, part, label, doc in fields:
        cmap = {c: label(c.split("-")[part]) for c in sorted(set(classes))}
        tasks.append({"name": "%s-%s" % (name, suffix), "train": train, "test": test,
                      "map": cmap, "doc": doc,
                      "n_classes": len(set(cmap.values()))})
    return tasks


def gen_rendered(out, name, n_train, n_test, size):
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        die("needs PIL (Debian python3-pil: deploy/deps.sh --eval) and /usr/bin/python3")
    n = n_train + n_test
    rng = np.random.RandomState(SEEDS[name])
    if name == "shapes":
        it = render_shapes(n, size, rng, Image, ImageDraw)
        fields = [("posx", 0, lambda v: "x" + v[1:], "x position, 8 bins"),
                  ("orient", 1, lambda v: "deg%d" % (45 * int(v[1:])), "orientation, 8 bins"),
                  ("scale", 2, lambda v: "scale" + v[1:], "scale, 4 bins"),
                  ("shape", 3, lambda v: SHAPES[int(v[1:])], "which shape, 3")]
    elif name == "count":
        it = render_count(n, size, rng, Image, ImageDraw)
        fields = [("count", 0, lambda v: v[1:], "number of objects, 1..8")]
    else:
        for fam, pkg, path in FONTS:
            if not os.path.isfile(path):
                die("glyphs: font %s missing (Debian %s: deploy/deps.sh --eval)" % (path, pkg))
        it = render_glyphs(n, size, rng, Image, ImageDraw, ImageFont)
        fields = [("char", 0, lambda v: LETTERS[int(v[1:])], "which letter, 26"),
                  ("font", 1, lambda v: FONTS[int(v[1:])][0], "which typeface, 9")]
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    classes = []
    for i, (cls, im) in enumerate(it):
        d = os.path.join(tmp, "images", cls)
        os.makedirs(d, exist_ok=True)
        im.save(os.path.join(d, "%05d.png" % i), optimize=False)
        classes.append(cls)
    tasks = attr_tasks(name, classes, n_train, fields)
    # relative to the data set's folder (run.py resolves it), so the data can be moved
    return tmp, {"source": "folder:images", "tasks": tasks}


def gen_fmnist(n_train, n_test):
    """Fashion-MNIST: the extraction keeps the first n_train train and n_test test images
    (extract --train/--test), so the tasks select whole splits."""
    tasks = [
        {"name": "fmnist10", "train": "train", "test": "test", "doc": "10 classes",
         "n_classes": 10},
        {"name": "fmnist-coarse", "train": "train", "test": "test", "map": FMNIST_COARSE,
         "doc": "footwear / tops / other", "n_classes": 3},
        {"name": "fmnist10-10shot", "train": "train", "test": "test", "shots": 10,
         "doc": "10 classes, 10 training images each", "n_classes": 10},
    ]
    return {"source": "idx:/usr/share/datasets/fashion-mnist", "split": [n_train, n_test],
            "tasks": tasks}


DATASETS = ["fmnist", "shapes", "count", "glyphs"]


def main(argv):
    args, names = [], []
    opts = {"--train": 1000, "--test": 2000, "--size": 224}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in opts:
            if i + 1 >= len(argv):
                die("%s needs a value" % a)
            try:
                opts[a] = int(argv[i + 1])
            except ValueError:
                die("%s: not a number: '%s'" % (a, argv[i + 1]))
            i += 2
            continue
        if a in ("-h", "--help"):
            sys.stdout.write(__doc__)
            return 0
        if a.startswith("-"):
            die("unknown option '%s' (try --help)" % a)
        args.append(a)
        i += 1
    if not args:
        die("usage: gen.py OUT [DATASET ...] [--train N] [--test M] [--size S]")
    root, names = args[0], args[1:] or DATASETS
    for nm in names:
        if nm not in DATASETS:
            die("unknown data set '%s' (have: %s)" % (nm, ", ".join(DATASETS)))
    n_train, n_test, size = opts["--train"], opts["--test"], opts["--size"]
    if n_train < 1 or n_test < 1 or size < 32:
        die("want --train >= 1, --test >= 1, --size >= 32")
    os.makedirs(root, exist_ok=True)
    root = os.path.abspath(root)
    for nm in names:
        out = os.path.join(root, nm)
        params = {"version": GEN_VERSION, "dataset": nm, "train": n_train, "test": n_test,
                  "size": size if nm != "fmnist" else None, "seed": SEEDS.get(nm)}
        tj = os.path.join(out, "tasks.json")
        try:
            with open(tj) as f:
                if json.load(f).get("params") == params:
                    print("%s: up to date (%s)" % (nm, tj))
                    continue
        except (OSError, ValueError):
            pass
        if nm == "fmnist":
            tmp, meta = None, gen_fmnist(n_train, n_test)
        else:
            tmp, meta = gen_rendered(out, nm, n_train, n_test, size)
        meta = dict(meta, name=nm, params=params)
        if tmp is None:
            tmp = out + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        with open(os.path.join(tmp, "tasks.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
        print("%s: %d tasks -> %s" % (nm, len(meta["tasks"]), tj))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
