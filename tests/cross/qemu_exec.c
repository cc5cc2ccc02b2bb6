/* Preloaded into a program that runs under QEMU user-mode emulation
 * (tests/cross/run.sh): a program for the emulated machine that it starts
 * with execve runs under the same emulator too. Without it, qemu-user hands
 * execve to the host kernel, so Criterion's test workers (the test binary
 * started again) would run natively, on the build machine's CPU.
 *
 * NR_QEMU names the emulator (qemu-x86_64, qemu-aarch64); the emulated CPU
 * and library prefix travel in QEMU_CPU and QEMU_LD_PREFIX, which the
 * emulator reads. LD_PRELOAD is handed to the guest with -E, not to the
 * emulator, which is a host program. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_ARGS 4096

typedef int (*s_execve_fn)(const char *, char *const[], char *const[]);

/* The ELF machine this library is built for: the emulated one. A host
 * program the guest starts runs natively: with this library preloaded
 * where the host is the same architecture (its children are then
 * emulated too), without it elsewhere (the host's loader cannot load it). */
#if defined(__aarch64__)
#define S_MACHINE 183 /* EM_AARCH64 */
#define S_HOST_KEEPS_PRELOAD 0
#elif defined(__x86_64__)
#define S_MACHINE 62 /* EM_X86_64 */
#define S_HOST_KEEPS_PRELOAD 1
#else
#error "tests/cross/qemu_exec.c: add this architecture's ELF machine"
#endif

/* An ELF program for the emulated machine (a host program the guest starts,
 * e.g. an x86-64 redis-server from an arm64 test, runs natively). */
static int s_is_guest_elf(const char *path) {
    unsigned char h[20];
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    const ssize_t n = read(fd, h, sizeof h);
    close(fd);
    return n == (ssize_t)sizeof h && memcmp(h, "\177ELF", 4) == 0 && (h[18] | h[19] << 8) == S_MACHINE;
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    const s_execve_fn real = (s_execve_fn)dlsym(RTLD_NEXT, "execve");
    const char *qemu = getenv("NR_QEMU");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    if (!qemu || !*qemu) return real(path, argv, envp);
    const int guest = s_is_guest_elf(path);
    if (!guest && S_HOST_KEEPS_PRELOAD) return real(path, argv, envp);

    static char *args[S_MAX_ARGS], *env[S_MAX_ARGS], preload[4096];
    size_t na = 0, ne = 0;
    preload[0] = '\0';
    for (size_t i = 0; envp[i] && ne < S_MAX_ARGS - 1; i++) {
        if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0)
            strncpy(preload, envp[i], sizeof preload - 1);
        else
            env[ne++] = envp[i];
    }
    env[ne] = NULL;
    if (!guest) return real(path, argv, env);
    args[na++] = (char *)qemu;
    if (argv[0]) {
        args[na++] = "-0";
        args[na++] = argv[0];
    }
    if (preload[0]) {
        args[na++] = "-E";
        args[na++] = preload;
    }
    args[na++] = (char *)path;
    for (size_t i = 1; argv[0] && argv[i] && na < S_MAX_ARGS - 1; i++) args[na++] = argv[i];
    args[na] = NULL;
    return real(qemu, args, env);
}
