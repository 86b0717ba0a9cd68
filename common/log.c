#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_int level = -1;

static int level_from_env(void)
{
    const char *e = getenv("H2T_LOG");
    if (!e)
        return H2T_LOG_LINFO;
    if (!strcmp(e, "debug"))
        return H2T_LOG_LDEBUG;
    if (!strcmp(e, "warn"))
        return H2T_LOG_LWARN;
    if (!strcmp(e, "error"))
        return H2T_LOG_LERROR;
    if (!strcmp(e, "off"))
        return H2T_LOG_LOFF;
    return H2T_LOG_LINFO;
}

void h2t_log_set_level(int l)
{
    atomic_store(&level, l);
}

int h2t_log_level(void)
{
    int l = atomic_load(&level);
    if (l < 0) {
        l = level_from_env();
        atomic_store(&level, l);
    }
    return l;
}

void h2t_log_write(int l, const char *module, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(
        line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
        names[l < 0   ? 0
              : l > 3 ? 3
                      : l],
        module);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && n < (int)sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line); /* one write per line keeps lines whole across threads */
}
