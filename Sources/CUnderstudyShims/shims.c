#define _GNU_SOURCE
#include "CUnderstudyShims.h"
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <linux/ioctl.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/if.h>
#include <linux/if_tun.h>

int us_ssl_ctx_set_proto_range(SSL_CTX *ctx, int min_version, int max_version) {
    return SSL_CTX_set_min_proto_version(ctx, min_version) == 1 &&
           SSL_CTX_set_max_proto_version(ctx, max_version) == 1;
}

void us_ssl_ctx_set_stream_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_clear_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
}

int us_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t data_len, uint8_t *out) {
    size_t out_len = 0;
    return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, data, data_len, out, 32, &out_len) != NULL && out_len == 32;
}

int us_ssl_error_is_unexpected_eof(void) {
    unsigned long code = ERR_peek_error();
    return code != 0 && ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

EVP_PKEY *us_generate_ec_key(void) {
    return EVP_EC_gen("P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

X509 *us_make_certificate(EVP_PKEY *subject_key, const char *common_name, const char *dns_name,
                          int is_ca, X509 *issuer_cert, EVP_PKEY *issuer_key,
                          int valid_days, uint64_t serial) {
    X509 *cert = X509_new();
    if (cert == NULL) return NULL;
    int ok = X509_set_version(cert, X509_VERSION_3);
    ok = ok && ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial);
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(cert), (long)valid_days * 86400L) != NULL;
    ok = ok && X509_set_pubkey(cert, subject_key);
    X509_NAME *name = X509_get_subject_name(cert);
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Understudy", -1, -1, 0);
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)common_name, -1, -1, 0);
    X509 *issuer = issuer_cert ? issuer_cert : cert;
    ok = ok && X509_set_issuer_name(cert, X509_get_subject_name(issuer));
    if (is_ca) {
        ok = ok && add_ext(cert, issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
        ok = ok && add_ext(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        ok = ok && add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE");
        ok = ok && add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature");
        ok = ok && add_ext(cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    ok = ok && add_ext(cert, issuer, NID_subject_key_identifier, "hash");
    if (issuer_cert) ok = ok && add_ext(cert, issuer, NID_authority_key_identifier, "keyid:always");
    if (dns_name) {
        size_t n = strlen(dns_name) + 5;
        char *san = malloc(n);
        if (san == NULL) { X509_free(cert); return NULL; }
        snprintf(san, n, "DNS:%s", dns_name);
        ok = ok && add_ext(cert, issuer, NID_subject_alt_name, san);
        free(san);
    }
    ok = ok && X509_sign(cert, issuer_key, EVP_sha256()) > 0;
    if (!ok) { X509_free(cert); return NULL; }
    return cert;
}

static int bio_to_buffer(BIO *bio, char **out, size_t *out_len) {
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len <= 0) return 0;
    *out = malloc((size_t)len);
    if (*out == NULL) return 0;
    memcpy(*out, data, (size_t)len);
    *out_len = (size_t)len;
    return 1;
}

int us_pem_private_key(EVP_PKEY *key, char **out, size_t *out_len) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return 0;
    int ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) &&
             bio_to_buffer(bio, out, out_len);
    BIO_free(bio);
    return ok;
}

int us_pem_certificate(X509 *cert, char **out, size_t *out_len) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return 0;
    int ok = PEM_write_bio_X509(bio, cert) && bio_to_buffer(bio, out, out_len);
    BIO_free(bio);
    return ok;
}

int us_is_zero(const void *bytes, size_t length) {
    const uint64_t *w = bytes;
    for (size_t i = 0; i < length / 8; i += 8) {
        if ((w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) != 0) return 0;
    }
    return 1;
}

void us_xor(void *dst, const void *a, const void *b, size_t length) {
    uint64_t *d = dst;
    const uint64_t *x = a, *y = b;
    for (size_t i = 0; i < length / 8; i++) d[i] = x[i] ^ y[i];
}

void us_set_thread_name(const char *name) {
    char truncated[16];
    snprintf(truncated, sizeof truncated, "%s", name);
    pthread_setname_np(pthread_self(), truncated);
}

int us_accept_cloexec(int fd, struct sockaddr *address, socklen_t *length) {
    return accept4(fd, address, length, SOCK_CLOEXEC);
}

int us_sampled_differences(const void *a, const void *b, size_t length, size_t stride) {
    const unsigned char *x = a, *y = b;
    int differing = 0;
    for (size_t offset = 0; offset + 8 <= length; offset += stride) {
        uint64_t u, v;
        memcpy(&u, x + offset, 8);
        memcpy(&v, y + offset, 8);
        differing += u != v;
    }
    return differing;
}

// Debian 12's headers predate PAGEMAP_SCAN (Linux 6.7): the uapi definitions, restated.
struct us_pm_scan_arg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};
#define US_PAGEMAP_SCAN _IOWR('f', 16, struct us_pm_scan_arg)
#define US_PM_SCAN_WP_MATCHING (1ULL << 0)
#define US_PM_SCAN_CHECK_WPASYNC (1ULL << 1)
#define US_PAGE_IS_WRITTEN (1ULL << 1)

static long pagemap_scan(int pagemap_fd, uint64_t flags, uint64_t start, uint64_t end, us_page_region *regions,
                         uint64_t capacity, uint64_t *walk_end) {
    struct us_pm_scan_arg arg = {
        .size = sizeof arg,
        .flags = flags,
        .start = start,
        .end = end,
        .vec = (uint64_t)(uintptr_t)regions,
        .vec_len = capacity,
        .category_mask = US_PAGE_IS_WRITTEN,
        .return_mask = US_PAGE_IS_WRITTEN,
    };
    long n = ioctl(pagemap_fd, US_PAGEMAP_SCAN, &arg);
    *walk_end = arg.walk_end;
    return n;
}

long us_pagemap_scan_written(int pagemap_fd, uint64_t start, uint64_t end, us_page_region *regions,
                             uint64_t capacity, uint64_t *walk_end) {
    return pagemap_scan(pagemap_fd, US_PM_SCAN_WP_MATCHING | US_PM_SCAN_CHECK_WPASYNC, start, end, regions, capacity, walk_end);
}

long us_pagemap_peek_written(int pagemap_fd, uint64_t start, uint64_t end, us_page_region *regions,
                             uint64_t capacity, uint64_t *walk_end) {
    return pagemap_scan(pagemap_fd, US_PM_SCAN_CHECK_WPASYNC, start, end, regions, capacity, walk_end);
}

int us_tap_attach(int fd, const char *name) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    if (strlen(name) >= IFNAMSIZ) { errno = ENAMETOOLONG; return -1; }
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    return ioctl(fd, TUNSETIFF, &request);
}

int us_zero_file_range(int fd, int64_t offset, int64_t length, int punch) {
    int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

int us_enter_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int result = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}
