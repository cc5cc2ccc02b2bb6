# CMake toolchain for an aarch64 (arm64) build on an x86-64 Debian host,
# used by tests/cross/run.sh: Debian's gcc-aarch64-linux-gnu, and the arm64
# libraries unpacked into a sysroot (NR_CROSS_SYSROOT), so no arm64 package
# is installed on the host. Tests run under qemu-aarch64 (user mode).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)

if(NOT DEFINED ENV{NR_CROSS_SYSROOT})
  message(FATAL_ERROR "set NR_CROSS_SYSROOT to the arm64 sysroot (tests/cross/run.sh makes one)")
endif()
set(CMAKE_SYSROOT $ENV{NR_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads the sysroot's .pc files only (OpenBLAS keeps its own in
# openblas-pthread/, where Debian's alternatives would link it from).
set(s_lib $ENV{NR_CROSS_SYSROOT}/usr/lib/aarch64-linux-gnu)
set(ENV{PKG_CONFIG_LIBDIR} "${s_lib}/pkgconfig:${s_lib}/openblas-pthread/pkgconfig:$ENV{NR_CROSS_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} $ENV{NR_CROSS_SYSROOT})
set(ENV{PKG_CONFIG_PATH} "")

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;$ENV{NR_CROSS_SYSROOT})
