#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char detail[1024];

static const char *const texts[] = {
    [0] = "success",
    [1] = "out of memory",
    [2] = "invalid argument",
    [3] = "input/output error",
    [4] = "not found",
    [5] = "already exists",
    [6] = "corrupt or truncated data",
    [7] = "unsupported format version",
    [8] = "unsupported",
    [9] = "storage error",
    [10] = "protocol error",
    [11] = "cancelled",
    [12] = "too large",
    [13] = "permission denied",
    [14] = "shape mismatch",
    [15] = "non-finite number",
    [16] = "wrong state",
    [17] = "network error",
    [18] = "authentication failed",
    [19] = "busy",
    [20] = "timed out",
    [21] = "no space left on device",
};

const char *h2t_strerror(int rc)
{
    if (rc > 0 || rc <= H2T_ELAST)
        return "unknown error";
    return texts[-rc];
}

int h2t_err_set(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return rc;
}

int h2t_err_wrap(int rc, const char *fmt, ...)
{
    char prefix[512], old[sizeof(detail)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, detail, sizeof(old));
    if (old[0])
        snprintf(detail, sizeof(detail), "%s: %s", prefix, old);
    else
        snprintf(detail, sizeof(detail), "%s", prefix);
    return rc;
}

const char *h2t_err_detail(void)
{
    return detail;
}

void h2t_err_clear(void)
{
    detail[0] = '\0';
}

const char *h2t_err_format(int rc, char *buf, unsigned long len)
{
    if (detail[0])
        snprintf(buf, len, "%s: %s", h2t_strerror(rc), detail);
    else
        snprintf(buf, len, "%s", h2t_strerror(rc));
    return buf;
}
