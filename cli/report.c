#include "cli/report.h"

#include "common/err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define W_SVG 1000
#define H_SVG 720

/* Characters that SVG text must not hold raw. */
static void put_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static const char *method_name(uint32_t m)
{
    return h2t_method_name(m);
}

/* Round v up to a "nice" axis maximum (1, 2, 5 x 10^k). */
static double nice_max(double v)
{
    if (v <= 0)
        return 1;
    double p = pow(10, floor(log10(v)));
    double m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/* Panel 1: kept features per layer, layers in extraction (depth) order. */
static void panel_layers(FILE *f, const h2t_result *r, double x0, double y0, double w, double h)
{
    uint32_t maxk = 1;
    for (uint32_t i = 0; i < r->n_layers; i++)
        if (r->layer_kept[i] > maxk)
            maxk = r->layer_kept[i];
    double ymax = nice_max(maxk);
    fprintf(f,
            "<text x='%.1f' y='%.1f' class='h'>Features kept per layer (input side left, "
            "output side right): %u of %llu kept</text>\n",
            x0, y0 - 12, r->n_kept, (unsigned long long)r->total_dim);
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' class='frame'/>\n", x0, y0, w,
            h);
    for (int t = 0; t <= 4; t++) {
        double yy = y0 + h - h * t / 4.0;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='grid'/>", x0, yy, x0 + w,
                yy);
        fprintf(f, "<text x='%.1f' y='%.1f' class='yt'>%g</text>\n", x0 - 6, yy + 4,
                ymax * t / 4.0);
    }
    double bw = w / (r->n_layers ? r->n_layers : 1);
    for (uint32_t i = 0; i < r->n_layers; i++) {
        double bh = h * r->layer_kept[i] / ymax;
        double frac = r->layer_dims[i] ? (double)r->layer_kept[i] / r->layer_dims[i] : 0;
        fprintf(f, "<rect x='%.2f' y='%.2f' width='%.2f' height='%.2f' class='bar'><title>",
                x0 + i * bw + bw * 0.1, y0 + h - bh, bw * 0.8 > 0.5 ? bw * 0.8 : 0.5, bh);
        put_text(f, r->layer_names && r->layer_names[i] ? r->layer_names[i] : "");
        fprintf(f, ": %u of %u kept (%.1f%%)</title></rect>\n", r->layer_kept[i], r->layer_dims[i],
                100 * frac);
    }
    /* label about a dozen layers so depth can be read off */
    uint32_t step = r->n_layers > 12 ? (r->n_layers + 11) / 12 : 1;
    for (uint32_t i = 0; i < r->n_layers; i += step) {
        double xx = x0 + (i + 0.5) * bw;
        fprintf(f, "<text transform='translate(%.1f,%.1f) rotate(35)' class='xt'>", xx,
                y0 + h + 10);
        const char *nm =
            r->layer_names && r->layer_names[i] && r->layer_names[i][0] ? r->layer_names[i] : "";
        char shortn[48];
        if (strlen(nm) > 40)
            snprintf(shortn, sizeof(shortn), "...%s", nm + strlen(nm) - 37);
        else
            snprintf(shortn, sizeof(shortn), "%s", nm[0] ? nm : "layer");
        put_text(f, shortn);
        fprintf(f, " [%u]</text>\n", i);
    }
    fprintf(f,
            "<text transform='translate(%.1f,%.1f) rotate(-90)' class='ax'>kept features"
            "</text>\n",
            x0 - 44, y0 + h / 2);
}

/* Panel 1 of a layer result: each layer's probe CV accuracy, layers in depth order; the chosen
 * layer drawn dark. */
