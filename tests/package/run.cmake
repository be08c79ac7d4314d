# Steps of the package.* tests (tests/CMakeLists.txt), run with cmake -P:
#   -DSTEP=install       install the build tree into PREFIX (emptied first) and
#                        check the installed headers include no dependency
#   -DSTEP=find_package  configure and build this folder's downstream project
#                        against PREFIX, run its two programs
#   -DSTEP=pkg_config    compile main.c with `pkg-config --cflags --libs mpsb`,
#                        compile a bundle with the installed mpsbc, run it
#   -DSTEP=manifest_deps the tensor files mpsb_add_bundle reads from manifests
# Other variables: BUILD_DIR PREFIX WORK MANIFEST GENERATOR C_COMPILER
# CXX_COMPILER BUILD_TYPE PKG_CONFIG LIBDIR SOURCE_DIR SANITIZE.
cmake_minimum_required(VERSION 3.20)

# A build with MPSB_SANITIZE installs an instrumented libmpsb: its users must
# link the same sanitizer runtimes.
set(san_flags "")
if(SANITIZE)
  set(san_flags "-fsanitize=${SANITIZE}")
endif()

function(run)
  string(REPLACE ";" " " _shown "${ARGN}")
  message(STATUS "$ ${_shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${_shown}")
  endif()
endfunction()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")
  foreach(f ${LIBDIR}/cmake/mpsb/mpsbConfig.cmake ${LIBDIR}/cmake/mpsb/mpsbConfigVersion.cmake
            ${LIBDIR}/cmake/mpsb/MpsbAddBundle.cmake ${LIBDIR}/pkgconfig/mpsb.pc
            include/mpsb/mpsb.h include/mpsb/bundle.h include/mpsb/module.modulemap
            share/mpsb/apple/MPSBBundle.h share/mpsb/apple/MPSBBundle.mm
            share/mpsb/apple/MPSBBuffers.h share/mpsb/apple/MPSBBuffers.mm bin/mpsbc bin/mpsb-dump)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "not installed: ${PREFIX}/${f}")
    endif()
  endforeach()
  # The package declares no dependency, so the public headers must not need one.
  file(GLOB headers "${PREFIX}/include/mpsb/*")
  foreach(h IN LISTS headers)
    if(IS_DIRECTORY "${h}")
      message(FATAL_ERROR "internal headers installed: ${h}")
    endif()
    file(STRINGS "${h}" bad REGEX "#[ \t]*include[ \t]*[<\"](flatbuffers/|xxhash|mpsb/fb/)")
    if(bad)
      message(FATAL_ERROR "${h} includes a dependency's header: ${bad}")
    endif()
  endforeach()

elseif(STEP STREQUAL "find_package")
  file(REMOVE_RECURSE "${WORK}")
  run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK}" -G "${GENERATOR}"
      "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DMPSB_TEST_MANIFEST=${MANIFEST}"
      "-DCMAKE_C_COMPILER=${C_COMPILER}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
      "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
      "-DCMAKE_C_FLAGS=${san_flags}" "-DCMAKE_CXX_FLAGS=${san_flags}"
      "-DCMAKE_EXE_LINKER_FLAGS=${san_flags}")
  run("${CMAKE_COMMAND}" --build "${WORK}")
  run("${WORK}/downstream")  # opens MODEL_PATH, i.e. ${WORK}/tiny.mpsb
  run("${WORK}/downstream_c" "${WORK}/tiny.mpsb")
  # Nothing left to do: the bundle is up to date.
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK}" --target model_bundle -- -n
                  OUTPUT_VARIABLE dry RESULT_VARIABLE rc)
  if(dry MATCHES "mpsbc")
    message(FATAL_ERROR "model_bundle rebuilds when nothing changed:\n${dry}")
  endif()

