// Small C shims over the system OpenSSL 3, liblz4 and libxxhash.
// Only what Swift cannot import directly lives here: function-like macros, variadic
// OpenSSL calls, and tight byte loops that must vectorise regardless of build mode.
#ifndef CUNDERSTUDY_SHIMS_H
#define CUNDERSTUDY_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <lz4.h>
#include <lz4hc.h>
#include <xxhash.h>
#include <sys/socket.h>

/// Restricts a context to exactly the given protocol range (e.g. TLS1_3_VERSION..TLS1_3_VERSION).
/// Returns 1 on success.
int us_ssl_ctx_set_proto_range(SSL_CTX *ctx, int min_version, int max_version);

/// Sets SSL_MODE_ENABLE_PARTIAL_WRITE off and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER on, so a
/// retried SSL_write may pass a different (same-content) pointer.
void us_ssl_ctx_set_stream_modes(SSL_CTX *ctx);

/// HMAC-SHA256 of `data` under `key` into `out` (32 bytes). Returns 1 on success.
int us_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t data_len, uint8_t *out);

/// True when the oldest error queued on this thread is OpenSSL 3's "unexpected eof while
/// reading": the peer's TCP connection ended without a TLS close_notify.
int us_ssl_error_is_unexpected_eof(void);

/// Generates a new EC P-256 key. NULL on failure.
EVP_PKEY *us_generate_ec_key(void);

/// Creates an X.509 v3 certificate for `subject_key` named `common_name`.
/// `dns_name` (may be NULL) becomes a subjectAltName DNS entry. `is_ca` makes a CA certificate
/// (basicConstraints CA:TRUE, keyCertSign); otherwise a leaf usable for both TLS client and server.
/// `issuer_cert` NULL means self-signed with `issuer_key`. NULL on failure.
X509 *us_make_certificate(EVP_PKEY *subject_key, const char *common_name, const char *dns_name,
                          int is_ca, X509 *issuer_cert, EVP_PKEY *issuer_key,
                          int valid_days, uint64_t serial);

/// PEM-encodes a private key (PKCS#8) or a certificate into a malloc'd buffer the caller frees.
/// Returns 1 on success.
int us_pem_private_key(EVP_PKEY *key, char **out, size_t *out_len);
int us_pem_certificate(X509 *cert, char **out, size_t *out_len);

/// Returns 1 when all `length` bytes are zero. `length` must be a multiple of 64.
int us_is_zero(const void *bytes, size_t length);

/// dst[i] = a[i] ^ b[i] for `length` bytes; `length` must be a multiple of 64.
void us_xor(void *dst, const void *a, const void *b, size_t length);

/// Counts the 8-byte words that differ between `a` and `b`, looking at one word every
/// `stride` bytes: a cheap estimate of how much of a page changed.
int us_sampled_differences(const void *a, const void *b, size_t length, size_t stride);

/// One range of pages PAGEMAP_SCAN reported: [start, end) in the scanned process's addresses.
typedef struct {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
} us_page_region;

/// Collects the pages written since the last call in [start, end) of the process whose
/// /proc/PID/pagemap is open as `pagemap_fd`, and write-protects them again in the same step
/// (PAGEMAP_SCAN with PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, Linux 6.7+). Fills up to
/// `capacity` regions; `*walk_end` tells where the scan stopped (call again from there while it
/// is below `end`). Returns the number of regions, or -1 with errno set.
long us_pagemap_scan_written(int pagemap_fd, uint64_t start, uint64_t end, us_page_region *regions,
                             uint64_t capacity, uint64_t *walk_end);

/// As `us_pagemap_scan_written`, but leaves the pages as they are (tracking not re-armed): how
/// many pages a collection would return now, without taking them.
long us_pagemap_peek_written(int pagemap_fd, uint64_t start, uint64_t end, us_page_region *regions,
                             uint64_t capacity, uint64_t *walk_end);

/// Names the calling thread (GNU extension, hidden from Swift without _GNU_SOURCE).
void us_set_thread_name(const char *name);

/// accept4(..., SOCK_CLOEXEC) (GNU extension, hidden from Swift without _GNU_SOURCE).
int us_accept_cloexec(int fd, struct sockaddr *address, socklen_t *length);

/// fallocate(2) (a GNU extension, hidden from Swift without _GNU_SOURCE). `punch`: deallocate
/// the range (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE); otherwise zero it keeping the blocks
/// allocated (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE). Either way the range reads as zeroes.
/// Returns 0 or -1 with errno set (EOPNOTSUPP where the filesystem cannot).
int us_zero_file_range(int fd, int64_t offset, int64_t length, int punch);

/// Moves the calling thread into the network namespace at `path` (e.g. /var/run/netns/NAME);
/// sockets it creates afterwards live there. setns(2) is a GNU extension. 0 or -1 with errno.
int us_enter_network_namespace(const char *path);

/// Attaches `fd` (an open /dev/net/tun) to the TAP device `name` without packet information
/// headers (TUNSETIFF is a function-like macro Swift cannot import); creates the device when it
/// does not exist. Returns 0 or -1 with errno set.
int us_tap_attach(int fd, const char *name);

#endif
