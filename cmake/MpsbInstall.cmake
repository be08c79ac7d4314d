# Install rules and the CMake/pkg-config package (included at the end of the
# top-level CMakeLists.txt, after every target exists).
#
#   <prefix>/bin/mpsbc, mpsb-dump                      (MPSB_BUILD_TOOLS)
#   <prefix>/lib/libmpsb.a (or .so with BUILD_SHARED_LIBS=ON)
#   <prefix>/include/mpsb/*.h, module.modulemap        public API only
#   <prefix>/share/mpsb/apple/MPSBBundle.h, .mm, MPSBBuffers.h, .mm  for Xcode projects
#   <prefix>/share/mpsb/bundle.fbs                     for flatc --json
#   <prefix>/lib/cmake/mpsb/mpsbConfig.cmake ...       find_package(mpsb)
#   <prefix>/lib/pkgconfig/mpsb.pc                     pkg-config mpsb
#
# Exported targets: mpsb::runtime, and with the tools mpsb::mpsbc and
# mpsb::mpsb-dump (imported executables). The runtime's public headers need
# only the C++20 standard library, and its private dependencies (the
# generated FlatBuffers header, xxHash) are header-only and compiled in, so
# the package depends on nothing.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MPSB_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mpsb
    CACHE STRING "Where mpsbConfig.cmake goes, relative to the prefix")
mark_as_advanced(MPSB_INSTALL_CMAKEDIR)

# --- runtime library and headers ---------------------------------------------
set_target_properties(mpsb_runtime PROPERTIES EXPORT_NAME runtime)
install(TARGETS mpsb_runtime EXPORT mpsbTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
                NAMELINK_COMPONENT runtime
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/mpsb
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT runtime
        FILES_MATCHING PATTERN "*.h" PATTERN "module.modulemap")
# The Objective-C MPS adapters are compiled by the app (Xcode) itself: they
# need Apple's Metal/MPS frameworks, which this build does not have.
install(FILES ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBBundle.h
              ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBBundle.mm
              ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBBuffers.h
              ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBBuffers.mm
              ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBKernels.h
              ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBKernels.mm
              ${PROJECT_SOURCE_DIR}/runtime/apple/MPSBInternal.h
        DESTINATION ${CMAKE_INSTALL_DATADIR}/mpsb/apple COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/schema/bundle.fbs
        DESTINATION ${CMAKE_INSTALL_DATADIR}/mpsb COMPONENT runtime)

# --- tools ---------------------------------------------------------------------
if(MPSB_BUILD_TOOLS)
  if(NOT TARGET mpsb::mpsbc)
    add_executable(mpsb::mpsbc ALIAS mpsbc)  # same name in-tree and installed
  endif()
  set_target_properties(mpsbc PROPERTIES EXPORT_NAME mpsbc)
  set_target_properties(mpsb-dump PROPERTIES EXPORT_NAME mpsb-dump)
  if(BUILD_SHARED_LIBS)
    # Installed tools find the installed libmpsb.so next to them.
    file(RELATIVE_PATH _mpsb_bin_to_lib /p/${CMAKE_INSTALL_BINDIR} /p/${CMAKE_INSTALL_LIBDIR})
    if(APPLE)
      set(_mpsb_rpath "@loader_path/${_mpsb_bin_to_lib}")
    else()
      set(_mpsb_rpath "$ORIGIN/${_mpsb_bin_to_lib}")
    endif()
    set_target_properties(mpsbc mpsb-dump PROPERTIES INSTALL_RPATH "${_mpsb_rpath}")
  endif()
  install(TARGETS mpsbc mpsb-dump EXPORT mpsbTargets
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()

# --- CMake package ---------------------------------------------------------------
install(EXPORT mpsbTargets NAMESPACE mpsb:: FILE mpsbTargets.cmake
        DESTINATION ${MPSB_INSTALL_CMAKEDIR} COMPONENT runtime)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mpsbConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/package/mpsbConfig.cmake
                              INSTALL_DESTINATION ${MPSB_INSTALL_CMAKEDIR}
                              NO_SET_AND_CHECK_MACRO)
# 0.x: a minor release may break the API, so 0.1 accepts 0.1.* only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/package/mpsbConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/package/mpsbConfig.cmake
              ${PROJECT_BINARY_DIR}/package/mpsbConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/MpsbAddBundle.cmake
        DESTINATION ${MPSB_INSTALL_CMAKEDIR} COMPONENT runtime)

# --- pkg-config ----------------------------------------------------------------------
# Paths relative to the .pc file (${pcfiledir}), so the package still works
# when installed with `cmake --install --prefix` somewhere else than
# CMAKE_INSTALL_PREFIX, or moved.
function(_mpsb_pc_dir var dir)
  if(IS_ABSOLUTE "${dir}")
    set(${var} "${dir}" PARENT_SCOPE)
  else()
    set(${var} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
file(RELATIVE_PATH _mpsb_pc_up /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" _mpsb_pc_up "${_mpsb_pc_up}")
set(MPSB_PC_PREFIX "\${pcfiledir}/${_mpsb_pc_up}")
_mpsb_pc_dir(MPSB_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
_mpsb_pc_dir(MPSB_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
# A static libmpsb.a is C++ inside: a C program linking it needs the C++
# standard library (libstdc++ or libc++) too. With only a static library
# installed, plain `pkg-config --libs` must give it, so it goes in Libs; the
# list is what the C++ compiler links beyond the C compiler.
set(MPSB_PC_LIBS_EXTRA "")
get_target_property(_mpsb_rt_type mpsb_runtime TYPE)
if(_mpsb_rt_type STREQUAL "STATIC_LIBRARY")
  set(_mpsb_cxx_libs ${CMAKE_CXX_IMPLICIT_LINK_LIBRARIES})
  if(CMAKE_C_IMPLICIT_LINK_LIBRARIES)
    list(REMOVE_ITEM _mpsb_cxx_libs ${CMAKE_C_IMPLICIT_LINK_LIBRARIES})
  endif()
  list(REMOVE_DUPLICATES _mpsb_cxx_libs)
  foreach(_lib IN LISTS _mpsb_cxx_libs)
    if(_lib MATCHES "^[-/]")
      string(APPEND MPSB_PC_LIBS_EXTRA " ${_lib}")
    else()
      string(APPEND MPSB_PC_LIBS_EXTRA " -l${_lib}")
    endif()
  endforeach()
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/mpsb.pc.in ${PROJECT_BINARY_DIR}/package/mpsb.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/package/mpsb.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT runtime)
