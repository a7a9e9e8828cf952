#include "io/path.h"

#include <stdio.h>

kelp_status kelp_path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s/%s: path too long", dir, name);
    return KELP_OK;
}
