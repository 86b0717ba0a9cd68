/*
 * tests/test_train_spec.c - the train spec's member table (common/train_spec.h): it covers
 * every member, its wire side matches h2tdb.TrainRequest, every wire member survives a round
 * trip, the equality and hash see every member, and a request resolves to the solver spec.
 */
#include "common/err.h"
#include "common/train_spec.h"
#include "proto/proto.h"
#include "solver/solver.h"
#include "tests/test.h"

#include <stdint.h>

static size_t type_size(uint32_t type)
{
    switch (type) {
    case H2T_SPEC_U32:
    case H2T_SPEC_COUNT:
        return sizeof(uint32_t);
    case H2T_SPEC_U64:
    case H2T_SPEC_F64:
        return 8;
    case H2T_SPEC_GRID:
        return H2T_SPEC_MAX_GRID * sizeof(double);
    case H2T_SPEC_LIST:
        return sizeof(const uint32_t *);
    default:
        return 0;
    }
}

/* A member added to h2t_train_spec without a row in the table makes the rows' sizes fall
 * short of sizeof (the struct has no padding), so this test fails until the row is added. */
TEST(train_spec_table_covers_every_member)
{
    size_t sum = 0, end = 0;
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (type_size(f->type) != f->size)
            TEST_FAILF("row %s: size %u, its type wants %zu", f->name, f->size, type_size(f->type));
        if (f->off != end) /* declaration order, no gap and no overlap */
            TEST_FAILF("row %s at offset %u, expected %zu (a member without a row, or rows out "
                       "of order)",
                       f->name, f->off, end);
        end = f->off + f->size;
        sum += f->size;
        ASSERT(h2t_train_spec_field(f->name) == f);
        if (f->type == H2T_SPEC_GRID || f->type == H2T_SPEC_LIST) {
            const h2t_spec_field *c = NULL;
            for (size_t k = 0; k < h2t_train_spec_n_fields; k++)
                if (h2t_train_spec_fields[k].off == f->count_off)
                    c = &h2t_train_spec_fields[k];
            if (!c || c->type != H2T_SPEC_COUNT)
                TEST_FAILF("row %s: its count is not a COUNT row", f->name);
        }
        if (f->type == H2T_SPEC_COUNT) {
            int users = 0;
            for (size_t k = 0; k < h2t_train_spec_n_fields; k++)
                users += (h2t_train_spec_fields[k].type == H2T_SPEC_GRID ||
                          h2t_train_spec_fields[k].type == H2T_SPEC_LIST) &&
                         h2t_train_spec_fields[k].count_off == f->off;
            if (users != 1)
                TEST_FAILF("COUNT row %s counts %d arrays", f->name, users);
            ASSERT(f->wire == NULL); /* travels with its array */
        }
    }
    ASSERT_EQ(sum, sizeof(h2t_train_spec));
    ASSERT_EQ(end, sizeof(h2t_train_spec));
    ASSERT(h2t_train_spec_field("nosuch") == NULL);
    ASSERT_STREQ(h2t_train_spec_field("keeps")->wire, "keep_fractions");
}

/* A TrainRequest field without a row, or a row naming a missing field or one of another type,
 * fails here. */
TEST(train_spec_wire_fields_match_proto)
{
    ASSERT_OK(h2t_proto_train_spec_check());
}

static const uint32_t g_layers_a[] = {3, 1, 4}, g_layers_b[] = {3, 1, 5};

/* Every member set to a value of its own, different from 0 and from the defaults. */
static void fill_distinct(h2t_train_spec *s, unsigned salt)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        char *p = (char *)s + f->off;
        unsigned v = 1000u * salt + 17u * (unsigned)i + 3u;
        switch (f->type) {
        case H2T_SPEC_U32: {
            uint32_t x = v;
            memcpy(p, &x, sizeof(x));
            break;
        }
        case H2T_SPEC_U64: {
            uint64_t x = ((uint64_t)v << 33) | v; /* uses the high half */
            memcpy(p, &x, sizeof(x));
            break;
        }
        case H2T_SPEC_F64: {
            double x = v + 0.25;
            memcpy(p, &x, sizeof(x));
            break;
        }
        case H2T_SPEC_GRID: {
            uint32_t n = 3 + (uint32_t)(i % 5);
            double *g = (double *)(void *)p;
            for (uint32_t k = 0; k < n; k++)
                g[k] = v * 1e-6 + k * 1e-3;
            memcpy((char *)s + f->count_off, &n, sizeof(n));
            break;
        }
        case H2T_SPEC_LIST: {
            const uint32_t *l = g_layers_a;
            uint32_t n = 3;
            memcpy(p, &l, sizeof(l));
            memcpy((char *)s + f->count_off, &n, sizeof(n));
            break;
        }
        default:
            break;
        }
    }
}

