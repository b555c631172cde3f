// libUnderstudyPreload.so: loaded into QEMU with LD_PRELOAD so that guest-RAM write tracking
// can be armed from inside QEMU's address space, which userfaultfd requires.
//
// When UNDERSTUDY_PRELOAD_SOCKET names a path, a constructor starts one thread that listens there
// (mode 0600) and answers one-line commands:
//   ARM <start-hex> <length-hex>   register [start, start+length) for asynchronous write-protect
//                                  tracking and write-protect it: every later write marks the
//                                  page PAGE_IS_WRITTEN, which the agent reads and re-arms with
//                                  PAGEMAP_SCAN from outside. Replies "OK" or "ERR <reason>".
//   PAUSE <path>                   make this connection the checkpoint pause channel (below) for
//                                  device-state saves to <path>. Replies "OK"; the connection
//                                  then stays open for the life of QEMU (a new one replaces it).
// Without the variable the library does nothing, so loading it is harmless. A wrapper that execs
// QEMU may stand in for it (see the constructor); processes QEMU starts stay silent.
//
// The pause channel puts the agent's page collection inside QEMU's own pause. QMP's
// xen-save-devices-state, sent while the guest runs, stops the VM, writes the device state to a
// file it opens, closes it and resumes the VM, all in one main-loop turn. QEMU reads QMP one byte
// per main-loop iteration (about 7 us a byte here), so driving stop / save / cont as separate
// commands parses ~130 bytes while the guest is paused; sent as one command, the whole command
// is parsed while the guest still runs. The agent must collect and copy the written pages while
// the VM is stopped, so this library interposes open64 and close:
//   open64(<path>)  the VM is stopped (vm_stop ran first): send a STOPPED message with the save's
//                   sequence number to the agent, then wait for the number back (4 bytes, host
//                   order) before the file opens: the agent answers once it has collected the
//                   written pages (at once when only a few page tables hold any), and copies them
//                   while QEMU serialises the devices. The collection re-arms
//                   tracking, and each page table it changes flushes the TLB of every core running
//                   QEMU's address space: with QEMU serialising devices on the other core, each was
//                   an interrupt of both cores (measured: a collection of 500 scattered pages of a
//                   1 GiB guest took 3.2 ms beside a running QEMU thread, 0.44 ms beside none);
//   close(that fd)  the save is written: send a SAVED message, then wait for the number back again
//                   before QEMU resumes the VM.
// Either wait fails on the number's complement, the end of file or PAUSE_WAIT_SECONDS without an
// answer: the open or the close fails with EIO, so the save fails and QEMU resumes the VM anyway; a
// dead or stuck agent never leaves the guest paused. Answers to earlier saves (an agent that
// answered after a wait ended) are skipped, so a late answer can never release a later pause.
// Each message is 16 bytes, host order: u32 sequence, u32 kind (0 STOPPED, 1 SAVED), u64 the
// CLOCK_MONOTONIC nanoseconds it was sent at, so the agent can tell how long vm_stop (drain and
// flush of the disks) and the device save took, and how late its own thread woke.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
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

#define PAUSE_WAIT_SECONDS 10

// Set once by PAUSE (before the agent saves any device state), read by open64 on QEMU's threads.
static char pause_path[256];
static int pause_channel = -1;
// The descriptor of the device-state file being written (-1 outside a save), and its number.
static int saving_fd = -1;
static uint32_t saving_sequence;

enum { PAUSE_STOPPED = 0, PAUSE_SAVED = 1 };
struct pause_message {
    uint32_t sequence;
    uint32_t kind;
    uint64_t monotonic_ns;
};

// If the agent is gone the send fails; close() then sees the end of file and fails the save.
static void announce(int channel, uint32_t sequence, uint32_t kind) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct pause_message message = {
        .sequence = sequence, .kind = kind, .monotonic_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec};
    (void)send(channel, &message, sizeof message, MSG_NOSIGNAL);
}

static int (*real_open64)(const char *, int, ...);
static int (*real_close)(int);

// Resolved in the constructor, before QEMU's main runs; a lazy lookup from a hook could race.
static void resolve_real_functions(void) {
    real_open64 = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
}