static void panel_curve(FILE *f, const h2t_result *r, double x0, double y0, double w, double h)
{
    double lo = 1, hi = 0;
    for (uint32_t i = 0; i < r->n_curve; i++) {
        lo = fmin(lo, r->curve_acc[i]);
        hi = fmax(hi, r->curve_acc[i]);
    }
    lo = fmax(0, floor(lo * 20 - 0.5) / 20);
    hi = fmin(1, ceil(hi * 20 + 0.5) / 20);
    if (hi <= lo)
        hi = lo + 0.05;
    fprintf(f,
            "<text x='%.1f' y='%.1f' class='h'>CV accuracy of a linear probe on each layer (input "
            "side left): the best is layer %u</text>\n",
            x0, y0 - 12, r->n_layers ? r->layer_ids[0] : 0);
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' class='frame'/>\n", x0, y0, w,
            h);
    for (int t = 0; t <= 4; t++) {
        double v = lo + (hi - lo) * t / 4.0, yy = y0 + h - h * t / 4.0;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='grid'/>", x0, yy, x0 + w,
                yy);
        fprintf(f, "<text x='%.1f' y='%.1f' class='yt'>%.1f%%</text>\n", x0 - 6, yy + 4, 100 * v);
    }
    double bw = w / r->n_curve;
    for (uint32_t i = 0; i < r->n_curve; i++) {
        double bh = h * (r->curve_acc[i] - lo) / (hi - lo);
        int chosen = r->n_layers && r->curve_layers[i] == r->layer_ids[0];
        fprintf(f,
                "<rect x='%.2f' y='%.2f' width='%.2f' height='%.2f' class='bar'%s><title>layer %u: "
                "%.2f%%</title></rect>\n",
                x0 + i * bw + bw * 0.1, y0 + h - bh, bw * 0.8 > 0.5 ? bw * 0.8 : 0.5, bh,
                chosen ? " style='fill:#c44e52'" : "", r->curve_layers[i], 100 * r->curve_acc[i]);
    }
    uint32_t step = r->n_curve > 12 ? (r->n_curve + 11) / 12 : 1;
    for (uint32_t i = 0; i < r->n_curve; i += step)
        fprintf(f, "<text x='%.1f' y='%.1f' class='xc'>%u</text>\n", x0 + (i + 0.5) * bw,
                y0 + h + 16, r->curve_layers[i]);
    fprintf(f, "<text x='%.1f' y='%.1f' class='xc'>layer</text>\n", x0 + w / 2, y0 + h + 34);
}

/* Panel 2: mean CV validation accuracy against keep fraction, one line per lambda. */
static void panel_cv(FILE *f, const h2t_result *r, double x0, double y0, double w, double h)
{
    static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                   "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
    fprintf(f,
            "<text x='%.1f' y='%.1f' class='h'>Cross-validation (%u folds): mean validation "
            "accuracy</text>\n",
            x0, y0 - 12, r->folds);
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' class='frame'/>\n", x0, y0, w,
            h);
    if (!r->cv_acc || r->n_lambdas == 0) {
        fprintf(f, "<text x='%.1f' y='%.1f' class='h'>no search grid in this result</text>\n",
                x0 + 20, y0 + h / 2);
        return;
    }
    double lo = 1, hi = 0;
    for (uint32_t i = 0; i < r->n_lambdas * (r->n_keeps ? r->n_keeps : 1); i++) {
        if (r->cv_acc[i] < lo)
            lo = r->cv_acc[i];
        if (r->cv_acc[i] > hi)
            hi = r->cv_acc[i];
    }
    lo = floor(lo * 20 - 0.5) / 20; /* 5-point steps around the data */
    hi = ceil(hi * 20 + 0.5) / 20;
    if (lo < 0)
        lo = 0;
    if (hi > 1)
        hi = 1;
    if (hi <= lo)
        hi = lo + 0.05;
    for (int t = 0; t <= 4; t++) {
        double v = lo + (hi - lo) * t / 4.0, yy = y0 + h - h * t / 4.0;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='grid'/>", x0, yy, x0 + w,
                yy);
        fprintf(f, "<text x='%.1f' y='%.1f' class='yt'>%.1f%%</text>\n", x0 - 6, yy + 4, 100 * v);
    }
    uint32_t nk = r->n_keeps ? r->n_keeps : 1;
    /* x: keep fraction on a log axis when there is a keep grid, else lambda index */
    double kmin = 1, kmax = 0;
    for (uint32_t j = 0; j < r->n_keeps; j++) {
        kmin = fmin(kmin, r->keeps[j]);
        kmax = fmax(kmax, r->keeps[j]);
    }
    int have_keeps = r->n_keeps > 1 && kmax > kmin;
    for (uint32_t j = 0; j < nk && have_keeps; j++) {
        double xx = x0 + w * 0.05 + w * 0.9 * log(r->keeps[j] / kmin) / log(kmax / kmin);
        fprintf(f, "<text x='%.1f' y='%.1f' class='xc'>%g</text>\n", xx, y0 + h + 16, r->keeps[j]);
    }
    fprintf(f, "<text x='%.1f' y='%.1f' class='xc'>%s</text>\n", x0 + w / 2, y0 + h + 34,
            have_keeps ? "keep fraction (log scale)" : "lambda");
    for (uint32_t i = 0; i < r->n_lambdas; i++) {
        const char *c = colors[i % 8];
        fprintf(f, "<polyline class='ln' stroke='%s' points='", c);
        for (uint32_t j = 0; j < nk; j++) {
            double xx = have_keeps
                            ? x0 + w * 0.05 + w * 0.9 * log(r->keeps[j] / kmin) / log(kmax / kmin)
                            : x0 + w * (i + 0.5) / r->n_lambdas;
            double yy = y0 + h - h * (r->cv_acc[i * nk + j] - lo) / (hi - lo);
            fprintf(f, "%.1f,%.1f ", xx, yy);
        }
        fprintf(f, "'/>\n");
        for (uint32_t j = 0; j < nk; j++) {
            double xx = have_keeps
                            ? x0 + w * 0.05 + w * 0.9 * log(r->keeps[j] / kmin) / log(kmax / kmin)
                            : x0 + w * (i + 0.5) / r->n_lambdas;
            double yy = y0 + h - h * (r->cv_acc[i * nk + j] - lo) / (hi - lo);
            int chosen = r->lambdas[i] == r->lambda && (!r->n_keeps || r->keeps[j] == r->keep);
            fprintf(f,
                    "<circle cx='%.1f' cy='%.1f' r='%d' fill='%s'%s><title>lambda %g keep %g: "
                    "%.2f%%</title></circle>\n",
                    xx, yy, chosen ? 6 : 3, c, chosen ? " stroke='black' stroke-width='2'" : "",
                    r->lambdas[i], r->n_keeps ? r->keeps[j] : 1.0, 100 * r->cv_acc[i * nk + j]);
        }
        fprintf(f, "<text x='%.1f' y='%.1f' fill='%s' class='lg'>lambda %g</text>\n", x0 + w - 110,
                y0 + 18 + 16.0 * i, c, r->lambdas[i]);
    }
}

