/* Data sources (extract/data.c) and preprocessing (extract/preprocess.c) on fixtures written
 * in the test's temporary directory: IDX (plain and gzip), npy, PNG/JPEG folders, and every
 * bad-input path. */
#include "common/err.h"
#include "common/util.h"
#include "extract/extract.h"
#include "tests/test.h"

#include <stdio.h> /* before jpeglib.h, which needs FILE */

#include <jpeglib.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- fixture writers ---- */

static void put_file(const char *path, const void *buf, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ASSERT(f != NULL);
        ASSERT_EQ(gzwrite(f, buf, (unsigned)len), (long long)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        ASSERT(f != NULL);
        ASSERT_EQ(fwrite(buf, 1, len, f), len);
        fclose(f);
    }
}

/* IDX images n x h x w, pixel (i, y, x) = (i * 16 + y * w + x) & 255 */
static size_t idx_images(uint8_t *buf, uint32_t n, uint32_t h, uint32_t w, uint32_t base)
{
    buf[0] = buf[1] = 0;
    buf[2] = 8;
    buf[3] = 3;
    h2t_be32_put(buf + 4, n);
    h2t_be32_put(buf + 8, h);
    h2t_be32_put(buf + 12, w);
    for (uint32_t i = 0; i < n * h * w; i++)
        buf[16 + i] = (uint8_t)(((base + i / (h * w)) * 16 + i % (h * w)) & 255);
    return 16 + (size_t)n * h * w;
}

static size_t idx_labels(uint8_t *buf, uint32_t n, uint32_t base)
{
    buf[0] = buf[1] = 0;
    buf[2] = 8;
    buf[3] = 1;
    h2t_be32_put(buf + 4, n);
    for (uint32_t i = 0; i < n; i++)
        buf[8 + i] = (uint8_t)((base + i) % 3);
    return 8 + n;
}

/* dir with 5 train and 3 test images of 4 x 3, labels (i % 3) */
static void make_idx(const char *dir, int gz)
{
    mkdir(dir, 0755);
    uint8_t buf[1024];
    char p[512];
    const char *sfx = gz ? ".gz" : "";
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte%s", dir, sfx);
    put_file(p, buf, idx_images(buf, 5, 4, 3, 0), gz);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte%s", dir, sfx);
    put_file(p, buf, idx_labels(buf, 5, 0), gz);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte%s", dir, sfx);
    put_file(p, buf, idx_images(buf, 3, 4, 3, 5), gz);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte%s", dir, sfx);
    put_file(p, buf, idx_labels(buf, 3, 5), gz);
}

static int open_err(const char *spec, const char *detail_part)
{
    h2t_data *d = NULL;
    int rc = h2t_data_open(spec, &d);
    if (rc == 0) {
        h2t_data_close(d);
        TEST_FAILF("%s opened; expected an error naming \"%s\"", spec, detail_part);
    }
    ASSERT(d == NULL);
    ASSERT_CONTAINS(h2t_err_detail(), detail_part);
    return rc;
}

/* ---- idx ---- */

TEST(extract_data_idx_both_splits)
{
    make_idx("plain", 0);
    make_idx("gz", 1);
    h2t_data *a, *b;
    ASSERT_OK(h2t_data_open("idx:plain", &a));
    ASSERT_OK(h2t_data_open("idx:gz", &b));
    const h2t_data_info *ia = h2t_data_info_get(a), *ib = h2t_data_info_get(b);
    ASSERT_STREQ(ia->kind, "idx");
    ASSERT_STREQ(ia->name, "plain");
    ASSERT_STREQ(ia->uri, "idx:plain");
    ASSERT_EQ(ia->n_samples, 8);
    ASSERT_EQ(ia->n_train, 5);
    ASSERT_EQ(ia->n_test, 3);
    ASSERT_EQ(ia->h, 4);
    ASSERT_EQ(ia->w, 3);
    ASSERT_EQ(ia->c, 1);
    ASSERT_EQ(ia->n_classes, 3);
    ASSERT_STREQ(ia->class_names[2], "2");
    for (uint32_t i = 0; i < 8; i++) {
        ASSERT_EQ(ia->labels[i], i % 3);
        ASSERT_EQ(ia->split[i], i < 5 ? H2T_SPLIT_TRAIN : H2T_SPLIT_TEST);
    }
    /* the hash covers the decompressed content: gzip or not, the same source */
    ASSERT(memcmp(ia->hash, ib->hash, 32) == 0);
    h2t_image im;
    ASSERT_OK(h2t_data_read(b, 6, &im)); /* test image 1 = global 6 */
    ASSERT_EQ(im.pixel, H2T_PIX_U8);
    ASSERT_EQ(im.h, 4);
    const uint8_t *px = im.data;
    for (int k = 0; k < 12; k++)
        ASSERT_EQ(px[k], (6 * 16 + k) & 255);
    ASSERT_EQ(h2t_data_read(b, 8, &im), H2T_EINVAL);
    h2t_data_close(a);
    h2t_data_close(b);
}

