# ONNX export (engine/onnx_export.c): protobuf-c's C code for ONNX's own schema. The schema is Debian's copy of
# onnx.proto (libonnx-dev) and the generator is protoc-c (protobuf-c-compiler); the generated .pb-c.c/.pb-c.h go to
# the build folder, never into the source tree, and compile into kelp_core, which links libprotobuf-c.
# Included from CMakeLists.txt after kelp_core is defined.
find_program(KELP_PROTOC_C protoc-c REQUIRED)
find_path(KELP_ONNX_PROTO_DIR NAMES onnx.proto PATH_SUFFIXES onnx REQUIRED)
pkg_check_modules(PROTOBUF_C REQUIRED IMPORTED_TARGET libprotobuf-c)

set(KELP_ONNX_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/onnx_proto)
set(KELP_ONNX_GEN_C ${KELP_ONNX_GEN_DIR}/onnx.pb-c.c)
add_custom_command(
  OUTPUT ${KELP_ONNX_GEN_C} ${KELP_ONNX_GEN_DIR}/onnx.pb-c.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${KELP_ONNX_GEN_DIR}
  COMMAND ${KELP_PROTOC_C} --proto_path=${KELP_ONNX_PROTO_DIR} --c_out=${KELP_ONNX_GEN_DIR} onnx.proto
  DEPENDS ${KELP_ONNX_PROTO_DIR}/onnx.proto
  COMMENT "protoc-c: ONNX schema -> C"
  VERBATIM)
target_sources(kelp_core PRIVATE ${KELP_ONNX_GEN_C})
# "onnx.pb-c.h" for the exporter and for the unit test that parses its files back (tests/unit/test_onnx_export.c).
target_include_directories(kelp_core PUBLIC $<BUILD_INTERFACE:${KELP_ONNX_GEN_DIR}>)
target_link_libraries(kelp_core PUBLIC PkgConfig::PROTOBUF_C)
# Generated code is not ours to fix: another protoc-c version may emit warnings that -Werror would turn into a
# failed build, so they stay visible but not fatal, for this file only.
set_source_files_properties(${KELP_ONNX_GEN_C} PROPERTIES COMPILE_OPTIONS -Wno-error)
