/* LD_PRELOAD shim for benchmarks/connection_rate.py: every listen() asks for the
 * largest backlog, which the kernel clamps to net.core.somaxconn. It shows what a
 * server would gain from SOMAXCONN instead of the backlog it asks for (ncat's 10, which
 * enchufe keeps as a drop-in), with no change to either program.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/socket.h>

int listen(int fd, int backlog) {
    static int (*real_listen)(int, int);
    (void)backlog;
    if (real_listen == NULL)
        real_listen = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    return real_listen(fd, 65535);
}