TEST(extract_data_idx_classes_and_selection)
{
    make_idx("fashion-mnist", 1);
    h2t_data *d;
    ASSERT_OK(h2t_data_open("idx:fashion-mnist/", &d));
    const h2t_data_info *in = h2t_data_info_get(d);
    ASSERT_EQ(in->n_classes, 10);
    ASSERT_STREQ(in->class_names[0], "T-shirt/top");
    ASSERT_STREQ(in->class_names[9], "Ankle boot");
    uint8_t full[32];
    memcpy(full, in->hash, 32);
    ASSERT_OK(h2t_data_select(d, 2, 1));
    in = h2t_data_info_get(d);
    ASSERT_EQ(in->n_samples, 3);
    ASSERT_STREQ(in->name, "fashion-mnist[train:2,test:1]");
    ASSERT_CONTAINS(in->uri, "[train:2,test:1]");
    ASSERT(memcmp(full, in->hash, 32) != 0);
    ASSERT_EQ(in->labels[2], 5 % 3);
    ASSERT_EQ(in->split[2], H2T_SPLIT_TEST);
    h2t_image im;
    ASSERT_OK(h2t_data_read(d, 2, &im)); /* = source sample 5 (first test image) */
    ASSERT_EQ(((const uint8_t *)im.data)[0], (5 * 16) & 255);
    ASSERT_EQ(h2t_data_select(d, 6, 0), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "5 train and 3 test");
    ASSERT_EQ(h2t_data_select(d, 0, 0), H2T_EINVAL);
    ASSERT_OK(h2t_data_select(d, UINT32_MAX, 0)); /* train only */
    ASSERT_EQ(h2t_data_info_get(d)->n_samples, 5);
    ASSERT_STREQ(h2t_data_info_get(d)->name, "fashion-mnist[train:5,test:0]");
    uint8_t train_only[32];
    memcpy(train_only, h2t_data_info_get(d)->hash, 32);
    ASSERT_OK(h2t_data_select(d, UINT32_MAX, UINT32_MAX)); /* back to the whole source */
    ASSERT(memcmp(full, h2t_data_info_get(d)->hash, 32) == 0);
    ASSERT_STREQ(h2t_data_info_get(d)->name, "fashion-mnist");
    ASSERT_OK(h2t_data_select(d, 2, 1)); /* relative to the source, not to the last one */
    ASSERT_OK(h2t_data_select(d, UINT32_MAX, 0));
    ASSERT(memcmp(train_only, h2t_data_info_get(d)->hash, 32) == 0);
    h2t_data_close(d);

    /* classes.txt wins; a label beyond it is refused */
    make_idx("c", 0);
    put_file("c/classes.txt", "zero\none\n\ntwo\n", 14, 0);
    ASSERT_OK(h2t_data_open("idx:c", &d));
    ASSERT_EQ(h2t_data_info_get(d)->n_classes, 3);
    ASSERT_STREQ(h2t_data_info_get(d)->class_names[1], "one");
    h2t_data_close(d);
    put_file("c/classes.txt", "zero\none\n", 9, 0);
    ASSERT_EQ(open_err("idx:c", "label 2 but only 2 class names"), H2T_ECORRUPT);
    /* a name over 510 bytes is refused naming the line, never split into two classes */
    char big[1200];
    size_t bl = (size_t)snprintf(big, sizeof big, "zero\n");
    memset(big + bl, 'x', 600);
    bl += 600;
    bl += (size_t)snprintf(big + bl, sizeof big - bl, "\ntwo\n");
    put_file("c/classes.txt", big, bl, 0);
    ASSERT_EQ(open_err("idx:c", "line 2"), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "510 bytes");
    /* 510 bytes is fine */
    bl = (size_t)snprintf(big, sizeof big, "zero\n");
    memset(big + bl, 'y', 510);
    bl += 510;
    bl += (size_t)snprintf(big + bl, sizeof big - bl, "\ntwo\n");
    put_file("c/classes.txt", big, bl, 0);
    ASSERT_OK(h2t_data_open("idx:c", &d));
    ASSERT_EQ(h2t_data_info_get(d)->n_classes, 3);
    ASSERT_EQ(strlen(h2t_data_info_get(d)->class_names[1]), 510);
    h2t_data_close(d);
}

