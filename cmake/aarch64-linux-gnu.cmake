# Cross build for 64-bit Arm Linux with Debian's g++-aarch64-linux-gnu; the
# binaries run under qemu-aarch64 (qemu-user), which ctest and
# gtest_discover_tests call through CMAKE_CROSSCOMPILING_EMULATOR.
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake ...
# Programs (flatc) come from the host; libraries only from the aarch64 root
# or CMAKE_PREFIX_PATH (GoogleTest built from /usr/src/googletest with this
# file, scripts/test.sh); headers and CMake package files from both, since
# FlatBuffers, xxHash, nlohmann-json and CLI11 are used as headers only.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# The host's FlatBuffers package gives its (architecture-independent)
# include directory; its compiled library is never linked. fmt is only
# found, for the configure step: mpsb-dump, the one target that links it,
# is not cross-built (scripts/test.sh builds the test targets by name).
set(FlatBuffers_DIR /usr/lib/x86_64-linux-gnu/cmake/flatbuffers CACHE PATH "")
set(fmt_DIR /usr/lib/x86_64-linux-gnu/cmake/fmt CACHE PATH "")
