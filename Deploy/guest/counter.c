/*
 * counter: guest workload for replication tests.
 *
 * Keeps a 64-bit counter in guest memory and prints "COUNTER <value>" on stdout every
 * 100 ms. After a failover the printed values must continue without going backwards or
 * repeating, which is only true if the backup resumed from a complete checkpoint.
 *
 * Meanwhile it dirties pages of a buffer at a fixed rate, so checkpoints carry a known,
 * tunable amount of memory. Parameters come from the kernel command line (/proc/cmdline),
 * because the guest has no other configuration channel:
 *   understudy.dirty_mib=N            buffer size in MiB (default 16)
 *   understudy.dirty_pages_per_sec=N  pages written per second (default 5000);
 *                                     0 = idle: the counter advances 100 times a second
 *                                     and the CPU sleeps in between, so the guest dirties
 *                                     almost nothing.
 *   understudy.disk_fill_mib=N        a child process writes the block device understudy.disk
 *                                     (default /dev/vda) through the page cache, N MiB over and
 *                                     over, and reads it back: a page-cache fill (dirty cache
 *                                     pages, then disk writes and reads by DMA); 0 (default): off.
 * Other output lines start with "counter:" so that tests can match "^COUNTER [0-9]+$".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC 1000000000LL
#define PRINT_INTERVAL_NS (100 * 1000000LL)
#define IDLE_TICK_NS (10 * 1000000LL)

/* volatile: the counter has to live in memory (that is what the test checks), not only in
 * a register the compiler would keep it in. */
static volatile uint64_t counter;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* Returns the value of "key=" on the kernel command line, or fallback. */
static unsigned long long cmdline_param(const char *cmdline, const char *key,
                                        unsigned long long fallback) {
    size_t klen = strlen(key);
    const char *p = cmdline;
    while ((p = strstr(p, key)) != NULL) {
        int at_word_start = (p == cmdline) || p[-1] == ' ' || p[-1] == '\t';
        if (at_word_start && p[klen] == '=') {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p + klen + 1, &end, 10);
            if (errno == 0 && end != p + klen + 1 && (*end == '\0' || *end == ' ' || *end == '\n'))
                return v;
            fprintf(stderr, "counter: ignoring malformed %s\n", key);
            return fallback;
        }
        p += klen;
    }
    return fallback;
}

static void read_cmdline(char *buf, size_t size) {
    buf[0] = '\0';
    FILE *f = fopen("/proc/cmdline", "r");
    if (f == NULL) return;
    if (fgets(buf, (int)size, f) == NULL) buf[0] = '\0';
    fclose(f);
}

/* The page-cache fill: sequential buffered writes of `mib` MiB, then reads of the same range,
 * forever. Buffered, so the guest's page cache holds and dirties the pages and the kernel's
 * writeback sends them to the disk. */
static void fill_page_cache(const char *device, unsigned long long mib) {
    int fd = open(device, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "counter: cannot open %s: %s\n", device, strerror(errno));
        _exit(1);
    }
    static unsigned char chunk[1 << 20];
    for (uint64_t round = 1;; round++) {
        memset(chunk, (int)(round & 0xff), sizeof chunk);
        lseek(fd, 0, SEEK_SET);
        for (unsigned long long i = 0; i < mib; i++) {
            chunk[0] = (unsigned char)i;
            if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) break;
        }
        lseek(fd, 0, SEEK_SET);
        for (unsigned long long i = 0; i < mib; i++) {
            if (read(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) break;
        }
    }
}

static void read_string_param(const char *cmdline, const char *key, char *out, size_t size) {
    const char *p = strstr(cmdline, key);
    size_t klen = strlen(key);
    if (p == NULL || p[klen] != '=') return;
    p += klen + 1;
    size_t n = strcspn(p, " \n");
    if (n == 0 || n >= size) return;
    memcpy(out, p, n);
    out[n] = '\0';
}

int main(void) {
    static char cmdline[4096];
    read_cmdline(cmdline, sizeof cmdline);

    unsigned long long dirty_mib = cmdline_param(cmdline, "understudy.dirty_mib", 16);
    unsigned long long pages_per_sec = cmdline_param(cmdline, "understudy.dirty_pages_per_sec", 5000);
    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0) page_size = 4096;

    /* Before the buffer exists: a child sharing it would make every later write a copy. */
    unsigned long long fill_mib = cmdline_param(cmdline, "understudy.disk_fill_mib", 0);
    if (fill_mib > 0) {
        char device[64] = "/dev/vda";
        read_string_param(cmdline, "understudy.disk", device, sizeof device);
        fflush(stdout);
        if (fork() == 0) fill_page_cache(device, fill_mib);
        printf("counter: disk_fill_mib=%llu on %s\n", fill_mib, device);
    }

    size_t buf_size = (size_t)dirty_mib << 20;
    size_t npages = buf_size / (size_t)page_size;
    unsigned char *buf = NULL;
    if (npages > 0) {
        /* MAP_POPULATE: the whole buffer is resident from the start, so later checkpoints
         * see only the rate-controlled writes, not first-touch allocation. */
        buf = mmap(NULL, buf_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (buf == MAP_FAILED) {
            fprintf(stderr, "counter: cannot map %llu MiB: %s\n", dirty_mib, strerror(errno));
            return 1;
        }
    }
    if (npages == 0) pages_per_sec = 0;

    printf("counter: dirty_mib=%llu dirty_pages_per_sec=%llu page_size=%ld\n",
           dirty_mib, pages_per_sec, page_size);
    fflush(stdout);

    int64_t start = now_ns();
    int64_t next_print = start;
    uint64_t pages_written = 0;
    size_t next_page = 0;

    for (;;) {
        int64_t now = now_ns();
        if (now >= next_print) {
            printf("COUNTER %" PRIu64 "\n", counter);
            fflush(stdout);
            next_print += PRINT_INTERVAL_NS;
            /* After a long pause (VM stopped, restored on the backup) keep the 100 ms
             * cadence instead of printing a burst of catch-up lines. */
            if (next_print <= now) next_print = now + PRINT_INTERVAL_NS;
        }

        if (pages_per_sec == 0) {
            counter++;
            struct timespec ts = {0, IDLE_TICK_NS};
            nanosleep(&ts, NULL);
            continue;
        }

        /* Pace writes against elapsed time rather than sleeping, so the dirty rate holds
         * whatever the (emulated) CPU speed, as long as the CPU keeps up. */
        uint64_t due = (uint64_t)((__int128)(now - start) * pages_per_sec / NSEC_PER_SEC);
        if (due - pages_written > pages_per_sec) /* fell behind by > 1 s: drop the backlog */
            pages_written = due - pages_per_sec;
        while (pages_written < due) {
            /* Write the counter, not a constant, so each dirtied page really changes
             * (an XOR/zero-page encoder must not be able to elide it). */
            uint64_t *word = (uint64_t *)(buf + next_page * (size_t)page_size);
            word[pages_written % ((size_t)page_size / sizeof *word)] = counter;
            pages_written++;
            if (++next_page == npages) next_page = 0;
        }

        /* Increment in a burst between clock reads; the clock read is the expensive part
         * under TCG. */
        for (int i = 0; i < 4096; i++) counter++;
    }
}