TEST(extract_data_idx_bad_input)
{
    uint8_t buf[1024];
    size_t n;
    ASSERT_EQ(open_err("idx:nodir", "nodir"), H2T_ENOTFOUND);
    mkdir("empty", 0755);
    ASSERT_EQ(open_err("idx:empty", "train-images-idx3-ubyte"), H2T_ENOTFOUND);

    make_idx("m", 0); /* bad magic */
    n = idx_images(buf, 5, 4, 3, 0);
    buf[1] = 7;
    put_file("m/train-images-idx3-ubyte", buf, n, 0);
    ASSERT_EQ(open_err("idx:m", "m/train-images-idx3-ubyte: bad IDX magic"), H2T_ECORRUPT);
    n = idx_images(buf, 5, 4, 3, 0);
    buf[3] = 2; /* 2 dims for images */
    put_file("m/train-images-idx3-ubyte", buf, n, 0);
    ASSERT_EQ(open_err("idx:m", "bad IDX magic: 2 dimensions"), H2T_ECORRUPT);

    make_idx("k", 1); /* labels count != images count */
    n = idx_labels(buf, 4, 0);
    put_file("k/train-labels-idx1-ubyte.gz", buf, n, 1);
    ASSERT_EQ(open_err("idx:k", "has 4 labels but"), H2T_ECORRUPT);

    make_idx("t", 0); /* truncated plain file */
    n = idx_images(buf, 3, 4, 3, 5);
    put_file("t/t10k-images-idx3-ubyte", buf, n - 5, 0);
    ASSERT_EQ(open_err("idx:t", "t/t10k-images-idx3-ubyte: truncated"), H2T_ECORRUPT);
    put_file("t/t10k-images-idx3-ubyte", buf, 10, 0); /* truncated header */
    ASSERT_EQ(open_err("idx:t", "truncated IDX header"), H2T_ECORRUPT);
    put_file("t/t10k-images-idx3-ubyte", buf, n, 0);
    buf[n] = 1; /* more bytes than the count */
    put_file("t/t10k-images-idx3-ubyte", buf, n + 1, 0);
    ASSERT_EQ(open_err("idx:t", "bad IDX count"), H2T_ECORRUPT);
    h2t_be32_put(buf + 4, 0); /* zero count */
    put_file("t/t10k-images-idx3-ubyte", buf, n, 0);
    ASSERT_EQ(open_err("idx:t", "bad IDX count"), H2T_ECORRUPT);

    make_idx("g", 1); /* truncated gzip stream */
    n = idx_images(buf, 5, 4, 3, 0);
    uint8_t z[2048];
    uLongf zl = sizeof z;
    /* a gzip file cut in half: write it whole, read it back, write half */
    put_file("g/whole.gz", buf, n, 1);
    FILE *f = fopen("g/whole.gz", "rb");
    zl = fread(z, 1, sizeof z, f);
    fclose(f);
    put_file("g/train-images-idx3-ubyte.gz", z, zl / 2, 0);
    ASSERT_EQ(open_err("idx:g", "g/train-images-idx3-ubyte.gz"), H2T_ECORRUPT);

    make_idx("l", 0); /* a split with images but no labels */
    unlink("l/t10k-labels-idx1-ubyte");
    ASSERT_EQ(open_err("idx:l", "t10k-labels-idx1-ubyte"), H2T_ENOTFOUND);

    ASSERT_EQ(open_err("bogus:x", "expected idx:DIR"), H2T_EINVAL);
}

/* ---- npy ---- */

static size_t npy_header(uint8_t *buf, const char *descr, const char *shape)
{
    char dict[200];
    int l = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t total = 10 + (size_t)l + 1;
    size_t pad = (64 - total % 64) % 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    uint16_t hl = (uint16_t)(l + 1 + pad);
    buf[8] = (uint8_t)hl;
    buf[9] = (uint8_t)(hl >> 8);
    memcpy(buf + 10, dict, (size_t)l);
    memset(buf + 10 + l, ' ', pad);
    buf[10 + l + pad] = '\n';
    return 10 + hl;
}

TEST(extract_data_npy)
{
    uint8_t buf[4096];
    size_t h = npy_header(buf, "|u1", "(4, 2, 3)"); /* 4 gray 2x3 images */
    for (int i = 0; i < 24; i++)
        buf[h + i] = (uint8_t)(i * 10);
    put_file("img.npy", buf, h + 24, 0);
    h = npy_header(buf, "<i8", "(4,)");
    int64_t lab[4] = {0, 2, 1, 2};
    memcpy(buf + h, lab, sizeof lab);
    put_file("lab.npy", buf, h + sizeof lab, 0);
    h2t_data *d;
    ASSERT_OK(h2t_data_open("npy:img.npy,lab.npy", &d));
    const h2t_data_info *in = h2t_data_info_get(d);
    ASSERT_EQ(in->n_samples, 4);
    ASSERT_EQ(in->c, 1);
    ASSERT_EQ(in->h, 2);
    ASSERT_EQ(in->w, 3);
    ASSERT_EQ(in->n_classes, 3);
    ASSERT_EQ(in->labels[1], 2);
    ASSERT_STREQ(in->name, "img");
    h2t_image im;
    ASSERT_OK(h2t_data_read(d, 2, &im));
    ASSERT_EQ(((const uint8_t *)im.data)[1], 130);
    h2t_data_close(d);
    ASSERT_OK(h2t_data_open("npy:img.npy", &d)); /* no labels: one class "none" */
    ASSERT_EQ(h2t_data_info_get(d)->n_classes, 1);
    ASSERT_STREQ(h2t_data_info_get(d)->class_names[0], "none");
    h2t_data_close(d);

    /* float32 NCHW */
    h = npy_header(buf, "<f4", "(2, 3, 2, 2)");
    float v[24];
    for (int i = 0; i < 24; i++)
        v[i] = (float)i - 0.5f;
    memcpy(buf + h, v, sizeof v);
    put_file("f.npy", buf, h + sizeof v, 0);
    ASSERT_OK(h2t_data_open("npy:f.npy", &d));
    ASSERT_EQ(h2t_data_info_get(d)->pixel, H2T_PIX_F32);
    ASSERT_EQ(h2t_data_info_get(d)->c, 3);
    ASSERT_OK(h2t_data_read(d, 1, &im));
    ASSERT_NEAR(((const float *)im.data)[0], 11.5, 0);
    h2t_data_close(d);

    /* bad input */
    put_file("trunc.npy", buf, h + sizeof v - 4, 0);
    ASSERT_EQ(open_err("npy:trunc.npy", "trunc.npy: truncated"), H2T_ECORRUPT);
    put_file("magic.npy", "NOTNUMPYATALL", 13, 0);
    ASSERT_EQ(open_err("npy:magic.npy", "magic.npy: not a .npy"), H2T_ECORRUPT);
    h = npy_header(buf, "<i8", "(3,)");
    put_file("lab3.npy", buf, h + 24, 0);
    ASSERT_EQ(open_err("npy:img.npy,lab3.npy", "has 3 labels but img.npy has 4"), H2T_ECORRUPT);
    h = npy_header(buf, "<i4", "(4,)");
    int32_t neg[4] = {0, -1, 0, 0};
    memcpy(buf + h, neg, sizeof neg);
    put_file("neg.npy", buf, h + sizeof neg, 0);
    ASSERT_EQ(open_err("npy:img.npy,neg.npy", "out of range"), H2T_ECORRUPT);
    int32_t big[4] = {0, 1, 16000000, 0}; /* one bad label: an error, not 16M classes */
    memcpy(buf + h, big, sizeof big);
    put_file("big.npy", buf, h + sizeof big, 0);
    ASSERT_EQ(open_err("npy:img.npy,big.npy", "label 16000000 of sample 2"), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "below 65536");
    h = npy_header(buf, "<f8", "(4, 2, 2)");
    put_file("f8.npy", buf, h + 128, 0);
    ASSERT_EQ(open_err("npy:f8.npy", "dtype '<f8'"), H2T_EUNSUPPORTED);
    ASSERT_EQ(open_err("npy:missing.npy", "missing.npy"), H2T_ENOTFOUND);
}