/* s with every member that has no wire field cleared (what the wire gives back). */
static void wire_part(const h2t_train_spec *s, h2t_train_spec *out)
{
    *out = *s;
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (f->wire || f->type == H2T_SPEC_COUNT)
            continue;
        memset((char *)out + f->off, 0, f->size);
        if (f->type == H2T_SPEC_GRID || f->type == H2T_SPEC_LIST)
            memset((char *)out + f->count_off, 0, sizeof(uint32_t));
    }
}

static void roundtrip(const h2t_msg *in, h2t_msg *out)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    ASSERT_OK(h2t_proto_encode(in, &frame, &len));
    ASSERT_OK(h2t_proto_decode(frame + 4, len - 4, out));
    free(frame);
}

TEST(train_spec_wire_roundtrip_every_field)
{
    /* by name: the values a client sends come back as they were */
    h2t_msg m = {.id = 9, .type = H2T_MSG_TRAIN}, d;
    h2t_msg_train *t = &m.u.train;
    t->task = "fmnist";
    t->retrain = 1;
    t->inputs_digest = 0xfedcba9876543210ull;
    t->spec.method = H2T_METHOD_ALL;
    t->spec.optimizer = H2T_OPT_ADAM;
    t->spec.n_lambdas = 3;
    t->spec.lambdas[0] = 0.5, t->spec.lambdas[1] = 0.25, t->spec.lambdas[2] = 1e-300;
    t->spec.n_keeps = 2;
    t->spec.keeps[0] = 0.1, t->spec.keeps[1] = 1.0;
    t->spec.folds = 7;
    t->spec.steps = 11;
    t->spec.lr = 0.03;
    t->spec.seed = 0x123456789abcdef0ull;
    t->spec.threads = 3;
    t->spec.penalty = H2T_PENALTY_NONE + 1; /* not on the wire: comes back 0 */
    t->spec.mem_limit = 5;
    roundtrip(&m, &d);
    ASSERT_EQ(d.type, H2T_MSG_TRAIN);
    const h2t_msg_train *r = &d.u.train;
    ASSERT_STREQ(r->task, "fmnist");
    ASSERT_EQ(r->retrain, 1);
    ASSERT(r->inputs_digest == 0xfedcba9876543210ull);
    ASSERT_EQ(r->spec.method, H2T_METHOD_ALL);
    ASSERT_EQ(r->spec.optimizer, H2T_OPT_ADAM);
    ASSERT_EQ(r->spec.n_lambdas, 3);
    ASSERT(r->spec.lambdas[0] == 0.5 && r->spec.lambdas[1] == 0.25 && r->spec.lambdas[2] == 1e-300);
    ASSERT_EQ(r->spec.n_keeps, 2);
    ASSERT(r->spec.keeps[0] == 0.1 && r->spec.keeps[1] == 1.0);
    ASSERT_EQ(r->spec.folds, 7);
    ASSERT_EQ(r->spec.steps, 11);
    ASSERT(r->spec.lr == 0.03);
    ASSERT(r->spec.seed == 0x123456789abcdef0ull);
    ASSERT_EQ(r->spec.threads, 3);
    ASSERT_EQ(r->spec.penalty, 0);
    ASSERT_EQ(r->spec.mem_limit, 0);
    h2t_msg_free(&d);

    /* by the table: every wire member, set to a distinct value, comes back; the others 0 */
    h2t_train_spec want;
    fill_distinct(&t->spec, 1);
    wire_part(&t->spec, &want);
    size_t on_wire = 0;
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++)
        on_wire += h2t_train_spec_fields[i].wire != NULL;
    ASSERT_GE(on_wire, 9);
    roundtrip(&m, &d);
    ASSERT(h2t_train_spec_equal(&d.u.train.spec, &want));
    ASSERT(!h2t_train_spec_equal(&d.u.train.spec, &t->spec)); /* the non-wire members did not */
    h2t_msg_free(&d);

    /* the same spec inside a Job, and inside a job list */
    h2t_msg_job job = {.id = 4, .has_spec = 1};
    job.spec = *t;
    h2t_msg jm = {.id = 2, .type = H2T_MSG_JOB};
    jm.u.job = job;
    roundtrip(&jm, &d);
    ASSERT_EQ(d.u.job.has_spec, 1);
    ASSERT_STREQ(d.u.job.spec.task, "fmnist");
    ASSERT(h2t_train_spec_equal(&d.u.job.spec.spec, &want));
    h2t_msg_free(&d);
    h2t_msg_job two[2] = {job, job};
    two[1].has_spec = 0;
    h2t_msg jl = {.id = 3, .type = H2T_MSG_JOB_LIST};
    jl.u.job_list.n = 2;
    jl.u.job_list.v = two;
    roundtrip(&jl, &d);
    ASSERT_EQ(d.u.job_list.n, 2);
    ASSERT(h2t_train_spec_equal(&d.u.job_list.v[0].spec.spec, &want));
    ASSERT_EQ(d.u.job_list.v[1].has_spec, 0);
    h2t_msg_free(&d);
}

