/* kelp: status codes and the thread-local error message.
 *
 * Every library call returns a kelp_status. On failure, kelp_last_error() holds a message that names what failed
 * (file, dataset, node, rule). The library never prints and never exits; the caller decides. */
#ifndef KELP_STATUS_H
#define KELP_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kelp_status {
    KELP_OK = 0,
    KELP_ERR_INVALID_ARG, /* a caller passed something impossible */
    KELP_ERR_NO_MEMORY,   /* an allocation failed or a size overflowed a cap */
    KELP_ERR_IO,          /* open/read/write/rename failed */
    KELP_ERR_FORMAT,      /* a file or JSON document breaks its format's rules */
    KELP_ERR_SHAPE,       /* shapes do not fit together */
    KELP_ERR_UNSUPPORTED, /* valid, but this build or backend cannot do it */
    KELP_ERR_BACKEND,     /* a device library (CUDA, cuDNN, BLAS...) failed */
    KELP_ERR_NUMERIC,     /* NaN/inf where a finite value is required */
    KELP_ERR_NOT_FOUND,   /* a named thing (tensor, node, model) does not exist */
} kelp_status;

/* Short stable name of a status ("format", "shape"...). */
const char *kelp_status_name(kelp_status status);

/* The message of the last failure on this thread; "" when none. Valid until the next kelp call on this thread. */
const char *kelp_last_error(void);

/* Sets this thread's message (printf-style) and returns `status`, so `return kelp_set_error(...)` reads well. */
kelp_status kelp_set_error(kelp_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prepends context to this thread's message ("node 'conv1': " + old message) and returns `status`. */
kelp_status kelp_wrap_error(kelp_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void kelp_clear_error(void);

/* Propagates a failure unchanged: KELP_TRY(kelp_foo(...)); */
#define KELP_TRY(expr)                      \
    do {                                    \
        kelp_status kelp_try_s_ = (expr);   \
        if (kelp_try_s_ != KELP_OK)         \
            return kelp_try_s_;             \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