/* ---- folder ---- */

static void write_png(const char *path, const uint8_t *px, int w, int h, int c)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    ASSERT(png_image_write_to_file(&im, path, 0, px, 0, NULL));
}

static void write_jpeg(const char *path, const uint8_t *px, int w, int h)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    fclose(f);
    jpeg_destroy_compress(&ci);
}

static void make_folder(void)
{
    mkdir("imgs", 0755);
    mkdir("imgs/cat", 0755);
    mkdir("imgs/ant", 0755);
    uint8_t g[6] = {0, 50, 100, 150, 200, 250}, rgb[8 * 8 * 3];
    write_png("imgs/cat/b.png", g, 3, 2, 1);
    write_png("imgs/cat/a.PNG", g, 2, 3, 1);
    for (int i = 0; i < 8 * 8 * 3; i++)
        rgb[i] = (uint8_t)(i % 3 == 0 ? 200 : 40);
    write_jpeg("imgs/ant/x.jpg", rgb, 8, 8);
    put_file("imgs/ant/notes.txt", "not an image", 12, 0); /* ignored */
}

TEST(extract_data_folder)
{
    make_folder();
    h2t_data *d;
    ASSERT_OK(h2t_data_open("folder:imgs", &d));
    const h2t_data_info *in = h2t_data_info_get(d);
    ASSERT_EQ(in->n_classes, 2);
    ASSERT_STREQ(in->class_names[0], "ant"); /* sorted */
    ASSERT_STREQ(in->class_names[1], "cat");
    ASSERT_EQ(in->n_samples, 3);
    ASSERT_EQ(in->labels[0], 0);
    ASSERT_EQ(in->labels[1], 1);
    ASSERT_EQ(in->split[2], H2T_SPLIT_TRAIN);
    h2t_image im;
    ASSERT_OK(h2t_data_read(d, 0, &im)); /* the JPEG */
    ASSERT_EQ(im.c, 3);
    ASSERT_EQ(im.w, 8);
    const uint8_t *px = im.data;
    ASSERT_NEAR(px[0], 200, 4);
    ASSERT_NEAR(px[1], 40, 4);
    ASSERT_OK(h2t_data_read(d, 1, &im)); /* cat/a.PNG sorts before cat/b.png (bytewise) */
    ASSERT_EQ(im.w, 2);
    ASSERT_EQ(im.h, 3);
    ASSERT_EQ(im.c, 1);
    ASSERT_OK(h2t_data_read(d, 2, &im));
    ASSERT_EQ(im.w, 3);
    ASSERT_EQ(((const uint8_t *)im.data)[5], 250);
    uint8_t h1[32];
    memcpy(h1, in->hash, 32);
    h2t_data_close(d);
    /* a changed image changes the hash */
    uint8_t g[6] = {1, 50, 100, 150, 200, 250};
    write_png("imgs/cat/b.png", g, 3, 2, 1);
    ASSERT_OK(h2t_data_open("folder:imgs", &d));
    ASSERT(memcmp(h1, h2t_data_info_get(d)->hash, 32) != 0);
    /* an image that disappears after open is named when read */
    unlink("imgs/cat/b.png");
    ASSERT_EQ(h2t_data_read(d, 2, &im), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "imgs/cat/b.png");
    h2t_data_close(d);
}

