/*
 * common/err.h - h2tdb error codes, their text, and a per-call detail message.
 *
 * Every fallible h2tdb function returns int: 0 on success, a negative H2T_E* code on
 * failure. The code says what kind of failure; the detail string (thread-local, set with
 * h2t_err_set at the point of failure) says *what* was wrong: which file, node, key, field.
 *
 *     #include "storage/store.h"
 *     h2t_store *st;
 *     int rc = h2t_store_open("feats", 0, &st);
 *     if (rc < 0) {
 *         fprintf(stderr, "h2tdb: %s: %s\n", h2t_strerror(rc), h2t_err_detail());
 *         return;
 *     }
 *     h2t_store_close(st);
 *
 * Library codes (MDB_*, UV_*, protobuf-c failures) are translated to these at the edge of
 * the module that calls the library.
 */
#ifndef H2T_COMMON_ERR_H
#define H2T_COMMON_ERR_H

enum {
    H2T_OK = 0,
    H2T_ENOMEM = -1,       /* out of memory */
    H2T_EINVAL = -2,       /* invalid argument */
    H2T_EIO = -3,          /* input/output error (errno in the detail) */
    H2T_ENOTFOUND = -4,    /* no such item */
    H2T_EEXIST = -5,       /* already exists */
    H2T_ECORRUPT = -6,     /* corrupt or truncated data */
    H2T_EVERSION = -7,     /* unsupported format version */
    H2T_EUNSUPPORTED = -8, /* unsupported feature (operator, dtype, ...) */
    H2T_ESTORE = -9,       /* storage engine failure */
    H2T_EPROTO = -10,      /* protocol error */
    H2T_ECANCELED = -11,   /* operation cancelled */
    H2T_ETOOBIG = -12,     /* too large */
    H2T_EPERM = -13,       /* permission denied */
    H2T_ESHAPE = -14,      /* shape mismatch */
    H2T_ENUMERIC = -15,    /* NaN or infinity where a finite number is required */
    H2T_ESTATE = -16,      /* object in the wrong state for this operation */
    H2T_ENET = -17,        /* network error */
    H2T_EAUTH = -18,       /* authentication failed */
    H2T_EBUSY = -19,       /* resource busy / limit reached */
    H2T_ETIMEDOUT = -20,   /* timed out */
    H2T_ENOSPC = -21,      /* no space left on device (the detail names the store or file) */
    H2T_ELAST = -22
};

/* Static text for a code ("unknown error" for anything not listed). Thread-safe. */
const char *h2t_strerror(int rc);

/* Record a detail message for the calling thread and return rc, so that a failure site
 * reads: return h2t_err_set(H2T_EIO, "open %s: %s", path, strerror(errno)); */
int h2t_err_set(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current detail with context ("loading model.onnx: " + old detail); returns rc. */
int h2t_err_wrap(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The calling thread's last detail message ("" when none). BORROWED: valid until the next
 * h2t_err_* call on this thread. */
const char *h2t_err_detail(void);

void h2t_err_clear(void);

/* "strerror(rc): detail" (or just strerror when no detail) into buf; returns buf. */
const char *h2t_err_format(int rc, char *buf, unsigned long len);

#endif
