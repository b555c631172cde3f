// libUnderstudyPreload.so: loaded into QEMU with LD_PRELOAD so that guest-RAM write tracking
// can be armed from inside QEMU's address space, which userfaultfd requires.
//
// When UNDERSTUDY_DIRTY_SOCKET names a path, a constructor starts one thread that listens there
// (mode 0600) and answers one-line commands:
//   ARM <start-hex> <length-hex>   register [start, start+length) for asynchronous write-protect
//                                  tracking and write-protect it: every later write marks the
//                                  page PAGE_IS_WRITTEN, which the agent reads and re-arms with
//                                  PAGEMAP_SCAN from outside. Replies "OK" or "ERR <reason>".
// Without the variable the library does nothing, so loading it is harmless.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

// Debian 12's headers predate these (Linux 6.7); values from the kernel's uapi.
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

static int tracked_fd = -1;

static int arm(uint64_t start, uint64_t length, char *error, size_t error_size) {
    // Arming again (a new replication session on the same QEMU) starts from scratch: the old
    // registration would make the new one fail with EBUSY, and closing it unregisters the range.
    if (tracked_fd >= 0) {
        close(tracked_fd);
        tracked_fd = -1;
    }
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(error, error_size, "userfaultfd: %s", strerror(errno));
        return -1;
    }
    struct uffdio_api api = {
        .api = UFFD_API,
        .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
    };
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        snprintf(error, error_size, "UFFDIO_API (asynchronous write-protect needs Linux 6.7): %s", strerror(errno));
        close(fd);
        return -1;
    }
    struct uffdio_register reg = {.range = {.start = start, .len = length}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(error, error_size, "UFFDIO_REGISTER: %s", strerror(errno));
        close(fd);
        return -1;
    }
    struct uffdio_writeprotect wp = {.range = {.start = start, .len = length}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
        snprintf(error, error_size, "UFFDIO_WRITEPROTECT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    // The registration lives as long as the descriptor: keep it open for the life of QEMU.
    tracked_fd = fd;
    return 0;
}

static void serve(int client) {
    char line[256];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(client, line + used, sizeof line - 1 - used);
        if (n <= 0) return;
        used += (size_t)n;
        line[used] = 0;
        char *newline;
        while ((newline = strchr(line, '\n')) != NULL) {
            *newline = 0;
            char reply[300];
            unsigned long long start, length;
            if (sscanf(line, "ARM %llx %llx", &start, &length) == 2) {
                char error[200];
                if (arm(start, length, error, sizeof error) == 0) snprintf(reply, sizeof reply, "OK\n");
                else snprintf(reply, sizeof reply, "ERR %s\n", error);
            } else {
                snprintf(reply, sizeof reply, "ERR unknown command\n");
            }
            if (write(client, reply, strlen(reply)) < 0) return;
            size_t rest = used - (size_t)(newline + 1 - line);
            memmove(line, newline + 1, rest);
            used = rest;
            line[used] = 0;
        }
        if (used == sizeof line - 1) return;  // an over-long line: drop the client
    }
}

static void *listen_thread(void *arg) {
    int server = (int)(intptr_t)arg;
    for (;;) {
        int client = accept4(server, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR) continue;
            return NULL;
        }
        serve(client);
        close(client);
    }
}

__attribute__((constructor)) static void understudy_preload_init(void) {
    const char *path = getenv("UNDERSTUDY_DIRTY_SOCKET");
    if (path == NULL || *path == 0) return;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) return;
    strcpy(address.sun_path, path);
    int server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (server < 0) return;
    unlink(path);
    // Owner-only from the start: the socket controls tracking of guest memory.
    mode_t old = umask(0177);
    int bound = bind(server, (struct sockaddr *)&address, sizeof address);
    umask(old);
    if (bound < 0 || listen(server, 1) < 0) {
        close(server);
        return;
    }
    // QEMU may start helpers; they must not inherit the variable and listen again.
    unsetenv("UNDERSTUDY_DIRTY_SOCKET");
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    if (pthread_create(&thread, &attributes, listen_thread, (void *)(intptr_t)server) != 0) close(server);
    pthread_attr_destroy(&attributes);
}