TEST(extract_data_folder_bad_input)
{
    make_folder();
    put_file("imgs/cat/c.png", "garbage, not a png", 18, 0);
    ASSERT_EQ(open_err("folder:imgs", "imgs/cat/c.png: not a PNG or JPEG"), H2T_ECORRUPT);
    /* a truncated PNG passes the open check (magic) and is named when decoded */
    FILE *f = fopen("imgs/cat/b.png", "rb");
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    put_file("imgs/cat/c.png", buf, n - 12, 0);
    h2t_data *d;
    ASSERT_OK(h2t_data_open("folder:imgs", &d));
    h2t_image im;
    ASSERT_EQ(h2t_data_read(d, 3, &im), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "imgs/cat/c.png");
    h2t_data_close(d);
    /* a truncated JPEG too */
    unlink("imgs/cat/c.png");
    f = fopen("imgs/ant/x.jpg", "rb");
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    put_file("imgs/ant/y.jpg", buf, n / 2, 0);
    ASSERT_OK(h2t_data_open("folder:imgs", &d));
    ASSERT_EQ(h2t_data_read(d, 1, &im), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "imgs/ant/y.jpg");
    h2t_data_close(d);
    mkdir("none", 0755);
    ASSERT_EQ(open_err("folder:none", "no class sub-folders"), H2T_ENOTFOUND);
    mkdir("none/a", 0755);
    ASSERT_EQ(open_err("folder:none", "no .png/.jpg/.jpeg images"), H2T_ENOTFOUND);
    ASSERT_EQ(open_err("folder:missing", "missing"), H2T_ENOTFOUND);
}

/* ---- the content hash and the file reader ----
 *
 * The hash must not move: an existing store finds its source again by it. The expected
 * digests below were printed by the code before the SHA-NI / inflate rework (7cc16a4, gzread
 * and the first SHA-256) on these same fixtures; the fixtures are plain bytes, and a gzip
 * file's digest covers its inflated content, so no library version changes them. */

static void hash_hex(const char *spec, char hex[65])
{
    h2t_data *d;
    ASSERT_OK(h2t_data_open(spec, &d));
    h2t_hex(h2t_data_info_get(d)->hash, 32, hex);
    h2t_data_close(d);
}

/* n bytes of in as one gzip member (zlib level 6) appended at out + *at */
static void gz_member(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *at)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ASSERT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out + *at;
    zs.avail_out = (uInt)(cap - *at);
    ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *at += zs.total_out;
    deflateEnd(&zs);
}

/* A bigger IDX pair (larger than the reader's 256 KiB input and 512 KiB output chunks):
 * n images of 28 x 28, half smooth (compressible), half random; labels i % 10. */
static size_t big_idx(uint8_t **img, uint8_t **lab, uint32_t n)
{
    size_t ni = 16 + (size_t)n * 784;
    *img = malloc(ni);
    *lab = malloc(8 + n);
    ASSERT(*img && *lab);
    (*img)[0] = (*img)[1] = 0;
    (*img)[2] = 8;
    (*img)[3] = 3;
    h2t_be32_put(*img + 4, n);
    h2t_be32_put(*img + 8, 28);
    h2t_be32_put(*img + 12, 28);
    uint64_t r = 7;
    for (size_t i = 16; i < ni; i++)
        (*img)[i] = (i / 784) % 2 ? (uint8_t)h2t_rng_next(&r) : (uint8_t)(i % 251);
    (*lab)[0] = (*lab)[1] = 0;
    (*lab)[2] = 8;
    (*lab)[3] = 1;
    h2t_be32_put(*lab + 4, n);
    for (uint32_t i = 0; i < n; i++)
        (*lab)[8 + i] = (uint8_t)(i % 10);
    return ni;
}

