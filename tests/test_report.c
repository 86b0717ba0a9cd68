#include "cli/report.h"
#include "common/err.h"
#include "tests/test.h"

#include <stdint.h>
#include <unistd.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    b[n] = 0;
    fclose(f);
    return b;
}

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        c++;
    return c;
}

/* A small head2toe search on synthetic data: three layers, only the middle one informative. */
TEST(report_svg_of_a_head2toe_search)
{
    enum { N = 120, NT = 60, D0 = 8, D1 = 8, D2 = 8, D = D0 + D1 + D2, K = 3 };
    float *xtr = malloc(sizeof(float) * N * D), *xte = malloc(sizeof(float) * NT * D);
    uint32_t ytr[N], yte[NT];
    uint64_t s = 42;
    for (int i = 0; i < N + NT; i++) {
        float *row = i < N ? xtr + i * D : xte + (i - N) * D;
        uint32_t y = (uint32_t)(i % K);
        for (int j = 0; j < D; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            row[j] = (float)((s >> 33) % 1000) / 1000.0f;
        }
        row[D0 + y] += 3.0f; /* the informative features live in layer 1 */
        if (i < N)
            ytr[i] = y;
        else
            yte[i - N] = y;
    }
    uint32_t dims[3] = {D0, D1, D2};
    const char *names[3] = {"stem<&>", "block_5", "logits"};
    h2t_dataset d = {.n_train = N,
                     .n_test = NT,
                     .n_classes = K,
                     .n_layers = 3,
                     .x_train = xtr,
                     .y_train = ytr,
                     .x_test = xte,
                     .y_test = yte,
                     .layer_dims = dims,
                     .layer_names = names};
    h2t_train_spec spec;
    h2t_train_spec_default(&spec, H2T_METHOD_HEAD2TOE);
    spec.folds = 3;
    spec.n_keeps = 3;
    spec.keeps[0] = 0.05;
    spec.keeps[1] = 0.1;
    spec.keeps[2] = 0.2;
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &spec, NULL, NULL, NULL, &r));
    ASSERT_OK(h2t_report_svg(r, "test & title", "out.svg"));
    char *svg = slurp("out.svg");
    ASSERT(svg != NULL);
    ASSERT(strncmp(svg, "<?xml", 5) == 0);
    ASSERT_CONTAINS(svg, "</svg>");
    ASSERT_CONTAINS(svg, "test &amp; title");  /* escaped */
    ASSERT_CONTAINS(svg, "stem&lt;&amp;&gt;"); /* layer names escaped */
    ASSERT_EQ(count(svg, "class='bar'"), 3);   /* one bar per layer */
    ASSERT_EQ(count(svg, "<polyline"), (long long)r->n_lambdas);
    ASSERT_EQ(count(svg, "stroke='black'"), 1); /* exactly one chosen cell */
    /* the informative layer holds most of what was kept */
    ASSERT_GE(r->layer_kept[1], r->layer_kept[0]);
    ASSERT(access("out.svg.tmp", F_OK) != 0);
    /* an unwritable path is an error naming it, with nothing left behind */
    ASSERT_EQ(h2t_report_svg(r, "x", "no/such/dir/out.svg"), H2T_EIO);
    ASSERT_CONTAINS(h2t_err_detail(), "no/such/dir/out.svg");
    free(svg);
    h2t_result_destroy(r);
    free(xtr);
    free(xte);
}
