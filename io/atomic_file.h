/* kelp io: files replaced atomically.
 *
 * A kill or power loss at any instant leaves either the complete old file or the complete new one, never a mix:
 * the bytes go to a temp file in the target's directory, which is flushed, fsync'd and renamed over the target,
 * and the directory is fsync'd so that the rename itself is durable.
 *
 *     kelp_atomic_file *f;
 *     KELP_TRY(kelp_atomic_open("out/weights.safetensors", &f));
 *     if (fwrite(buf, 1, n, kelp_atomic_stream(f)) != n) {
 *         kelp_atomic_abort(f);              // the old file stays as it was, the temp file is removed
 *         return kelp_set_error(KELP_ERR_IO, ...);
 *     }
 *     KELP_TRY(kelp_atomic_commit(f));       // the new file is in place and durable
 *
 * Errors name the target path and the errno text. */
#ifndef KELP_IO_ATOMIC_FILE_H
#define KELP_IO_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kelp_atomic_file kelp_atomic_file;

/* Creates a fresh temp file beside `path` (mode 0666 less the umask, like fopen). The target is untouched until
 * kelp_atomic_commit. On failure *out is NULL and nothing is left behind. */
kelp_status kelp_atomic_open(const char *path, kelp_atomic_file **out);

/* The stream to write the new content into; owned by `file` (do not fclose it). */
FILE *kelp_atomic_stream(kelp_atomic_file *file);

/* The path of the temp file (for messages and tests). */
const char *kelp_atomic_temp_path(const kelp_atomic_file *file);

/* Flushes, fsyncs, renames the temp file over the target and fsyncs the directory. Frees `file` whatever the
 * outcome; on failure before the rename the temp file is removed and the old target is intact. */
kelp_status kelp_atomic_commit(kelp_atomic_file *file);

/* Discards the new content: closes and removes the temp file and frees `file`. NULL is a no-op. */
void kelp_atomic_abort(kelp_atomic_file *file);

/* Replaces `path` with the `size` bytes at `data` in one call. */
kelp_status kelp_atomic_write(const char *path, const void *data, size_t size);

#ifdef __cplusplus
}
#endif
#endif
