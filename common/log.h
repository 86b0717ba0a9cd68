/*
 * common/log.h - one-line logging to stderr: "time LEVEL module: message".
 *
 *     const char *addr = "127.0.0.1:7433";
 *     H2T_LOG_INFO("server", "listening on %s", addr);
 *
 * The level is checked before any formatting. storage/ and solver/ never log: they return
 * codes; the callers (server, client, extract driver) decide what to print.
 */
#ifndef H2T_COMMON_LOG_H
#define H2T_COMMON_LOG_H

enum {
    H2T_LOG_LDEBUG = 0,
    H2T_LOG_LINFO = 1,
    H2T_LOG_LWARN = 2,
    H2T_LOG_LERROR = 3,
    H2T_LOG_LOFF = 4
};

/* Process-wide threshold; default INFO, or H2T_LOG=debug|info|warn|error|off at startup. */
void h2t_log_set_level(int level);
int h2t_log_level(void);
void h2t_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define H2T_LOG(level, module, ...)                                                                \
    do {                                                                                           \
        if ((level) >= h2t_log_level())                                                            \
            h2t_log_write((level), (module), __VA_ARGS__);                                         \
    } while (0)
#define H2T_LOG_DEBUG(m, ...) H2T_LOG(H2T_LOG_LDEBUG, m, __VA_ARGS__)
#define H2T_LOG_INFO(m, ...) H2T_LOG(H2T_LOG_LINFO, m, __VA_ARGS__)
#define H2T_LOG_WARN(m, ...) H2T_LOG(H2T_LOG_LWARN, m, __VA_ARGS__)
#define H2T_LOG_ERROR(m, ...) H2T_LOG(H2T_LOG_LERROR, m, __VA_ARGS__)

#endif