TEST(extract_data_hash_unchanged)
{
    char hex[65];
    make_idx("plain", 0);
    make_idx("gz", 1);
    hash_hex("idx:plain", hex);
    ASSERT_STREQ(hex, "22c76a53f4b618bdbc4a3fdcefbdf050a57f5246d100a0367182b7b7dedc5478");
    hash_hex("idx:gz", hex);
    ASSERT_STREQ(hex, "22c76a53f4b618bdbc4a3fdcefbdf050a57f5246d100a0367182b7b7dedc5478");

    /* 3000 train images (2.35 MB), plain, one gzip member, and gzip in three members with
     * trailing bytes that are not a member (ignored, as gzread does) */
    uint8_t *img, *lab;
    size_t ni = big_idx(&img, &lab, 3000);
    mkdir("big", 0755);
    put_file("big/train-images-idx3-ubyte", img, ni, 0);
    put_file("big/train-labels-idx1-ubyte", lab, 8 + 3000, 0);
    hash_hex("idx:big", hex);
    ASSERT_STREQ(hex, "75313faee609f9fab05f7dc6dceb2700499420c3a08eb1c810279539408ab8b6");
    mkdir("bgz", 0755);
    put_file("bgz/train-images-idx3-ubyte.gz", img, ni, 1);
    put_file("bgz/train-labels-idx1-ubyte.gz", lab, 8 + 3000, 1);
    hash_hex("idx:bgz", hex);
    ASSERT_STREQ(hex, "75313faee609f9fab05f7dc6dceb2700499420c3a08eb1c810279539408ab8b6");
    size_t cap = ni + ni / 8 + 4096, at = 0;
    uint8_t *z = malloc(cap);
    ASSERT(z != NULL);
    gz_member(img, 1000, z, cap, &at);                   /* a small first member */
    gz_member(img + 1000, ni - 1000 - 333, z, cap, &at); /* the bulk */
    gz_member(img + ni - 333, 333, z, cap, &at);         /* a small last one: the size hint
                                                            is too small, the buffer grows */
    memcpy(z + at, "\x1f", 1);                           /* one stray byte: not a member */
    mkdir("multi", 0755);
    put_file("multi/train-images-idx3-ubyte.gz", z, at + 1, 0);
    put_file("multi/train-labels-idx1-ubyte", lab, 8 + 3000, 0);
    hash_hex("idx:multi", hex);
    ASSERT_STREQ(hex, "75313faee609f9fab05f7dc6dceb2700499420c3a08eb1c810279539408ab8b6");
    memcpy(z + at, "garbage after the last member", 29);
    put_file("multi/train-images-idx3-ubyte.gz", z, at + 29, 0);
    hash_hex("idx:multi", hex);
    ASSERT_STREQ(hex, "75313faee609f9fab05f7dc6dceb2700499420c3a08eb1c810279539408ab8b6");
    /* the pixels read back through the multi-member file */
    h2t_data *d;
    ASSERT_OK(h2t_data_open("idx:multi", &d));
    h2t_image im;
    ASSERT_OK(h2t_data_read(d, 2999, &im));
    ASSERT(memcmp(im.data, img + 16 + 2999 * 784, 784) == 0);
    ASSERT_OK(h2t_data_read(d, 1, &im));
    ASSERT(memcmp(im.data, img + 16 + 784, 784) == 0);
    h2t_data_close(d);
    free(z);
    free(img);
    free(lab);

    /* npy images + labels (the labels through the same reader) */
    uint8_t buf[4096];
    size_t h = npy_header(buf, "|u1", "(4, 2, 3)");
    for (int i = 0; i < 24; i++)
        buf[h + i] = (uint8_t)(i * 10);
    put_file("img.npy", buf, h + 24, 0);
    h = npy_header(buf, "<i8", "(4,)");
    int64_t l4[4] = {0, 2, 1, 2};
    memcpy(buf + h, l4, sizeof l4);
    put_file("lab.npy", buf, h + sizeof l4, 0);
    hash_hex("npy:img.npy,lab.npy", hex);
    ASSERT_STREQ(hex, "f6753e1f40624ae1cec34741243e6334d2c88c9eb281af44d36ed88990594b03");
    put_file("labz.npy", buf, h + sizeof l4, 1); /* gzipped labels are read too */
    hash_hex("npy:img.npy,labz.npy", hex);
    ASSERT_STREQ(hex, "f6753e1f40624ae1cec34741243e6334d2c88c9eb281af44d36ed88990594b03");

    /* a folder: the open hashes the file bytes; only the magic is checked there */
    mkdir("f", 0755);
    mkdir("f/b", 0755);
    mkdir("f/a", 0755);
    put_file("f/b/x.png", "\x89PNG\r\n\x1a\n-one-", 13, 0);
    put_file("f/a/y.jpg", "\xff\xd8\xff-two-", 8, 0);
    hash_hex("folder:f", hex);
    ASSERT_STREQ(hex, "a749136195b5f33a3e13acc6aad36d78469d665116beddf2299d3123892fa4ab");
}

TEST(extract_data_hash_fashion_mnist)
{
    /* The real data set (Debian dataset-fashion-mnist), when installed: its digest, and so
     * its stored source, is the one earlier builds recorded. */
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char spec[128], hex[65];
    snprintf(spec, sizeof spec, "idx:%s", dir);
    if (access(dir, R_OK) != 0) {
        fprintf(stderr, "  %s not installed: skipped\n", dir);
        return;
    }
    h2t_data *d;
    ASSERT_OK(h2t_data_open(spec, &d));
    const h2t_data_info *in = h2t_data_info_get(d);
    ASSERT_EQ(in->n_train, 60000);
    ASSERT_EQ(in->n_test, 10000);
    h2t_hex(in->hash, 32, hex);
    ASSERT_STREQ(hex, "ec2bb527705dc3a765f220290f6dc7342f29b9096edc191ce32317e309583201");
    ASSERT_OK(h2t_data_select(d, 1000, 2000)); /* the demo's selection */
    h2t_hex(h2t_data_info_get(d)->hash, 32, hex);
    ASSERT_STREQ(hex, "9031b0a02bf50ec2c035ed61392c00c6516fef4108e12bea2c9f8eadc46a3295");
    h2t_data_close(d);
}

TEST(extract_data_idx_splits_read_together)
{
    /* The test split is read on a second thread: its errors keep their code and detail, and
     * the train split's error comes first, as in a sequential read. */
    uint8_t buf[1024];
    size_t n = idx_images(buf, 3, 4, 3, 5);
    make_idx("e", 1);
    put_file("e/t10k-images-idx3-ubyte.gz", buf, n - 5, 1); /* test images truncated */
    ASSERT_EQ(open_err("idx:e", "e/t10k-images-idx3-ubyte.gz: truncated"), H2T_ECORRUPT);
    put_file("e/train-labels-idx1-ubyte.gz", "\x00\x00\x08\x05", 4, 1); /* train too */
    ASSERT_EQ(open_err("idx:e", "e/train-labels-idx1-ubyte.gz: bad IDX magic"), H2T_ECORRUPT);
    /* test images of another size than the train images */
    make_idx("s", 0);
    n = idx_images(buf, 3, 3, 4, 5);
    put_file("s/t10k-images-idx3-ubyte", buf, n, 0);
    ASSERT_EQ(open_err("idx:s", "s/t10k-images-idx3-ubyte images are 3x4x1, train images 4x3x1"),
              H2T_ECORRUPT);
    /* a test split alone (no train files): read on this thread, hashed as before */
    make_idx("o", 0);
    unlink("o/train-images-idx3-ubyte");
    unlink("o/train-labels-idx1-ubyte");
    h2t_data *d;
    ASSERT_OK(h2t_data_open("idx:o", &d));
    const h2t_data_info *in = h2t_data_info_get(d);
    ASSERT_EQ(in->n_train, 0);
    ASSERT_EQ(in->n_test, 3);
    ASSERT_EQ(in->split[0], H2T_SPLIT_TEST);
    char hex[65];
    h2t_hex(in->hash, 32, hex);
    ASSERT_STREQ(hex, "93b630979300b63151b5116f3d4eb646f3117cca7c997670aa8d539a5aa8972d");
    h2t_image im;
    ASSERT_OK(h2t_data_read(d, 2, &im));
    ASSERT_EQ(((const uint8_t *)im.data)[0], (7 * 16) & 255);
    h2t_data_close(d);
    /* both splits: the test samples follow the train samples */
    make_idx("b", 1);
    ASSERT_OK(h2t_data_open("idx:b", &d));
    ASSERT_OK(h2t_data_read(d, 5, &im));
    ASSERT_EQ(((const uint8_t *)im.data)[3], (5 * 16 + 3) & 255);
    h2t_data_close(d);
}

