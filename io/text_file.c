#include "io/text_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

kelp_status kelp_read_text_file(const char *path, size_t max_bytes, char **out)
{
    size_t size;
    return kelp_read_file(path, max_bytes, out, &size);
}

kelp_status kelp_read_file(const char *path, size_t max_bytes, char **out, size_t *size)
{
    *out = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    kelp_status s = KELP_OK;
    char *text = NULL;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        s = kelp_set_error(KELP_ERR_IO, "%s: not a regular file", path);
    else if ((unsigned long long)st.st_size > max_bytes)
        s = kelp_set_error(KELP_ERR_FORMAT, "%s: %lld bytes, more than the %zu a file of this kind may have", path,
                           (long long)st.st_size, max_bytes);
    else if (!(text = malloc((size_t)st.st_size + 1)))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    else if (fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        s = kelp_set_error(KELP_ERR_IO, "%s: read failed", path);
    fclose(f);
    if (s != KELP_OK) {
        free(text);
        return s;
    }
    text[st.st_size] = '\0';
    *out = text;
    *size = (size_t)st.st_size;
    return KELP_OK;
}