elseif(STEP STREQUAL "pkg_config")
  file(REMOVE_RECURSE "${WORK}")
  file(MAKE_DIRECTORY "${WORK}")
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")
  execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs mpsb
                  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs mpsb failed (PKG_CONFIG_PATH=$ENV{PKG_CONFIG_PATH})")
  endif()
  message(STATUS "pkg-config --cflags --libs mpsb: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run("${C_COMPILER}" -std=c11 -Wall -Wextra -Werror ${san_flags} "${SOURCE_DIR}/main.c" ${flags}
      -o "${WORK}/downstream_c")
  run("${PREFIX}/bin/mpsbc" compile "${MANIFEST}" -o "${WORK}/tiny.mpsb")
  run("${PREFIX}/bin/mpsb-dump" "${WORK}/tiny.mpsb" --verify)
  # With BUILD_SHARED_LIBS=ON the program needs libmpsb.so from the prefix.
  set(ENV{LD_LIBRARY_PATH} "${PREFIX}/${LIBDIR}")
  run("${WORK}/downstream_c" "${WORK}/tiny.mpsb")

elseif(STEP STREQUAL "manifest_deps")
  include("${SOURCE_DIR}/../../cmake/MpsbAddBundle.cmake")
  function(expect manifest)
    set(files ${ARGN})
    set(probes "")
    if(files AND "WITH_PROBES" STREQUAL "${ARGV1}")
      list(POP_FRONT files)
      set(probes WITH_PROBES)
    endif()
    _mpsb_manifest_tensor_files("${manifest}" got ${probes})
    get_filename_component(folder "${manifest}" DIRECTORY)
    set(want "")
    foreach(f IN LISTS files)
      get_filename_component(f "${f}" ABSOLUTE BASE_DIR "${folder}")
      list(APPEND want "${f}")
    endforeach()
    list(SORT got)  # string(JSON MEMBER) lists keys sorted, not in file order
    list(SORT want)
    if(NOT got STREQUAL want)
      message(FATAL_ERROR "${manifest}:\n  got  ${got}\n  want ${want}")
    endif()
  endfunction()
  expect("${MANIFEST}"
         stem.weight.bin stem.bias.bin dw.weight.bin dw.bias.bin pw.weight.bin
         grouped.weight.bin grouped.bias.bin dilated.weight.bin dilated.bias.bin
         head.weight.bin head.bias.bin)
  # Object tensors, every norm role, nested folders, absolute paths, shared files.
  file(MAKE_DIRECTORY "${WORK}")
  file(WRITE "${WORK}/manifest.json" [=[
{"format": "mpsb.manifest/1", "layers": [
  {"name": "c", "type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 1,
   "weight": {"path": "w/c.weight.bin", "dtype": "float16"}, "bias": "c.bias.bin",
   "activation": "relu"},
  {"name": "bn", "type": "batch_norm2d", "num_features": 4,
   "weight": "bn.w.bin", "bias": {"path": "bn.b.bin"},
   "running_mean": "bn.m.bin", "running_var": "/abs/bn.v.bin"},
  {"name": "in", "type": "instance_norm2d", "num_features": 4, "affine": false,
   "probe": {"input": "probes/in.input.bin", "input_shape": [1, 4, 2, 2],
             "output": "probes/in.output.bin", "output_shape": [1, 4, 2, 2]}},
  {"name": "again", "type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 1,
   "weight": "c.bias.bin"}
]}
]=])
  expect("${WORK}/manifest.json"
         w/c.weight.bin c.bias.bin bn.w.bin bn.b.bin bn.m.bin /abs/bn.v.bin)
  expect("${WORK}/manifest.json" WITH_PROBES
         w/c.weight.bin c.bias.bin bn.w.bin bn.b.bin bn.m.bin /abs/bn.v.bin
         probes/in.input.bin probes/in.output.bin)
  message(STATUS "manifest dependencies OK")

else()
  message(FATAL_ERROR "unknown STEP '${STEP}'")
endif()
