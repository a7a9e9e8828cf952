/* File paths built in fixed buffers, refused rather than cut when too long. */
#ifndef KELP_IO_PATH_H
#define KELP_IO_PATH_H

#include <stddef.h>

#include "kelp/status.h"

/* dir/name into out[size]; KELP_ERR_INVALID_ARG naming both when it does not fit. */
kelp_status kelp_path_join(char *out, size_t size, const char *dir, const char *name);

/* Removes a directory and everything below it, links not followed; best effort (for temporary directories). */
void kelp_remove_tree(const char *dir);

#endif