/* A packed Envelope {id 1, train {lambdas: n doubles}} written by hand. */
static size_t train_with_lambdas(uint8_t *buf, unsigned n)
{
    size_t body = 1 + 2 + 8 * (size_t)n, k = 0; /* tag, 2-byte length, values */
    buf[k++] = 0x08, buf[k++] = 0x01;           /* id = 1 */
    buf[k++] = 0xaa, buf[k++] = 0x01;           /* field 21 (train), length-delimited */
    buf[k++] = (uint8_t)(0x80 | (body & 0x7f)), buf[k++] = (uint8_t)(body >> 7);
    buf[k++] = 0x22; /* field 4 (lambdas), packed */
    buf[k++] = (uint8_t)(0x80 | ((8 * n) & 0x7f)), buf[k++] = (uint8_t)((8 * n) >> 7);
    for (unsigned i = 0; i < n; i++) {
        double v = 1.0 / (i + 1);
        memcpy(buf + k, &v, 8); /* little-endian, as protobuf */
        k += 8;
    }
    return k;
}

TEST(train_spec_wire_grid_limit)
{
    uint8_t buf[600];
    h2t_msg d;
    size_t len = train_with_lambdas(buf, H2T_SPEC_MAX_GRID);
    ASSERT_OK(h2t_proto_decode(buf, len, &d));
    ASSERT_EQ(d.u.train.spec.n_lambdas, H2T_SPEC_MAX_GRID);
    ASSERT(d.u.train.spec.lambdas[H2T_SPEC_MAX_GRID - 1] == 1.0 / H2T_SPEC_MAX_GRID);
    h2t_msg_free(&d);
    len = train_with_lambdas(buf, H2T_SPEC_MAX_GRID + 1);
    ASSERT_EQ(h2t_proto_decode(buf, len, &d), H2T_EPROTO);
    ASSERT_CONTAINS(h2t_err_detail(), "TrainRequest.lambdas: 33 values");
    /* a spec whose count runs past its grid is refused before it is sent */
    h2t_msg m = {.type = H2T_MSG_TRAIN};
    m.u.train.task = "t";
    m.u.train.spec.n_keeps = H2T_SPEC_MAX_GRID + 1;
    uint8_t *frame = NULL;
    size_t flen = 0;
    ASSERT_EQ(h2t_proto_encode(&m, &frame, &flen), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "keeps");
    ASSERT(frame == NULL);
}

/* Change member f of s (a valid change for every type). */
static void perturb(h2t_train_spec *s, const h2t_spec_field *f, int count_too)
{
    char *p = (char *)s + f->off;
    switch (f->type) {
    case H2T_SPEC_U32: {
        uint32_t x;
        memcpy(&x, p, 4);
        x++;
        memcpy(p, &x, 4);
        break;
    }
    case H2T_SPEC_U64: {
        uint64_t x;
        memcpy(&x, p, 8);
        x += 1ull << 40;
        memcpy(p, &x, 8);
        break;
    }
    case H2T_SPEC_F64: {
        double x;
        memcpy(&x, p, 8);
        x = x * 2 + 1;
        memcpy(p, &x, 8);
        break;
    }
    case H2T_SPEC_GRID:
        if (count_too) {
            uint32_t n;
            memcpy(&n, (char *)s + f->count_off, 4);
            n--;
            memcpy((char *)s + f->count_off, &n, 4);
        } else {
            ((double *)(void *)p)[0] += 0.5;
        }
        break;
    case H2T_SPEC_LIST:
        if (count_too) {
            uint32_t n = 2;
            memcpy((char *)s + f->count_off, &n, 4);
        } else {
            const uint32_t *l = g_layers_b; /* the same count, another last value */
            memcpy(p, &l, sizeof(l));
        }
        break;
    default:
        break;
    }
}

