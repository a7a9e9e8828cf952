#include "io/path.h"

#include <ftw.h>
#include <stdio.h>

kelp_status kelp_path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s/%s: path too long", dir, name);
    return KELP_OK;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0; /* carry on: remove what can be removed */
}

void kelp_remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }
