#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "kelp/status.h"

struct kelp_atomic_file {
    FILE *stream;
    char *path;
    char *temp_path;
};

/* A random suffix makes concurrent writers (threads or processes) of the same target pick distinct temp names
 * without any shared counter; O_EXCL catches the improbable collision and we draw again. */
enum { TEMP_NAME_ATTEMPTS = 16 };

static kelp_status io_error(const char *path, const char *what, int err)
{
    return kelp_set_error(KELP_ERR_IO, "%s: %s: %s", path, what, strerror(err));
}

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

static kelp_status create_temp(kelp_atomic_file *file)
{
    size_t len = strlen(file->path) + sizeof(".tmp-0123456789abcdef");
    file->temp_path = malloc(len);
    if (!file->temp_path)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory naming the temp file", file->path);
    for (int attempt = 0; attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        uint64_t r;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            return io_error(file->path, "cannot draw a random temp name", errno);
        snprintf(file->temp_path, len, "%s.tmp-%016" PRIx64, file->path, r);
        int fd = open(file->temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return io_error(file->path, "cannot create a temp file in its directory", errno);
        file->stream = fdopen(fd, "wb");
        if (!file->stream) {
            int err = errno;
            close(fd);
            unlink(file->temp_path);
            return io_error(file->path, "cannot open a stream on the temp file", err);
        }
        return KELP_OK;
    }
    return io_error(file->path, "cannot find a free temp name", EEXIST);
}

static void free_file(kelp_atomic_file *file)
{
    free(file->temp_path);
    free(file->path);
    free(file);
}

kelp_status kelp_atomic_open(const char *path, kelp_atomic_file **out)
{
    if (!out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_atomic_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_atomic_open: empty path");
    kelp_atomic_file *file = calloc(1, sizeof *file);
    if (!file || !(file->path = dup_string(path))) {
        free(file);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory opening for an atomic write", path);
    }
    kelp_status s = create_temp(file);
    if (s != KELP_OK) {
        free_file(file);
        return s;
    }
    *out = file;
    return KELP_OK;
}

FILE *kelp_atomic_stream(kelp_atomic_file *file)
{
    return file->stream;
}

const char *kelp_atomic_temp_path(const kelp_atomic_file *file)
{
    return file->temp_path;
}

void kelp_atomic_abort(kelp_atomic_file *file)
{
    if (!file)
        return;
    fclose(file->stream);
    unlink(file->temp_path);
    free_file(file);
}

/* Closes the stream only after the data reached the disk, so that the rename can never publish a file whose
 * blocks are still only in the page cache. */
static kelp_status flush_and_close(kelp_atomic_file *file)
{
    FILE *stream = file->stream;
    file->stream = NULL;
    int err = 0;
    errno = 0;
    if (fflush(stream) != 0 || ferror(stream))
        err = errno ? errno : EIO;
    else if (fsync(fileno(stream)) != 0)
        err = errno;
    if (fclose(stream) != 0 && !err)
        err = errno;
    if (err)
        return io_error(file->path, "cannot write the temp file", err);
    return KELP_OK;
}

/* The directory entry made by rename is only durable once the directory itself is fsync'd. */
static kelp_status sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = dup_string(".");
    else if (slash == path)
        dir = dup_string("/");
    else if ((dir = malloc((size_t)(slash - path) + 1))) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    if (!dir)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory naming its directory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && fsync(fd) != 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    free(dir);
    if (err)
        return io_error(path, "cannot fsync its directory after the rename", err);
    return KELP_OK;
}

kelp_status kelp_atomic_commit(kelp_atomic_file *file)
{
    if (!file)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_atomic_commit: file is NULL");
    kelp_status s = flush_and_close(file);
    if (s == KELP_OK && rename(file->temp_path, file->path) != 0)
        s = io_error(file->path, "cannot rename the temp file over it", errno);
    if (s != KELP_OK) {
        unlink(file->temp_path);
        free_file(file);
        return s;
    }
    s = sync_parent_dir(file->path);
    free_file(file);
    return s;
}

kelp_status kelp_atomic_write(const char *path, const void *data, size_t size)
{
    kelp_atomic_file *file;
    KELP_TRY(kelp_atomic_open(path, &file));
    if (size > 0 && !data) {
        kelp_atomic_abort(file);
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: atomic write of %zu bytes from NULL", path, size);
    }
    errno = 0;
    if (size > 0 && fwrite(data, 1, size, file->stream) != size) {
        int err = errno ? errno : EIO;
        kelp_atomic_abort(file);
        return io_error(path, "cannot write the temp file", err);
    }
    return kelp_atomic_commit(file);
}
