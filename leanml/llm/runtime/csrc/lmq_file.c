/*
 * lmq_file.c -- the C side of loading a packed .lmq file: the tensor table checked against the mapped file (every
 * tensor 64-byte aligned, inside the data region, in order and not overlapping; the data region ending the file) and
 * the data region's CRC32 (zlib's polynomial, slice-by-8) compared with the header's. Python reads the header, checks
 * it too, and passes the table; nothing here trusts it.
 */
#include <stdio.h>
#include <string.h>

#include "lmq.h"

#define LMQ_ALIGN 64
#define LMQ_PREFIX 24

static void lmq_crc_tables(uint32_t t[8][256]) {
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
        for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
}

uint32_t lmq_crc32(uint32_t crc, const uint8_t *p, int64_t n) {
    uint32_t t[8][256];
    lmq_crc_tables(t);
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4); /* little-endian hosts (x86-64, aarch64) */
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
            t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
        p += 8, n -= 8;
    }
    while (n-- > 0) c = t[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
    return ~c;
}

/* The byte-at-a-time reference of lmq_crc32 (tests). */
uint32_t lmq_crc32_ref(uint32_t crc, const uint8_t *p, int64_t n) {
    uint32_t c = ~crc;
    for (int64_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

int lmq_check_file(const uint8_t *file, int64_t file_bytes, int64_t data_start, int64_t data_bytes,
                   const int64_t *spans, int32_t n, uint32_t crc, int32_t verify, char *err, size_t len) {
    if (!file && file_bytes > 0) return snprintf(err, len, "no file data"), -1;
    if (file_bytes < LMQ_PREFIX || data_start < LMQ_PREFIX || data_start % LMQ_ALIGN || data_start > file_bytes)
        return snprintf(err, len, "data region start %lld does not fit a %lld-byte file", (long long)data_start,
                        (long long)file_bytes), -1;
    if (data_bytes < 0 || data_bytes != file_bytes - data_start)
        return snprintf(err, len, "data region of %lld bytes does not end the %lld-byte file", (long long)data_bytes,
                        (long long)file_bytes), -1;
    if (n < 0 || (n > 0 && !spans)) return snprintf(err, len, "no tensor table"), -1;
    int64_t end = 0;
    for (int32_t i = 0; i < n; ++i) {
        const int64_t off = spans[2 * i], nb = spans[2 * i + 1];
        if (off < 0 || nb < 0 || off % LMQ_ALIGN || off > data_bytes || nb > data_bytes - off)
            return snprintf(err, len, "tensor %d (offset %lld, %lld bytes) is unaligned or outside the data region",
                            (int)i, (long long)off, (long long)nb), -1;
        if (nb > 0 && off < end)
            return snprintf(err, len, "tensor %d (offset %lld) overlaps the previous one (ends at %lld)", (int)i,
                            (long long)off, (long long)end), -1;
        if (nb > 0) end = off + nb;
    }
    if (verify) {
        const uint32_t got = lmq_crc32(0, file + data_start, data_bytes);
        if (got != crc)
            return snprintf(err, len, "data checksum mismatch (CRC32 0x%08x, the header says 0x%08x)", got, crc), -1;
    }
    return 0;
}