// Waits for the agent's answer to save `sequence`: 1 to go on, 0 to fail the save.
static int agent_released(uint32_t sequence) {
    int channel = __atomic_load_n(&pause_channel, __ATOMIC_ACQUIRE);
    if (channel < 0) return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long deadline = now.tv_sec * 1000LL + now.tv_nsec / 1000000 + PAUSE_WAIT_SECONDS * 1000LL;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left = deadline - (now.tv_sec * 1000LL + now.tv_nsec / 1000000);
        if (left <= 0) return 0;
        struct pollfd waiting = {.fd = channel, .events = POLLIN};
        int ready = poll(&waiting, 1, (int)left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready != 1) return 0;
        uint32_t answer;
        if (recv(channel, &answer, sizeof answer, MSG_WAITALL) != sizeof answer) return 0;
        if (answer == sequence) return 1;
        if (answer == ~sequence) return 0;
    }
}

int open64(const char *path, int flags, ...) {
    mode_t mode = 0;
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {  // as glibc decides whether a mode was passed
        va_list arguments;
        va_start(arguments, flags);
        mode = va_arg(arguments, mode_t);
        va_end(arguments);
    }
    int fd = real_open64(path, flags, mode);
    int channel = __atomic_load_n(&pause_channel, __ATOMIC_ACQUIRE);
    if (fd >= 0 && channel >= 0 && strcmp(path, pause_path) == 0) {
        // Saves run on QEMU's main thread only, one at a time.
        uint32_t sequence = ++saving_sequence;
        announce(channel, sequence, PAUSE_STOPPED);
        if (!agent_released(sequence)) {
            real_close(fd);
            errno = EIO;
            return -1;
        }
        __atomic_store_n(&saving_fd, fd, __ATOMIC_RELEASE);
    }
    return fd;
}

int close(int fd) {
    if (fd < 0 || fd != __atomic_load_n(&saving_fd, __ATOMIC_ACQUIRE)) return real_close(fd);
    __atomic_store_n(&saving_fd, -1, __ATOMIC_RELEASE);
    int channel = __atomic_load_n(&pause_channel, __ATOMIC_ACQUIRE);
    if (channel >= 0) announce(channel, saving_sequence, PAUSE_SAVED);
    int released = agent_released(saving_sequence);
    int result = real_close(fd);
    if (!released) {
        errno = EIO;
        return -1;
    }
    return result;
}

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

// Returns 1 when the connection became the pause channel and must stay open.
static int serve(int client) {
    char line[256];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(client, line + used, sizeof line - 1 - used);
        if (n <= 0) return 0;
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
            } else if (strncmp(line, "PAUSE ", 6) == 0 && strlen(line + 6) < sizeof pause_path && used == strlen(line) + 1) {
                // The last command on this connection: from now on it carries only the pause bytes.
                int old = __atomic_exchange_n(&pause_channel, -1, __ATOMIC_ACQ_REL);
                if (old >= 0) real_close(old);
                strcpy(pause_path, line + 6);
                __atomic_store_n(&pause_channel, client, __ATOMIC_RELEASE);
                return write(client, "OK\n", 3) == 3;
            } else {
                snprintf(reply, sizeof reply, "ERR unknown command\n");
            }
            if (write(client, reply, strlen(reply)) < 0) return 0;
            size_t rest = used - (size_t)(newline + 1 - line);
            memmove(line, newline + 1, rest);
            used = rest;
            line[used] = 0;
        }
        if (used == sizeof line - 1) return 0;  // an over-long line: drop the client
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
        if (!serve(client)) real_close(client);
    }
}

__attribute__((constructor)) static void understudy_preload_init(void) {
    resolve_real_functions();
    const char *path = getenv("UNDERSTUDY_PRELOAD_SOCKET");
    if (path == NULL || *path == 0) return;
    // Only the process the agent started listens, and QEMU may not be its first program: a
    // wrapper script (vm.qemu) that execs QEMU loads this library first, in the same process,
    // and the exec closes its socket. So the variable stays set for that exec, and
    // UNDERSTUDY_PRELOAD_PID names the process that listens: QEMU after a wrapper's exec has the
    // same pid and listens again; a helper QEMU starts is another process and must not.
    const char *owner = getenv("UNDERSTUDY_PRELOAD_PID");
    if (owner != NULL && strtol(owner, NULL, 10) != (long)getpid()) {
        unsetenv("UNDERSTUDY_PRELOAD_SOCKET");
        unsetenv("UNDERSTUDY_PRELOAD_PID");
        return;
    }
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
        real_close(server);
        return;
    }
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("UNDERSTUDY_PRELOAD_PID", pid, 1);
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    if (pthread_create(&thread, &attributes, listen_thread, (void *)(intptr_t)server) != 0) real_close(server);
    pthread_attr_destroy(&attributes);
}
