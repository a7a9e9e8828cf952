# Writes OUTPUT, a C file defining `const kelp_embedded_file kelp_bundle_files[]`: each file under ROOT (FILES, a
# ;-list of paths relative to ROOT) as {path, bytes, size}, ending with {NULL, NULL, 0}. Run with cmake -P, so that
# `kelp export` carries its template files inside the binary and needs nothing installed next to it.
set(out "/* Generated from ${ROOT} by cmake/embed_files.cmake; do not edit. */\n#include \"tools/embedded.h\"\n\n")
set(table "")
set(i 0)
foreach(rel ${FILES})
  file(READ "${ROOT}/${rel}" hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR size "${hex_len} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x..,){24})" "\\1\n" bytes "${bytes}")
  string(APPEND out "static const unsigned char file_${i}[] = {\n${bytes}0};\n")
  string(APPEND table "    {\"${rel}\", file_${i}, ${size}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND out "\nconst kelp_embedded_file kelp_bundle_files[] = {\n${table}    {0, 0, 0},\n};\n")
file(WRITE "${OUTPUT}.tmp" "${out}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
