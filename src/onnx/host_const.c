/* kiln ONNX importer: element access on host constants, in double for floating types
 * and int64 for the others, so one folding routine serves every dtype. */
#include <math.h>
#include <string.h>

#include "onnx_internal.h"

bool ox_dtype_is_float(kiln_dtype t) {
    return t == KILN_FLOAT32 || t == KILN_FLOAT64 || t == KILN_FLOAT16 || t == KILN_BFLOAT16;
}

float ox_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0)
            bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ox_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* round to nearest even; may carry into exp */
    return (uint16_t)h;
}

float ox_bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ox_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

double ox_get_f(const ox_const *c, int64_t i) {
    switch (c->dtype) {
    case KILN_FLOAT32:
        return ((const float *)c->data)[i];
    case KILN_FLOAT64:
        return ((const double *)c->data)[i];
    case KILN_FLOAT16:
        return ox_half_to_float(((const uint16_t *)c->data)[i]);
    case KILN_BFLOAT16:
        return ox_bf16_to_float(((const uint16_t *)c->data)[i]);
    default:
        return (double)ox_get_i(c, i);
    }
}

int64_t ox_get_i(const ox_const *c, int64_t i) {
    switch (c->dtype) {
    case KILN_INT64:
        return ((const int64_t *)c->data)[i];
    case KILN_INT32:
        return ((const int32_t *)c->data)[i];
    case KILN_INT8:
        return ((const int8_t *)c->data)[i];
    case KILN_UINT8:
    case KILN_BOOL:
        return ((const uint8_t *)c->data)[i];
    default: {
        double v = ox_get_f(c, i);
        if (!(v == v)) return 0;
        if (v >= 9.2e18) return INT64_MAX;
        if (v <= -9.2e18) return INT64_MIN;
        return (int64_t)v;
    }
    }
}

void ox_set_f(ox_const *c, int64_t i, double v) {
    switch (c->dtype) {
    case KILN_FLOAT32:
        ((float *)c->data)[i] = (float)v;
        break;
    case KILN_FLOAT64:
        ((double *)c->data)[i] = v;
        break;
    case KILN_FLOAT16:
        ((uint16_t *)c->data)[i] = ox_float_to_half((float)v);
        break;
    case KILN_BFLOAT16:
        ((uint16_t *)c->data)[i] = ox_float_to_bf16((float)v);
        break;
    case KILN_BOOL:
        ((uint8_t *)c->data)[i] = v != 0;
        break;
    default: {
        /* float -> int conversion as C does (truncation), guarded against UB */
        int64_t x = 0;
        if (v == v) x = v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
        ox_set_i(c, i, x);
    }
    }
}

void ox_set_i(ox_const *c, int64_t i, int64_t v) {
    switch (c->dtype) {
    case KILN_INT64:
        ((int64_t *)c->data)[i] = v;
        break;
    case KILN_INT32:
        ((int32_t *)c->data)[i] = (int32_t)(uint32_t)v;
        break;
    case KILN_INT8:
        ((int8_t *)c->data)[i] = (int8_t)(uint8_t)v;
        break;
    case KILN_UINT8:
        ((uint8_t *)c->data)[i] = (uint8_t)v;
        break;
    case KILN_BOOL:
        ((uint8_t *)c->data)[i] = v != 0;
        break;
    default:
        ox_set_f(c, i, (double)v);
    }
}

void ox_const_convert(const ox_const *src, ox_const *dst) {
    bool fsrc = ox_dtype_is_float(src->dtype), fdst = ox_dtype_is_float(dst->dtype);
    for (int64_t i = 0; i < src->count; i++) {
        if (fsrc && dst->dtype == KILN_BOOL)
            ox_set_i(dst, i, ox_get_f(src, i) != 0);
        else if (fsrc || fdst)
            ox_set_f(dst, i, ox_get_f(src, i));
        else
            ox_set_i(dst, i, ox_get_i(src, i));
    }
}

void ox_strides(const kiln_dims *d, int64_t *strides) {
    int64_t s = 1;
    for (int i = d->nb_dims - 1; i >= 0; i--) {
        strides[i] = s;
        s *= d->d[i];
    }
}

void ox_bcast_init(ox_bcast *b, const kiln_dims *out, const kiln_dims *in) {
    memset(b, 0, sizeof *b);
    b->rank = out->nb_dims;
    int64_t st[KILN_MAX_DIMS];
    ox_strides(in, st);
    for (int i = 0; i < out->nb_dims; i++) {
        b->out_d[i] = out->d[i];
        int k = in->nb_dims - out->nb_dims + i;
        b->in_stride[i] = k >= 0 && in->d[k] != 1 ? st[k] : 0;
    }
}

int64_t ox_bcast_index(const ox_bcast *b, int64_t i) {
    int64_t idx = 0;
    for (int k = b->rank - 1; k >= 0; k--) {
        int64_t d = b->out_d[k];
        if (d > 0) {
            idx += (i % d) * b->in_stride[k];
            i /= d;
        }
    }
    return idx;
}