int h2t_report_svg_write(const h2t_result *r, const char *title, FILE *f)
{
    if (!r || r->n_layers == 0)
        return h2t_err_set(H2T_EINVAL, "the result has no layers to draw");
    fprintf(f,
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
            "viewBox='0 0 %d %d' font-family='sans-serif'>\n",
            W_SVG, H_SVG, W_SVG, H_SVG);
    fputs("<style>.h{font-size:14px;font-weight:bold}.t{font-size:18px;font-weight:bold}"
          ".s{font-size:13px}.yt{font-size:11px;text-anchor:end}.xt{font-size:9px}"
          ".xc{font-size:11px;text-anchor:middle}.ax{font-size:12px;text-anchor:middle}"
          ".lg{font-size:12px}.frame{fill:none;stroke:#444}.grid{stroke:#ddd}"
          ".bar{fill:#4c72b0}.ln{fill:none;stroke-width:2}</style>\n"
          "<rect width='100%' height='100%' fill='white'/>\n",
          f);
    fputs("<text x='20' y='28' class='t'>", f);
    put_text(f, title ? title : "h2tdb head");
    fputs("</text>\n", f);
    fprintf(f,
            "<text x='20' y='50' class='s'>method %s; test accuracy %.2f%% (%u/%u); mean "
            "validation %.2f%%; lambda %g; keep %g; %u classes; %u train samples</text>\n",
            method_name(r->method), 100 * r->test_acc, r->test_correct, r->n_test, 100 * r->val_acc,
            r->lambda, r->keep, r->n_classes, r->n_train);
    if (r->n_auto) {
        fputs("<text x='20' y='68' class='s'>auto chose it by CV among:", f);
        for (uint32_t q = 0; q < r->n_auto; q++)
            fprintf(f, " %s %.2f%%", method_name(r->auto_methods[q]), 100 * r->auto_acc[q]);
        fputs("</text>\n", f);
    }
    if (r->n_curve)
        panel_curve(f, r, 80, 95, 880, 250);
    else
        panel_layers(f, r, 80, 95, 880, 250);
    panel_cv(f, r, 80, 470, 880, 190);
    fputs("</svg>\n", f);
    return ferror(f) ? h2t_err_set(H2T_EIO, "write failed: %s", strerror(errno)) : 0;
}

int h2t_report_svg(const h2t_result *r, const char *title, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return h2t_err_set(H2T_EIO, "create %s: %s", tmp, strerror(errno));
    int rc = h2t_report_svg_write(r, title, f);
    if (fclose(f) != 0 && rc == 0)
        rc = h2t_err_set(H2T_EIO, "write %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = h2t_err_set(H2T_EIO, "rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc)
        remove(tmp);
    return rc;
}
