#include "tools/cli.h"

#include "io/text_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(kelp_status status, const char *what)
{
    fprintf(stderr, "kelp: %s%s%s (%s)\n", what ? what : "", what ? ": " : "", kelp_last_error(),
            kelp_status_name(status));
    return CLI_EXIT_FAILURE;
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || s[0] == '+')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kelp %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'kelp %s --help' for usage.\n", command);
    return CLI_EXIT_USAGE;
}

static bool is_zoo_name(const char *name)
{
    for (const char *const *z = kelp_model_zoo_names(); *z; z++)
        if (strcmp(*z, name) == 0)
            return true;
    return false;
}

kelp_status cli_load_model_json(const char *name_or_path, const kelp_zoo_options *zoo, char **json)
{
    if (is_zoo_name(name_or_path))
        return kelp_model_zoo_json(name_or_path, zoo, json);
    kelp_status s = kelp_read_text_file(name_or_path, KELP_MODEL_FILE_MAX_BYTES, json);
    if (s != KELP_OK && !strchr(name_or_path, '/') && !strchr(name_or_path, '.'))
        return kelp_set_error(KELP_ERR_NOT_FOUND, "'%s' is neither a zoo model (see 'kelp model list') nor a model "
                                                  "file",
                              name_or_path);
    return s;
}

int cli_parse_input_size(const char *s, kelp_zoo_options *zoo)
{
    int dims[3] = {0, 0, 0}, n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 1 << 16 || n == 3)
            return -1;
        dims[n++] = (int)v;
        if (*end == '\0')
            break;
        if (*end != 'x')
            return -1;
        p = end + 1;
    }
    if (n < 2)
        return -1;
    zoo->height = dims[0];
    zoo->width = dims[1];
    zoo->channels = dims[2];
    return 0;
}
