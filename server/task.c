/*
 * server/task.c - task specs -> task records: the selection syntax (SEL, see server.h), label
 * maps for coarse groupings, and k-shot subsets. Every error names the argument and the part
 * of it that is wrong, since these strings come straight from a user's command line.
 */
#include "server/internal.h"

#include "common/err.h"
#include "common/util.h"
#include "extract/extract.h" /* h2t_extract_shard_parse */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The ids of one selection: at most max entries (the server's cap, at most
 * H2T_SRV_SEL_MAX_LIMIT), so the sizes below never overflow. */
typedef struct idvec {
    uint32_t *v;
    size_t n, cap, max;
    const char *what, *sel; /* for the error past the cap */
} idvec;

static int idvec_push(idvec *a, uint32_t x)
{
    if (a->n == a->cap) {
        if (a->n >= a->max)
            return h2t_err_set(H2T_ETOOBIG,
                               "%s '%.64s%s' selects more than %zu samples (the server's limit; "
                               "start it with h2tdb serve --max-selection N to change it)",
                               a->what, a->sel, strlen(a->sel) > 64 ? "..." : "", a->max);
        size_t cap = a->cap ? 2 * a->cap : 256;
        if (cap > a->max)
            cap = a->max;
        uint32_t *nv = realloc(a->v, cap * sizeof(*nv));
        if (!nv)
            return h2t_err_set(H2T_ENOMEM, "selection");
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* Parse a non-negative integer at *p; advances *p. -1 when there is none. */
static long long parse_num(const char **p)
{
    if (!isdigit((unsigned char)**p))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(*p, &end, 10);
    if (errno || v > UINT32_MAX)
        return -2;
    *p = end;
    return (long long)v;
}

static int sel_part(const char *part, const char *what, const uint8_t *split, uint32_t avail,
                    idvec *out)
{
    const char *p = part;
    if (!strcmp(part, "none"))
        return 0;
    if (!strncmp(part, "ids:", 4)) {
        p += 4;
        if (!*p)
            return h2t_err_set(H2T_EINVAL, "%s '%s': no ids after 'ids:'", what, part);
        while (*p) {
            long long a = parse_num(&p), b = a;
            if (a < 0)
                return h2t_err_set(H2T_EINVAL, "%s '%s': expected a sample id at '%s'", what, part,
                                   p);
            if (*p == '-') {
                p++;
                b = parse_num(&p);
                if (b < a)
                    return h2t_err_set(H2T_EINVAL, "%s '%s': bad range ending at '%s'", what, part,
                                       p);
            }
            if (b >= avail)
                return h2t_err_set(H2T_EINVAL,
                                   "%s '%s': sample %lld is not stored (samples 0..%u are)", what,
                                   part, b, avail ? avail - 1 : 0);
            for (long long x = a; x <= b; x++) {
                int rc = idvec_push(out, (uint32_t)x);
                if (rc < 0)
                    return rc;
            }
            if (*p == ',')
                p++;
            else if (*p)
                return h2t_err_set(H2T_EINVAL, "%s '%s': unexpected '%s'", what, part, p);
        }
        return 0;
    }
    int sp;
    if (!strncmp(p, "train", 5)) {
        sp = H2T_SPLIT_TRAIN;
        p += 5;
    } else if (!strncmp(p, "test", 4)) {
        sp = H2T_SPLIT_TEST;
        p += 4;
    } else {
        return h2t_err_set(H2T_EINVAL,
                           "%s '%s': want train, test, train:N, train[A:B], ids:LIST or none", what,
                           part);
    }
    const char *sname = sp == H2T_SPLIT_TRAIN ? "train" : "test";
    long long a = 0, b = -1; /* positions within the split; b = -1: to the end */
    if (*p == ':') {
        p++;
        b = parse_num(&p);
        if (b < 0 || *p)
            return h2t_err_set(H2T_EINVAL, "%s '%s': want %s:N with N a count", what, part, sname);
    } else if (*p == '[') {
        p++;
        if (*p != ':' && (a = parse_num(&p)) < 0)
            return h2t_err_set(H2T_EINVAL, "%s '%s': bad start in [A:B]", what, part);
        if (*p != ':')
            return h2t_err_set(H2T_EINVAL, "%s '%s': want %s[A:B]", what, part, sname);
        p++;
        if (*p != ']' && (b = parse_num(&p)) < 0)
            return h2t_err_set(H2T_EINVAL, "%s '%s': bad end in [A:B]", what, part);
        if (*p != ']' || p[1])
            return h2t_err_set(H2T_EINVAL, "%s '%s': want %s[A:B]", what, part, sname);
        if (b >= 0 && b < a)
            return h2t_err_set(H2T_EINVAL, "%s '%s': end before start", what, part);
    } else if (*p) {
        return h2t_err_set(H2T_EINVAL, "%s '%s': unexpected '%s' after '%s'", what, part, p, sname);
    }
    long long pos = 0;
    for (uint32_t i = 0; i < avail && (b < 0 || pos < b); i++) {
        if (split[i] != sp)
            continue;
        int rc = pos >= a ? idvec_push(out, i) : 0;
        if (rc < 0)
            return rc;
        pos++;
    }
    if (b >= 0 && pos < b)
        return h2t_err_set(H2T_EINVAL,
                           "%s '%s' asks for %s samples up to position %lld but only %lld are "
                           "extracted",
                           what, part, sname, b, pos);
    return 0;
}

int h2t_srv_sel_resolve(const char *sel, const char *what, const uint8_t *split, uint32_t avail,
                        uint32_t max_ids, uint32_t **ids, uint32_t *n)
{
    if (max_ids == 0 || max_ids > H2T_SRV_SEL_MAX_LIMIT)
        max_ids = H2T_SRV_SEL_MAX_LIMIT;
    idvec out = {.max = max_ids, .what = what, .sel = sel ? sel : ""};
    char part[256];
    int rc = 0;
    const char *p = sel ? sel : "";
    if (!*p)
        return h2t_err_set(H2T_EINVAL, "%s: empty selection", what);
    while (*p) {
        const char *e = strchr(p, '+');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= sizeof(part)) {
            rc = h2t_err_set(H2T_EINVAL, "%s '%s': %s part", what, sel,
                             len ? "too long a" : "empty");
            goto fail;
        }
        memcpy(part, p, len);
        part[len] = 0;
        if ((rc = sel_part(part, what, split, avail, &out)) < 0)
            goto fail;
        p += len + (e ? 1 : 0);
        if (e && !*p) {
            rc = h2t_err_set(H2T_EINVAL, "%s '%s': empty part after '+'", what, sel);
            goto fail;
        }
    }
    *ids = out.v ? out.v : malloc(1);
    *n = (uint32_t)out.n;
    if (!*ids)
        return h2t_err_set(H2T_ENOMEM, "selection");
    return 0;
fail:
    free(out.v);
    return rc;
}

/* ---------------- label maps ---------------- */

/* Task class of every source class (UINT32_MAX = dropped) and the task's class names. */
static int build_map(const h2t_msg_task_spec *spec, const h2t_source *src, uint32_t *cls,
                     char ***names_out, uint32_t *n_names)
{
    char **names = calloc(src->n_classes ? src->n_classes : 1, sizeof(*names));
    uint32_t nn = 0;
    int rc = 0;
    if (!names)
        return h2t_err_set(H2T_ENOMEM, "label map");
    if (spec->n_map == 0) {
        for (uint32_t c = 0; c < src->n_classes; c++) {
            if (!(names[c] = strdup(src->class_names[c]))) {
                rc = h2t_err_set(H2T_ENOMEM, "label map");
                goto fail;
            }
            cls[c] = c;
        }
        *names_out = names;
        *n_names = src->n_classes;
        return 0;
    }
    /* which entry names each source class: exact name, then case-insensitive, then id */
    for (uint32_t c = 0; c < src->n_classes; c++)
        cls[c] = UINT32_MAX - 1; /* unmapped */
    const h2t_msg_map_entry *star = NULL;
    for (size_t i = 0; i < spec->n_map; i++) {
        const h2t_msg_map_entry *m = &spec->map[i];
        if (!m->from || !*m->from || !m->to || !*m->to) {
            rc = h2t_err_set(H2T_EINVAL, "--map line %zu: empty class name", i + 1);
            goto fail;
        }
        if (!strcmp(m->from, "*")) {
            star = m;
            continue;
        }
        int hit = -1;
        for (uint32_t c = 0; c < src->n_classes && hit < 0; c++)
            if (!strcmp(m->from, src->class_names[c]))
                hit = (int)c;
        for (uint32_t c = 0; c < src->n_classes && hit < 0; c++)
            if (!strcasecmp(m->from, src->class_names[c]))
                hit = (int)c;
        if (hit < 0) {
            const char *q = m->from;
            long long id = parse_num(&q);
            if (id >= 0 && !*q && id < src->n_classes)
                hit = (int)id;
        }
        if (hit < 0) {
            rc = h2t_err_set(
                H2T_EINVAL, "--map: '%s' is not a class of source '%s' (classes: %s%s%s...)",
                m->from, src->name, src->n_classes ? src->class_names[0] : "",
                src->n_classes > 1 ? ", " : "", src->n_classes > 1 ? src->class_names[1] : "");
            goto fail;
        }
        if (cls[hit] != UINT32_MAX - 1) {
            rc =
                h2t_err_set(H2T_EINVAL, "--map: class '%s' is mapped twice", src->class_names[hit]);
            goto fail;
        }
        cls[hit] = (uint32_t)i; /* entry index for now */
    }
    for (uint32_t c = 0; c < src->n_classes; c++) {
        const char *to;
        if (cls[c] == UINT32_MAX - 1) {
            if (!star) {
                rc = h2t_err_set(H2T_EINVAL,
                                 "--map: class '%s' (id %u) is not mapped: add a line for it, "
                                 "or '* = NAME' for the rest",
                                 src->class_names[c], c);
                goto fail;
            }
            to = star->to;
        } else {
            to = spec->map[cls[c]].to;
        }
        if (!strcmp(to, "-")) {
            cls[c] = UINT32_MAX;
            continue;
        }
        uint32_t k = 0;
        while (k < nn && strcmp(names[k], to))
            k++;
        if (k == nn && !(names[nn++] = strdup(to))) {
            rc = h2t_err_set(H2T_ENOMEM, "label map");
            goto fail;
        }
        cls[c] = k;
    }
    if (nn == 0) {
        rc = h2t_err_set(H2T_EINVAL, "--map drops every class");
        goto fail;
    }
    *names_out = names;
    *n_names = nn;
    return 0;
fail:
    for (uint32_t k = 0; k < src->n_classes; k++)
        free(names[k]);
    free(names);
    return rc;
}

/* Keep the samples whose class is not dropped; write task labels. */
static int apply_map(const uint32_t *ids, uint32_t n, const h2t_source *src, const uint32_t *cls,
                     uint32_t **out_ids, uint32_t **out_labels, uint32_t *out_n)
{
    uint32_t *v = malloc((n ? n : 1) * sizeof(*v));
    uint32_t *l = malloc((n ? n : 1) * sizeof(*l));
    if (!v || !l) {
        free(v);
        free(l);
        return h2t_err_set(H2T_ENOMEM, "task lists");
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = cls[src->labels[ids[i]]];
        if (c == UINT32_MAX)
            continue;
        v[k] = ids[i];
        l[k++] = c;
    }
    *out_ids = v;
    *out_labels = l;
    *out_n = k;
    return 0;
}

int h2t_srv_task_build(h2t_store *st, const h2t_msg_task_spec *spec, uint32_t max_ids,
                       h2t_task **out)
{
    h2t_extraction *e = NULL;
    h2t_source *src = NULL;
    h2t_task *t = NULL;
    uint32_t *cls = NULL, *ids = NULL, id;
    uint32_t n = 0;
    int rc;
    if (!spec->name || !*spec->name)
        return h2t_err_set(H2T_EINVAL, "task: no name given");
    if (strlen(spec->name) >= sizeof(t->name))
        return h2t_err_set(H2T_EINVAL, "task name '%.40s...' is longer than %zu bytes", spec->name,
                           sizeof(t->name) - 1);
    if (!spec->extraction || !*spec->extraction)
        return h2t_err_set(H2T_EINVAL, "task '%s': no extraction given (--extraction E)",
                           spec->name);
    if ((rc = h2t_store_extraction_find(st, spec->extraction, &id)) < 0 ||
        (rc = h2t_store_extraction_get(st, id, &e)) < 0 ||
        (rc = h2t_store_source_get(st, e->source, &src)) < 0)
        goto out;
    /* a shard's samples are a range of its source, numbered from 0: its labels would not
     * line up */
    uint8_t wh[32];
    char whole[512];
    uint32_t si = 0, sn = 0, wn;
    if (h2t_extract_shard_parse(e->config, &si, &sn, wh, whole, sizeof whole, &wn) != 0) {
        rc = h2t_err_set(H2T_EINVAL,
                         "task '%s': extraction %u is shard %u/%u of a sharded extraction; "
                         "merge the shards first (h2tdb merge) and make tasks on the merged "
                         "store",
                         spec->name, e->id, si, sn);
        goto out;
    }
    t = calloc(1, sizeof(*t));
    cls = calloc(src->n_classes ? src->n_classes : 1, sizeof(*cls));
    if (!t || !cls) {
        rc = h2t_err_set(H2T_ENOMEM, "task");
        goto out;
    }
    snprintf(t->name, sizeof(t->name), "%s", spec->name);
    t->extraction = e->id;
    t->created_ms = h2t_wall_ms();
    if ((rc = build_map(spec, src, cls, &t->class_names, &t->n_classes)) < 0)
        goto out;
    uint32_t avail = e->samples_done < src->n_samples ? e->samples_done : src->n_samples;
    const char *sels[3] = {spec->train && *spec->train ? spec->train : "train",
                           spec->test && *spec->test ? spec->test : "test",
                           spec->val && *spec->val ? spec->val : "none"};
    const char *what[3] = {"--train", "--test", "--val"};
    uint32_t **lists[3] = {&t->train, &t->test, &t->val};
    uint32_t **labs[3] = {&t->train_labels, &t->test_labels, &t->val_labels};
    uint32_t *counts[3] = {&t->n_train, &t->n_test, &t->n_val};
    for (int k = 0; k < 3; k++) {
        if ((rc = h2t_srv_sel_resolve(sels[k], what[k], src->split, avail, max_ids, &ids, &n)) < 0)
            goto out;
        rc = apply_map(ids, n, src, cls, lists[k], labs[k], counts[k]);
        free(ids);
        ids = NULL;
        if (rc < 0)
            goto out;
    }
    if (t->n_train == 0) {
        rc = h2t_err_set(H2T_EINVAL, "task '%s': --train '%s' selects no samples", spec->name,
                         sels[0]);
        goto out;
    }
    if (spec->shots) {
        uint32_t *have = calloc(t->n_classes, sizeof(*have));
        if (!have) {
            rc = h2t_err_set(H2T_ENOMEM, "shots");
            goto out;
        }
        uint32_t k = 0;
        for (uint32_t i = 0; i < t->n_train; i++) {
            uint32_t c = t->train_labels[i];
            if (have[c] < spec->shots) {
                have[c]++;
                t->train[k] = t->train[i];
                t->train_labels[k++] = c;
            }
        }
        for (uint32_t c = 0; c < t->n_classes && rc == 0; c++)
            if (have[c] < spec->shots)
                rc = h2t_err_set(H2T_EINVAL,
                                 "--shots %u: class '%s' has only %u samples in --train '%s'",
                                 spec->shots, t->class_names[c], have[c], sels[0]);
        free(have);
        if (rc < 0)
            goto out;
        t->n_train = k;
        t->shots = spec->shots;
    }
    *out = t;
    t = NULL;
out:
    free(ids);
    free(cls);
    h2t_task_destroy(t);
    h2t_source_destroy(src);
    h2t_extraction_destroy(e);
    return rc;
}
