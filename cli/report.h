/*
 * cli/report.h - a picture of a trained head: which depths Head2Toe kept features from, and
 * how validation accuracy moved with the keep fraction during the search. Plain SVG, no
 * dependencies; any browser shows it.
 *
 *     const void *blob = NULL; // a finished job's result, as stored
 *     size_t len = 0;
 *     h2t_result *r;
 *     if (h2t_result_decode(blob, len, &r) == 0) {
 *         h2t_report_svg(r, "job 3: head2toe on fmnist-10", "job3.svg");
 *         h2t_result_destroy(r);
 *     }
 */
#ifndef H2T_CLI_REPORT_H
#define H2T_CLI_REPORT_H

#include <stdio.h>

#include "solver/solver.h"

/* Write the SVG of r to path (written to path.tmp, then renamed: never half a file).
 * title is BORROWED. Errors: H2T_EIO naming the file, H2T_EINVAL (r has no layers). */
int h2t_report_svg(const h2t_result *r, const char *title, const char *path);

/* The same SVG to an open stream. */
int h2t_report_svg_write(const h2t_result *r, const char *title, FILE *f);

#endif
