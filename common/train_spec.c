/*
 * common/train_spec.c - the member table of h2t_train_spec, and the equality and hash that
 * walk it.
 */
#include "common/train_spec.h"

#include "common/util.h"

#include <string.h>

#define ROW(member, wire_name, kind)                                                               \
    {                                                                                              \
#member, wire_name, kind, (uint32_t)offsetof(h2t_train_spec, member),                      \
            (uint32_t)sizeof(((h2t_train_spec *)0)->member), 0                                     \
    }
#define ROWN(member, wire_name, kind, count)                                                       \
    {                                                                                              \
#member, wire_name, kind, (uint32_t)offsetof(h2t_train_spec, member),                      \
            (uint32_t)sizeof(((h2t_train_spec *)0)->member),                                       \
            (uint32_t)offsetof(h2t_train_spec, count)                                              \
    }

const h2t_spec_field h2t_train_spec_fields[] = {
    ROW(method, "method", H2T_SPEC_U32),
    ROW(penalty, NULL, H2T_SPEC_U32),
    ROW(optimizer, "optimizer", H2T_SPEC_U32),
    ROW(n_lambdas, NULL, H2T_SPEC_COUNT),
    ROWN(lambdas, "lambdas", H2T_SPEC_GRID, n_lambdas),
    ROW(n_keeps, NULL, H2T_SPEC_COUNT),
    ROW(folds, "folds", H2T_SPEC_U32),
    ROWN(keeps, "keep_fractions", H2T_SPEC_GRID, n_keeps),
    ROW(seed, "seed", H2T_SPEC_U64),
    ROWN(layers, NULL, H2T_SPEC_LIST, n_layers),
    ROW(n_layers, NULL, H2T_SPEC_COUNT),
    ROW(steps, "steps", H2T_SPEC_U32),
    ROW(lr, "lr", H2T_SPEC_F64),
    ROW(batch, NULL, H2T_SPEC_U32),
    ROW(max_iter, NULL, H2T_SPEC_U32),
    ROW(gtol, NULL, H2T_SPEC_F64),
    ROW(final_l2, NULL, H2T_SPEC_F64),
    ROW(path_len, NULL, H2T_SPEC_U32),
    ROW(threads, "threads", H2T_SPEC_U32),
    ROW(mem_limit, NULL, H2T_SPEC_U64),
    ROW(fold_kind, "fold_kind", H2T_SPEC_U32),
    ROW(cv_repeats, "cv_repeats", H2T_SPEC_U32),
    ROW(one_se, "one_se", H2T_SPEC_U32),
    ROW(auto_methods, "auto_methods", H2T_SPEC_U32),
    ROW(n_final_l2s, NULL, H2T_SPEC_COUNT),
    ROW(select_group, "select_group", H2T_SPEC_U32),
    ROW(cell_test, "cell_test", H2T_SPEC_U32),
    ROW(reserved, NULL, H2T_SPEC_U32),
    ROWN(final_l2s, "final_l2s", H2T_SPEC_GRID, n_final_l2s),
};

static const char *const method_names[H2T_METHOD_COUNT] = {"linear", "all",   "head2toe", "knn",
                                                           "ncm",    "layer", "auto"};

const char *h2t_method_name(uint32_t method)
{
    return method < H2T_METHOD_COUNT ? method_names[method] : "unknown";
}

int h2t_method_parse(const char *s, uint32_t *method)
{
    for (uint32_t m = 0; s && m < H2T_METHOD_COUNT; m++)
        if (!strcmp(s, method_names[m])) {
            *method = m;
            return 0;
        }
    return -1;
}

const size_t h2t_train_spec_n_fields =
    sizeof(h2t_train_spec_fields) / sizeof(h2t_train_spec_fields[0]);

const h2t_spec_field *h2t_train_spec_field(const char *name)
{
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++)
        if (!strcmp(h2t_train_spec_fields[i].name, name))
            return &h2t_train_spec_fields[i];
    return NULL;
}

static uint32_t get_u32(const h2t_train_spec *s, uint32_t off)
{
    uint32_t v;
    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

static uint64_t get_u64(const h2t_train_spec *s, uint32_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

/* A GRID or LIST row: *count is its count member, *n how many values may be read (a GRID's
 * count capped at its capacity, 0 for a LIST without a pointer); the values. */
static const void *array_of(const h2t_train_spec *s, const h2t_spec_field *f, uint32_t *count,
                            uint32_t *n)
{
    *count = *n = get_u32(s, f->count_off);
    if (f->type == H2T_SPEC_GRID) {
        if (*n > H2T_SPEC_MAX_GRID)
            *n = H2T_SPEC_MAX_GRID;
        return (const char *)s + f->off;
    }
    const uint32_t *p;
    memcpy(&p, (const char *)s + f->off, sizeof(p));
    if (!p)
        *n = 0;
    return p;
}

static size_t elem_size(const h2t_spec_field *f)
{
    return f->type == H2T_SPEC_GRID ? sizeof(double) : sizeof(uint32_t);
}

int h2t_train_spec_equal(const h2t_train_spec *a, const h2t_train_spec *b)
{
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        switch (f->type) {
        case H2T_SPEC_U32:
            if (get_u32(a, f->off) != get_u32(b, f->off))
                return 0;
            break;
        case H2T_SPEC_U64:
        case H2T_SPEC_F64: /* bit patterns */
            if (get_u64(a, f->off) != get_u64(b, f->off))
                return 0;
            break;
        case H2T_SPEC_GRID:
        case H2T_SPEC_LIST: {
            uint32_t ca, na, cb, nb;
            const void *va = array_of(a, f, &ca, &na), *vb = array_of(b, f, &cb, &nb);
            if (ca != cb || na != nb || (na && memcmp(va, vb, na * elem_size(f))))
                return 0;
            break;
        }
        default: /* H2T_SPEC_COUNT: compared with its array */
            break;
        }
    }
    return 1;
}

static void hash_u32(h2t_sha256 *h, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    h2t_sha256_update(h, b, 4);
}

static void hash_u64(h2t_sha256 *h, uint64_t v)
{
    hash_u32(h, (uint32_t)(v >> 32));
    hash_u32(h, (uint32_t)v);
}

uint64_t h2t_train_spec_hash(const h2t_train_spec *s)
{
    h2t_sha256 h;
    h2t_sha256_init(&h);
    h2t_sha256_update(&h, "h2tdb train spec 1", 18);
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (f->type == H2T_SPEC_COUNT)
            continue;
        size_t len = strlen(f->name);
        hash_u32(&h, (uint32_t)len);
        h2t_sha256_update(&h, f->name, len);
        switch (f->type) {
        case H2T_SPEC_U32:
            hash_u32(&h, get_u32(s, f->off));
            break;
        case H2T_SPEC_U64:
        case H2T_SPEC_F64:
            hash_u64(&h, get_u64(s, f->off));
            break;
        default: { /* GRID, LIST */
            uint32_t count, n;
            const uint8_t *v = array_of(s, f, &count, &n);
            hash_u32(&h, count);
            for (uint32_t k = 0; k < n; k++) {
                if (f->type == H2T_SPEC_GRID) {
                    uint64_t bits;
                    memcpy(&bits, v + k * sizeof(double), sizeof(bits));
                    hash_u64(&h, bits);
                } else {
                    uint32_t x;
                    memcpy(&x, v + k * sizeof(uint32_t), sizeof(x));
                    hash_u32(&h, x);
                }
            }
            break;
        }
        }
    }
    uint8_t d[32];
    h2t_sha256_final(&h, d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
    return v;
}
