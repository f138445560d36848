/* kiln internal: explicit little-endian byte writing and bounds-checked reading, for the
 * plan file format. A reader never reads past its end: a short or corrupt input sets
 * `bad` and every later read returns zeros. */
#ifndef KILN_CORE_BYTES_H
#define KILN_CORE_BYTES_H

#include <string.h>

#include "core/common.h"

typedef struct kb_writer {
    const kiln_env *env;
    uint8_t *data;
    size_t size, cap;
    bool oom;
    bool count_only; /* sizes only: no data is stored (a layout pass) */
} kb_writer;

typedef struct kb_reader {
    const uint8_t *data;
    size_t size, pos;
    bool bad;
} kb_reader;

static inline bool kbw_reserve(kb_writer *w, size_t n) {
    if (w->oom) return false;
    if (w->size + n <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->size + n) cap *= 2;
    uint8_t *d = kiln_alloc(w->env, cap);
    if (!d) {
        w->oom = true;
        return false;
    }
    if (w->size) memcpy(d, w->data, w->size);
    kiln_free(w->env, w->data);
    w->data = d;
    w->cap = cap;
    return true;
}

static inline void kbw_bytes(kb_writer *w, const void *p, size_t n) {
    if (w->count_only) {
        w->size += n;
        return;
    }
    if (n && kbw_reserve(w, n)) {
        memcpy(w->data + w->size, p, n);
        w->size += n;
    }
}
static inline void kbw_u8(kb_writer *w, uint8_t v) { kbw_bytes(w, &v, 1); }
static inline void kbw_u32(kb_writer *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    kbw_bytes(w, b, 4);
}
static inline void kbw_u64(kb_writer *w, uint64_t v) {
    kbw_u32(w, (uint32_t)v);
    kbw_u32(w, (uint32_t)(v >> 32));
}
static inline void kbw_i64(kb_writer *w, int64_t v) { kbw_u64(w, (uint64_t)v); }
static inline void kbw_f32(kb_writer *w, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    kbw_u32(w, v);
}
static inline void kbw_str(kb_writer *w, const char *s) {
    size_t n = strlen(s);
    kbw_u32(w, (uint32_t)n);
    kbw_bytes(w, s, n);
}
static inline void kbw_align(kb_writer *w, size_t a) {
    static const uint8_t zeros[64] = {0};
    while (w->size % a) kbw_bytes(w, zeros, KILN_MIN(a - w->size % a, sizeof zeros));
}
static inline void kbw_patch_u64(kb_writer *w, size_t at, uint64_t v) {
    if (w->oom || w->count_only || at + 8 > w->size) return;
    for (int i = 0; i < 8; i++) w->data[at + i] = (uint8_t)(v >> (8 * i));
}
static inline void kbw_patch_u32(kb_writer *w, size_t at, uint32_t v) {
    if (w->oom || w->count_only || at + 4 > w->size) return;
    for (int i = 0; i < 4; i++) w->data[at + i] = (uint8_t)(v >> (8 * i));
}

static inline const uint8_t *kbr_take(kb_reader *r, size_t n) {
    if (r->bad || n > r->size - r->pos) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->data + r->pos;
    r->pos += n;
    return p;
}
static inline uint8_t kbr_u8(kb_reader *r) {
    const uint8_t *p = kbr_take(r, 1);
    return p ? p[0] : 0;
}
static inline uint32_t kbr_u32(kb_reader *r) {
    const uint8_t *p = kbr_take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}
static inline uint64_t kbr_u64(kb_reader *r) {
    uint64_t lo = kbr_u32(r);
    return lo | (uint64_t)kbr_u32(r) << 32;
}
static inline int64_t kbr_i64(kb_reader *r) { return (int64_t)kbr_u64(r); }
static inline float kbr_f32(kb_reader *r) {
    uint32_t v = kbr_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
/* A string of at most `max` bytes copied into buf (NUL-terminated). */
static inline void kbr_str(kb_reader *r, char *buf, size_t max) {
    uint32_t n = kbr_u32(r);
    if (n >= max) {
        r->bad = true;
        buf[0] = 0;
        return;
    }
    const uint8_t *p = kbr_take(r, n);
    if (p) memcpy(buf, p, n);
    buf[p ? n : 0] = 0;
}

/* 64-bit FNV-1a of n bytes (hash tables, cache-key digests). */
static inline uint64_t kiln_fnv1a64(const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* CRC-32 (IEEE 802.3 polynomial, reflected), as zlib computes it. */
uint32_t kiln_crc32(uint32_t crc, const void *data, size_t size);

#endif