TEST(extract_data_reader_bad_gzip)
{
    uint8_t *img, *lab;
    size_t ni = big_idx(&img, &lab, 1000);
    size_t cap = ni + ni / 8 + 4096, at = 0;
    uint8_t *z = malloc(cap);
    ASSERT(z != NULL);
    gz_member(img, ni, z, cap, &at);
    mkdir("c", 0755);
    put_file("c/train-labels-idx1-ubyte", lab, 8 + 1000, 0);
    /* a flipped byte deep inside: a data error or a CRC mismatch, named */
    z[at / 2] ^= 0x5a;
    put_file("c/train-images-idx3-ubyte.gz", z, at, 0);
    ASSERT_EQ(open_err("idx:c", "c/train-images-idx3-ubyte.gz: "), H2T_ECORRUPT);
    z[at / 2] ^= 0x5a;
    /* a wrong size in the trailer: the hint is only a hint, the length check refuses it */
    for (int k = 0; k < 2; k++) {
        uint8_t save[4];
        memcpy(save, z + at - 4, 4);
        h2t_be32_put(z + at - 4, k ? 0xffffffffu : 100u);
        put_file("c/train-images-idx3-ubyte.gz", z, at, 0);
        ASSERT_EQ(open_err("idx:c", "c/train-images-idx3-ubyte.gz: "), H2T_ECORRUPT);
        memcpy(z + at - 4, save, 4);
    }
    /* cut inside the stream, and cut inside the trailer */
    put_file("c/train-images-idx3-ubyte.gz", z, at - 3, 0);
    ASSERT_EQ(open_err("idx:c", "c/train-images-idx3-ubyte.gz: truncated"), H2T_ECORRUPT);
    put_file("c/train-images-idx3-ubyte.gz", z, at / 3, 0);
    ASSERT_EQ(open_err("idx:c", "c/train-images-idx3-ubyte.gz: truncated"), H2T_ECORRUPT);
    /* the whole file is fine again */
    put_file("c/train-images-idx3-ubyte.gz", z, at, 0);
    h2t_data *d;
    ASSERT_OK(h2t_data_open("idx:c", &d));
    h2t_data_close(d);
    /* a directory where the file should be: a read error, named */
    mkdir("dd", 0755);
    mkdir("dd/train-images-idx3-ubyte", 0755);
    put_file("dd/train-labels-idx1-ubyte", lab, 8 + 1000, 0);
    ASSERT_EQ(open_err("idx:dd", "dd/train-images-idx3-ubyte"), H2T_EIO);
    free(z);
    free(img);
    free(lab);
}

/* ---- preprocessing ---- */

TEST(extract_prep_bilinear_half_pixel)
{
    /* 2x2 -> 4x4: source coordinates (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped
     * to 0, 0.25, 0.75, 1. Row [0, 100] -> 0, 25, 75, 100. */
    uint8_t px[4] = {0, 100, 200, 40};
    h2t_image im = {H2T_PIX_U8, 1, 2, 2, px};
    h2t_prep p = {1, 4, 4, 0, 255};
    float out[16];
    ASSERT_OK(h2t_prep_image(&p, &im, out));
    ASSERT_NEAR(out[0], 0, 1e-4);
    ASSERT_NEAR(out[1], 25, 1e-4);
    ASSERT_NEAR(out[2], 75, 1e-4);
    ASSERT_NEAR(out[3], 100, 1e-4);
    /* (y, x) = (1, 1): top 25, bottom 200 + (40 - 200) * 0.25 = 160 -> 25 + 135 * 0.25 */
    ASSERT_NEAR(out[5], 58.75, 1e-4);
    ASSERT_NEAR(out[15], 40, 1e-4);
    /* scale to [-1, 1] and replicate gray to 3 channels */
    h2t_prep p3 = {3, 4, 4, -1, 1};
    float o3[48];
    ASSERT_OK(h2t_prep_image(&p3, &im, o3));
    for (int c = 0; c < 3; c++) {
        ASSERT_NEAR(o3[c * 16 + 0], -1, 1e-6);
        ASSERT_NEAR(o3[c * 16 + 5], 58.75 / 127.5 - 1, 1e-5);
    }
    /* RGB -> 1 channel by luma; same size: no interpolation */
    uint8_t rgb[3] = {255, 0, 0};
    h2t_image ic = {H2T_PIX_U8, 3, 1, 1, rgb};
    h2t_prep p1 = {1, 1, 1, 0, 1};
    ASSERT_OK(h2t_prep_image(&p1, &ic, out));
    ASSERT_NEAR(out[0], 0.299, 1e-6);
    /* float tensors are used as-is and must match */
    float f[12];
    for (int i = 0; i < 12; i++)
        f[i] = (float)i;
    h2t_image ifl = {H2T_PIX_F32, 3, 2, 2, f};
    h2t_prep pf = {3, 2, 2, -1, 1};
    ASSERT_OK(h2t_prep_image(&pf, &ifl, out));
    ASSERT_NEAR(out[11], 11, 0);
    h2t_prep pbad = {3, 4, 4, -1, 1};
    ASSERT_EQ(h2t_prep_image(&pbad, &ifl, out), H2T_ESHAPE);
    ASSERT_CONTAINS(h2t_err_detail(), "does not match the model input");
}

