/* Thread-local error message behind kelp_status. This is the one module every floor (kernels, io, engine) may use;
 * it holds no state shared between threads. */
#include "kelp/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define KELP_ERROR_CAP 1024

static _Thread_local char error_message[KELP_ERROR_CAP];

const char *kelp_status_name(kelp_status status)
{
    switch (status) {
    case KELP_OK: return "ok";
    case KELP_ERR_INVALID_ARG: return "invalid argument";
    case KELP_ERR_NO_MEMORY: return "out of memory";
    case KELP_ERR_IO: return "i/o error";
    case KELP_ERR_FORMAT: return "format error";
    case KELP_ERR_SHAPE: return "shape error";
    case KELP_ERR_UNSUPPORTED: return "unsupported";
    case KELP_ERR_BACKEND: return "backend error";
    case KELP_ERR_NUMERIC: return "numeric error";
    case KELP_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

const char *kelp_last_error(void) { return error_message; }

void kelp_clear_error(void) { error_message[0] = '\0'; }

kelp_status kelp_set_error(kelp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return status;
}

kelp_status kelp_wrap_error(kelp_status status, const char *fmt, ...)
{
    char prefix[KELP_ERROR_CAP];
    char old[KELP_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    /* Truncation keeps the start of the message, which names what failed. */
    size_t n = strlen(prefix);
    memcpy(error_message, prefix, n + 1);
    if (n + 1 < sizeof error_message) {
        size_t room = sizeof error_message - n - 1;
        strncpy(error_message + n, old, room);
        error_message[sizeof error_message - 1] = '\0';
    }
    return status;
}
