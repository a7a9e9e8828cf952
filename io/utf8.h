/* UTF-8 validation with Rust's str::from_utf8 rules (the safetensors reference's): no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
#ifndef KELP_IO_UTF8_H
#define KELP_IO_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 prefix of s[0..n): n when all of it is valid. */
size_t kelp_utf8_valid_prefix(const unsigned char *s, size_t n);

static inline bool kelp_utf8_valid(const char *s, size_t n)
{
    return kelp_utf8_valid_prefix((const unsigned char *)s, n) == n;
}

#endif