TEST(extract_prep_parse)
{
    h2t_prep p = {3, 224, 224, -1, 1};
    ASSERT_OK(h2t_prep_parse("scale=0,1", &p));
    ASSERT_NEAR(p.lo, 0, 0);
    ASSERT_NEAR(p.hi, 1, 0);
    ASSERT_OK(h2t_prep_parse("resize=bilinear scale=-1,1 channels=3", &p));
    ASSERT_NEAR(p.lo, -1, 0);
    ASSERT_OK(h2t_prep_parse("-2.5,2.5", &p));
    ASSERT_NEAR(p.hi, 2.5, 0);
    ASSERT_EQ(h2t_prep_parse("scale=1", &p), H2T_EINVAL);
    ASSERT_EQ(h2t_prep_parse("scale=1,1", &p), H2T_EINVAL);
    ASSERT_EQ(h2t_prep_parse("scale=a,b", &p), H2T_EINVAL);
    ASSERT_EQ(h2t_prep_parse("crop=center", &p), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "unknown key 'crop'");
    ASSERT_EQ(h2t_prep_parse("channels=1", &p), H2T_ESHAPE);
    ASSERT_EQ(h2t_prep_parse("resize=nearest", &p), H2T_EUNSUPPORTED);
    ASSERT_NEAR(p.hi, 2.5, 0); /* failures change nothing */
}

/* The separable resize (each source row interpolated along x once, then rows mixed) gives
 * bitwise the values of the direct four-pixel form, written here as the reference: gray and
 * RGB, up- and downscaling, odd sizes. */
TEST(extract_prep_separable_matches_direct)
{
    static const uint32_t sz[][5] = {
        /* in h, in w, in c, out h, out w */
        {28, 28, 1, 224, 224}, {17, 33, 3, 224, 224}, {300, 200, 3, 224, 224},
        {28, 28, 1, 96, 160},  {5, 7, 3, 3, 3},       {1, 1, 1, 4, 9},
    };
    for (size_t t = 0; t < sizeof sz / sizeof sz[0]; t++) {
        uint32_t ih = sz[t][0], iw = sz[t][1], ic = sz[t][2], oh = sz[t][3], ow = sz[t][4];
        uint8_t *px = malloc((size_t)ih * iw * ic);
        float *out = malloc(sizeof(float) * 3 * oh * ow), *src = malloc(sizeof(float) * ih * iw);
        ASSERT(px && out && src);
        for (size_t i = 0; i < (size_t)ih * iw * ic; i++)
            px[i] = (uint8_t)(i * 37 + 11);
        h2t_prep p = {0};
        p.c = 3;
        p.h = oh;
        p.w = ow;
        p.lo = -1;
        p.hi = 1;
        h2t_image im = {H2T_PIX_U8, ic, ih, iw, px};
        ASSERT_OK(h2t_prep_image(&p, &im, out));
        float a = (p.hi - p.lo) / 255.0f, b = p.lo;
        for (uint32_t c = 0; c < 3; c++) {
            for (size_t i = 0; i < (size_t)ih * iw; i++)
                src[i] = px[i * ic + (ic == 3 ? c : 0)];
            for (uint32_t y = 0; y < oh; y++)
                for (uint32_t x = 0; x < ow; x++) {
                    double sy = ((double)y + 0.5) * ((double)ih / oh) - 0.5;
                    double sx = ((double)x + 0.5) * ((double)iw / ow) - 0.5;
                    sy = sy < 0 ? 0 : sy > ih - 1 ? ih - 1 : sy;
                    sx = sx < 0 ? 0 : sx > iw - 1 ? iw - 1 : sx;
                    uint32_t y0 = (uint32_t)sy, x0 = (uint32_t)sx;
                    uint32_t y1 = y0 + 1 < ih ? y0 + 1 : y0, x1 = x0 + 1 < iw ? x0 + 1 : x0;
                    float fy = (float)(sy - y0), fx = (float)(sx - x0);
                    const float *r0 = src + (size_t)y0 * iw, *r1 = src + (size_t)y1 * iw;
                    float top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                    float bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
                    float want = (top + (bot - top) * fy) * a + b;
                    float got = out[((size_t)c * oh + y) * ow + x];
                    if (memcmp(&want, &got, sizeof want))
                        TEST_FAILF("case %zu channel %u pixel (%u, %u): %.9g, direct form %.9g", t,
                                   c, y, x, (double)got, (double)want);
                }
        }
        free(px);
        free(out);
        free(src);
    }
}
