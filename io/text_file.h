/* Reading a small file whole (model files, run configs), with a size cap so that a wrong path (a dataset, a video)
 * is refused instead of read into memory. */
#ifndef KELP_IO_TEXT_FILE_H
#define KELP_IO_TEXT_FILE_H

#include <stddef.h>

#include "kelp/status.h"

/* *out receives the bytes plus a terminating NUL (free with free()). Errors name the path. */
kelp_status kelp_read_text_file(const char *path, size_t max_bytes, char **out);
/* The same for any bytes: *size receives their count (the NUL after them is not counted). */
kelp_status kelp_read_file(const char *path, size_t max_bytes, char **out, size_t *size);

#endif
