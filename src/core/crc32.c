/* kiln internal: CRC-32 (IEEE, reflected) for plan file and timing-cache checksums, eight
 * bytes per step with eight tables (built once, on first use): table[0] is the usual
 * byte-at-a-time table, table[k][b] the CRC of byte b followed by k zero bytes, so the eight
 * lookups of one step combine into the CRC of eight bytes. About 5x faster than one byte per
 * step, which mattered: a ResNet-50 plan is ~100 MB and is checksummed at save and load. */
#include <pthread.h>

#include "core/bytes.h"

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (uint32_t i = 0; i < 256; i++) table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xFF];
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t kiln_crc32(uint32_t crc, const void *data, size_t size) {
    pthread_once(&table_once, build_table);
    const uint8_t *p = data;
    crc = ~crc;
    for (; size >= 8; size -= 8, p += 8) {
        uint32_t a = le32(p) ^ crc, b = le32(p + 4);
        crc = table[7][a & 0xFF] ^ table[6][(a >> 8) & 0xFF] ^ table[5][(a >> 16) & 0xFF] ^ table[4][a >> 24] ^
              table[3][b & 0xFF] ^ table[2][(b >> 8) & 0xFF] ^ table[1][(b >> 16) & 0xFF] ^ table[0][b >> 24];
    }
    for (; size > 0; size--, p++) crc = table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