TEST(train_spec_equal_and_hash_see_every_member)
{
    h2t_train_spec a, b;
    fill_distinct(&a, 2);
    b = a;
    ASSERT(h2t_train_spec_equal(&a, &b));
    ASSERT(h2t_train_spec_hash(&a) == h2t_train_spec_hash(&b));
    /* unused grid slots and the list's address do not count, its values do */
    b.lambdas[H2T_SPEC_MAX_GRID - 1] = 42;
    uint32_t copy[3];
    memcpy(copy, g_layers_a, sizeof(copy));
    b.layers = copy;
    ASSERT(h2t_train_spec_equal(&a, &b));
    ASSERT(h2t_train_spec_hash(&a) == h2t_train_spec_hash(&b));
    int seen = 0;
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (f->type == H2T_SPEC_COUNT)
            continue;
        for (int count_too = 0; count_too < 2; count_too++) {
            if (count_too && f->type != H2T_SPEC_GRID && f->type != H2T_SPEC_LIST)
                continue;
            b = a;
            perturb(&b, f, count_too);
            if (h2t_train_spec_equal(&a, &b))
                TEST_FAILF("member %s%s changed, yet the specs are equal", f->name,
                           count_too ? " (count)" : "");
            if (h2t_train_spec_hash(&a) == h2t_train_spec_hash(&b))
                TEST_FAILF("member %s%s changed, yet the hashes are equal", f->name,
                           count_too ? " (count)" : "");
            seen++;
        }
    }
    ASSERT_GE(seen, (int)h2t_train_spec_n_fields);
    /* doubles compare bit for bit: the hash agrees with the equality */
    b = a;
    b.lr = -0.0;
    a.lr = 0.0;
    ASSERT(!h2t_train_spec_equal(&a, &b));
}

TEST(train_spec_resolve_defaults_and_overrides)
{
    h2t_train_spec req, got, want;
    for (uint32_t m = H2T_METHOD_LINEAR; m < H2T_METHOD_COUNT; m++) {
        memset(&req, 0, sizeof(req));
        req.method = m;
        ASSERT_OK(h2t_train_spec_resolve(&req, &got));
        h2t_train_spec_default(&want, m);
        ASSERT(h2t_train_spec_equal(&got, &want));
    }
    /* every member a request sets replaces the default, the others stay */
    memset(&req, 0, sizeof(req));
    req.method = H2T_METHOD_HEAD2TOE;
    req.n_lambdas = 1;
    req.lambdas[0] = 3e-3;
    req.folds = 3;
    req.seed = 5;
    req.threads = 2;
    req.batch = 64;
    req.layers = g_layers_a;
    req.n_layers = 2;
    ASSERT_OK(h2t_train_spec_resolve(&req, &got));
    h2t_train_spec_default(&want, H2T_METHOD_HEAD2TOE);
    want.n_lambdas = 1;
    want.lambdas[0] = 3e-3;
    want.folds = 3;
    want.seed = 5;
    want.threads = 2;
    want.batch = 64;
    want.layers = g_layers_a;
    want.n_layers = 2;
    ASSERT(h2t_train_spec_equal(&got, &want));
    ASSERT_EQ(got.n_keeps, 5); /* the default keep grid */
    /* bad requests name the field */
    memset(&req, 0, sizeof(req));
    req.method = H2T_METHOD_COUNT;
    ASSERT_EQ(h2t_train_spec_resolve(&req, &got), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "method 7");
    memset(&req, 0, sizeof(req));
    req.lr = -1;
    ASSERT_EQ(h2t_train_spec_resolve(&req, &got), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "learning rate");
    memset(&req, 0, sizeof(req));
    req.threads = 257;
    ASSERT_EQ(h2t_train_spec_resolve(&req, &got), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "threads 257");
    memset(&req, 0, sizeof(req));
    req.n_lambdas = H2T_SPEC_MAX_GRID + 1;
    ASSERT_EQ(h2t_train_spec_resolve(&req, &got), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "lambda grid");
    memset(&req, 0, sizeof(req));
    req.optimizer = 2;
    ASSERT_EQ(h2t_train_spec_resolve(&req, &got), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "optimizer");
}
