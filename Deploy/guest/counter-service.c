/*
 * counter-service: the guest side of the consistency test (output commit + disk follows memory).
 *
 * Mounts the replicated virtio disk (ext4, formatted by the test harness) and serves a counter
 * over TCP. The counter lives in memory; every increment is also appended to a file on the disk
 * and made durable (fsync) before the reply is sent. Line protocol, one request per line:
 *   "n"  increment; append "<value>\n" to the log file; fsync; reply "<value>\n"
 *   "s"  reply "S <counter> <last value in the file> <lines in the file>\n" (no change)
 *   "x"  sync and remount the disk read-only (so that the host can fsck it); reply "OK\n"
 *   "w N" write N MiB to a scratch file on the disk, fsync, delete it; reply "W N\n" (for
 *        measuring disk write throughput from the client, which times the request)
 * After a failover the client must never see a value twice or going backwards, and "s" must
 * show the file agreeing with the memory counter: both come from the same checkpoint.
 *
 * Parameters from the kernel command line (the guest has no other configuration channel):
 *   understudy.port=N      TCP port (default 7000)
 *   understudy.disk=DEV    block device (default /dev/vda)
 * Console lines start with "counter-service:" except the readiness line "SERVICE READY ...".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MOUNT_POINT "/mnt"
#define LOG_FILE MOUNT_POINT "/counter.log"

/* volatile: the counter has to live in guest memory, which is what the checkpoint carries. */
static volatile uint64_t counter;
static int log_fd = -1;

static const char *cmdline_value(const char *cmdline, const char *key, char *out, size_t size,
                                 const char *fallback) {
    size_t klen = strlen(key);
    for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += klen) {
        if ((p == cmdline || p[-1] == ' ') && p[klen] == '=') {
            size_t n = strcspn(p + klen + 1, " \n");
            if (n >= size) n = size - 1;
            memcpy(out, p + klen + 1, n);
            out[n] = '\0';
            return out;
        }
    }
    snprintf(out, size, "%s", fallback);
    return out;
}

/* Reads the log file: its last value and how many lines it has. */
static void scan_log(uint64_t *last, uint64_t *lines) {
    *last = 0;
    *lines = 0;
    FILE *f = fopen(LOG_FILE, "r");
    if (f == NULL) return;
    char line[64];
    while (fgets(line, sizeof line, f) != NULL) {
        *last = strtoull(line, NULL, 10);
        (*lines)++;
    }
    fclose(f);
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void mount_disk(const char *device) {
    /* virtio_blk probes asynchronously after insmod: wait for the device node. */
    for (int i = 0; i < 500 && access(device, F_OK) != 0; i++) usleep(10000);
    mkdir(MOUNT_POINT, 0755);
    if (mount(device, MOUNT_POINT, "ext4", 0, NULL) != 0) {
        printf("counter-service: cannot mount %s: %s\n", device, strerror(errno));
        exit(1);
    }
    log_fd = open(LOG_FILE, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (log_fd < 0) {
        printf("counter-service: cannot open %s: %s\n", LOG_FILE, strerror(errno));
        exit(1);
    }
    uint64_t last, lines;
    scan_log(&last, &lines);
    counter = last; /* after a reboot, continue from what the disk holds */
}

/* Handles one request line; returns the reply length written into reply. */
static size_t handle(const char *request, char *reply, size_t size) {
    if (strcmp(request, "n") == 0) {
        uint64_t value = counter + 1;
        char line[32];
        int len = snprintf(line, sizeof line, "%" PRIu64 "\n", value);
        if (write_all(log_fd, line, (size_t)len) != 0 || fsync(log_fd) != 0)
            return (size_t)snprintf(reply, size, "ERR %s\n", strerror(errno));
        counter = value;
        return (size_t)snprintf(reply, size, "%" PRIu64 "\n", value);
    }
    if (strcmp(request, "s") == 0) {
        uint64_t last, lines;
        scan_log(&last, &lines);
        return (size_t)snprintf(reply, size, "S %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", counter, last, lines);
    }
    if (strcmp(request, "x") == 0) {
        fsync(log_fd);
        close(log_fd);
        log_fd = -1;
        sync();
        if (mount(NULL, MOUNT_POINT, NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0)
            return (size_t)snprintf(reply, size, "ERR %s\n", strerror(errno));
        return (size_t)snprintf(reply, size, "OK\n");
    }
    if (request[0] == 'w' && request[1] == ' ') {
        unsigned long mib = strtoul(request + 2, NULL, 10);
        static char chunk[1 << 20];
        /* Not all zeroes, so that the disk path moves real data (compressible, as files often are). */
        for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (char)(i * 7 + (i >> 12));
        int fd = open(MOUNT_POINT "/scratch", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) return (size_t)snprintf(reply, size, "ERR %s\n", strerror(errno));
        for (unsigned long i = 0; i < mib; i++) {
            if (write_all(fd, chunk, sizeof chunk) != 0) {
                close(fd);
                return (size_t)snprintf(reply, size, "ERR %s\n", strerror(errno));
            }
        }
        int synced = fsync(fd);
        close(fd);
        unlink(MOUNT_POINT "/scratch");
        if (synced != 0) return (size_t)snprintf(reply, size, "ERR %s\n", strerror(errno));
        return (size_t)snprintf(reply, size, "W %lu\n", mib);
    }
    return (size_t)snprintf(reply, size, "ERR unknown request\n");
}

static void serve(int client) {
    char buffer[256];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(client, buffer + used, sizeof buffer - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        used += (size_t)n;
        char *start = buffer;
        char *newline;
        while ((newline = memchr(start, '\n', used - (size_t)(start - buffer))) != NULL) {
            *newline = '\0';
            char reply[128];
            size_t len = handle(start, reply, sizeof reply);
            if (write_all(client, reply, len) != 0) return;
            start = newline + 1;
        }
        used -= (size_t)(start - buffer);
        memmove(buffer, start, used);
        if (used == sizeof buffer - 1) return; /* a line this long is not a request */
    }
}

int main(void) {
    static char cmdline[4096];
    FILE *f = fopen("/proc/cmdline", "r");
    if (f == NULL || fgets(cmdline, sizeof cmdline, f) == NULL) cmdline[0] = '\0';
    if (f != NULL) fclose(f);
    char port_text[16], device[64];
    int port = atoi(cmdline_value(cmdline, "understudy.port", port_text, sizeof port_text, "7000"));
    cmdline_value(cmdline, "understudy.disk", device, sizeof device, "/dev/vda");
    setvbuf(stdout, NULL, _IOLBF, 0);

    mount_disk(device);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 4) != 0) {
        printf("counter-service: cannot listen on port %d: %s\n", port, strerror(errno));
        return 1;
    }
    printf("SERVICE READY port=%d counter=%" PRIu64 "\n", port, counter);
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* One connection at a time: a client that vanished must not hold the service forever.
         * After an asynchronous failover the guest resumes from an older checkpoint, its side
         * of the connection behind the client's, so nothing more arrives on it (and the
         * client's retransmissions keep TCP keepalive from ending it): a connection idle for
         * 15 s is closed. Clients here send requests back to back; a failover's silence lasts
         * seconds. */
        struct timeval idle = {.tv_sec = 15};
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
        serve(client);
        close(client);
    }
}
