/* kiln CPU backend: binary element-wise ops, PRelu and select, with numpy broadcasting
 * over shapes collapsed so that inner loops are unit-stride or a broadcast scalar.
 * Arithmetic and comparisons run on float32, float16, float64, int8, uint8, int32 and int64. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/half.h"
#include "cpu/cpu.h"

#define BC_OPS 3            /* operands of the widest op (select) */
#define BC_GRAIN (1 << 14)  /* elements: below this a thread costs more than it saves */

/* A broadcast walk over the output: collapsed dims and each operand's element strides
 * (0 where it is broadcast). The innermost stride of an operand is always 0 or 1. */
typedef struct bc_plan {
    int rank;
    int64_t dims[KILN_MAX_DIMS];
    int64_t st[BC_OPS][KILN_MAX_DIMS];
    int64_t total;
} bc_plan;

static void bc_plan_make(bc_plan *p, const kiln_dims *out, const kiln_dims *const *in, int nin) {
    int n = out->nb_dims;
    int64_t st[BC_OPS][KILN_MAX_DIMS];
    memset(st, 0, sizeof st);
    for (int k = 0; k < nin; k++) {
        int64_t s = 1;
        for (int i = n - 1; i >= 0; i--) {
            int j = in[k]->nb_dims - n + i;
            int64_t dk = j >= 0 ? in[k]->d[j] : 1;
            st[k][i] = dk == 1 ? 0 : s;
            s *= dk;
        }
    }
    memset(p, 0, sizeof *p);
    p->total = kiln_dims_volume(out);
    for (int i = 0; i < n; i++) {
        if (out->d[i] == 1) continue; /* nothing moves along it */
        int r = p->rank;
        bool merge = r > 0;
        for (int k = 0; k < BC_OPS && merge; k++)
            if (p->st[k][r - 1] != st[k][i] * out->d[i]) merge = false;
        if (merge) {
            p->dims[r - 1] *= out->d[i];
            for (int k = 0; k < BC_OPS; k++) p->st[k][r - 1] = st[k][i];
            continue;
        }
        p->dims[r] = out->d[i];
        for (int k = 0; k < BC_OPS; k++) p->st[k][r] = st[k][i];
        p->rank++;
    }
    if (p->rank == 0) {
        p->rank = 1;
        p->dims[0] = 1;
    }
}

/* Processes n output elements; s* say whether the operand advances (1) or repeats (0).
 * Returns non-zero if some element hit an integer division by zero. */
typedef int (*bc_row_fn)(void *o, const void *a, const void *b, const void *c, int sa, int sb, int sc, int64_t n);

typedef struct bc_run {
    const bc_plan *p;
    bc_row_fn row;
    char *out;
    const char *in[BC_OPS];
    size_t oes, es[BC_OPS];
    atomic_int bad;
} bc_run;

static void bc_chunk(void *arg, int64_t begin, int64_t end) {
    bc_run *r = arg;
    const bc_plan *p = r->p;
    const int R = p->rank;
    int64_t idx[KILN_MAX_DIMS], off[BC_OPS] = {0, 0, 0}, rem = begin;
    for (int d = R - 1; d >= 0; d--) {
        idx[d] = rem % p->dims[d];
        rem /= p->dims[d];
        for (int k = 0; k < BC_OPS; k++) off[k] += idx[d] * p->st[k][d];
    }
    const int64_t L = p->dims[R - 1];
    int s[BC_OPS];
    for (int k = 0; k < BC_OPS; k++) s[k] = p->st[k][R - 1] != 0;
    int bad = 0;
    for (int64_t pos = begin; pos < end;) {
        int64_t n = KILN_MIN(L - idx[R - 1], end - pos);
        const void *ptr[BC_OPS];
        for (int k = 0; k < BC_OPS; k++) ptr[k] = r->in[k] ? r->in[k] + off[k] * (int64_t)r->es[k] : NULL;
        bad |= r->row(r->out + pos * (int64_t)r->oes, ptr[0], ptr[1], ptr[2], s[0], s[1], s[2], n);
        pos += n;
        idx[R - 1] += n;
        for (int k = 0; k < BC_OPS; k++) off[k] += n * p->st[k][R - 1];
        if (idx[R - 1] < L || pos >= end) continue;
        /* carry into the outer axes */
        for (int k = 0; k < BC_OPS; k++) off[k] -= L * p->st[k][R - 1];
        idx[R - 1] = 0;
        for (int d = R - 2; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < BC_OPS; k++) off[k] += p->st[k][d];
            if (idx[d] < p->dims[d]) break;
            for (int k = 0; k < BC_OPS; k++) off[k] -= p->dims[d] * p->st[k][d];
            idx[d] = 0;
        }
    }
    if (bad) atomic_store(&r->bad, 1);
}

/* Runs row over the plan; returns true if any row reported a bad element. */
static bool bc_execute(kcpu_exec *x, const bc_plan *p, bc_row_fn row, void *out, size_t oes, const void *const *in,
                       const size_t *es, int nin) {
    if (p->total <= 0) return false;
    bc_run r;
    memset(&r, 0, sizeof r);
    r.p = p;
    r.row = row;
    r.out = out;
    r.oes = oes;
    for (int k = 0; k < nin; k++) {
        r.in[k] = in[k];
        r.es[k] = es[k];
    }
    atomic_init(&r.bad, 0);
    kcpu_parallel_for(x, p->total, BC_GRAIN, bc_chunk, &r);
    return atomic_load(&r.bad) != 0;
}

/* ---- row kernels ----
 * One function per (op, dtype). The output may be the same buffer as operand a (in-place):
 * every loop reads a[i] before it writes o[i] and never reads o. EXPR sees x (from a) and
 * y (from b) as the compute type TC, loaded from the storage type TI by LD; ST turns its
 * result into the output type TO. BAD flags elements whose result is undefined (integer
 * division by zero). */
#define ROW_ID(v) (v)
#define ROW_BIN_CVT(name, TI, TC, TO, LD, ST, EXPR, BAD)                                                   \
    static int name(void *vo, const void *va, const void *vb, const void *vc, int sa, int sb, int sc,     \
                    int64_t n) {                                                                           \
        (void)vc;                                                                                          \
        (void)sc;                                                                                          \
        TO *o = vo;                                                                                        \
        const TI *a = va, *b = vb;                                                                         \
        int bad = 0;                                                                                       \
        if (sa && sb) {                                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                              \
                const TC x = LD(a[i]), y = LD(b[i]);                                                       \
                (void)y;                                                                                   \
                bad |= (BAD);                                                                              \
                o[i] = ST(EXPR);                                                                           \
            }                                                                                              \
        } else if (sa) {                                                                                   \
            const TC y = LD(b[0]);                                                                         \
            (void)y;                                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                              \
                const TC x = LD(a[i]);                                                                     \
                bad |= (BAD);                                                                              \
                o[i] = ST(EXPR);                                                                           \
            }                                                                                              \
        } else if (sb) {                                                                                   \
            const TC x = LD(a[0]);                                                                         \
            for (int64_t i = 0; i < n; i++) {                                                              \
                const TC y = LD(b[i]);                                                                     \
                (void)y;                                                                                   \
                bad |= (BAD);                                                                              \
                o[i] = ST(EXPR);                                                                           \
            }                                                                                              \
        } else {                                                                                           \
            const TC x = LD(a[0]), y = LD(b[0]);                                                           \
            (void)y;                                                                                       \
            const TO v = ST(EXPR);                                                                         \
            bad |= (BAD);                                                                                  \
            for (int64_t i = 0; i < n; i++) o[i] = v;                                                      \
        }                                                                                                  \
        return bad;                                                                                        \
    }
/* Operands computed in their own type. */
#define ROW_BIN(name, TI, TO, EXPR, BAD) ROW_BIN_CVT(name, TI, TI, TO, ROW_ID, ROW_ID, EXPR, BAD)

/* Integer helpers: wrap on overflow like two's complement hardware (signed overflow is
 * undefined in C), and never trap (x86 faults on INT_MIN / -1 and on / 0). */
#define INT_HELPERS(S, T, U)                                                                               \
    static inline T add_##S(T x, T y) { return (T)((U)x + (U)y); }                                        \
    static inline T sub_##S(T x, T y) { return (T)((U)x - (U)y); }                                        \
    static inline T mul_##S(T x, T y) { return (T)((U)x * (U)y); }                                        \
    static inline T div_##S(T x, T y) { return y == 0 ? 0 : y == -1 ? (T)(0 - (U)x) : (T)(x / y); }      \
    static inline T fmod_##S(T x, T y) { return y == 0 || y == -1 ? 0 : (T)(x % y); }                    \
    static inline T mod_##S(T x, T y) {                                                                    \
        T r = fmod_##S(x, y);                                                                              \
        return r != 0 && ((r < 0) != (y < 0)) ? (T)(r + y) : r;                                            \
    }                                                                                                      \
    static inline T pow_##S(T x, T y) {                                                                    \
        if (y < 0) return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;                                  \
        U r = 1, b = (U)x;                                                                                 \
        for (; y; y >>= 1) {                                                                               \
            if (y & 1) r *= b;                                                                             \
            b *= b;                                                                                        \
        }                                                                                                  \
        return (T)r;                                                                                       \
    }
INT_HELPERS(i8, int8_t, uint8_t)
INT_HELPERS(i32, int32_t, uint32_t)
INT_HELPERS(i64, int64_t, uint64_t)

/* Unsigned: wrap-around is defined; only division by zero needs a guard. MOD and FMOD agree
 * (no signs). The power squares in 32 bits: the low 8 bits of the result are still exact. */
#define UINT_HELPERS(S, T)                                                                                 \
    static inline T add_##S(T x, T y) { return (T)(x + y); }                                              \
    static inline T sub_##S(T x, T y) { return (T)(x - y); }                                              \
    static inline T mul_##S(T x, T y) { return (T)((uint32_t)x * (uint32_t)y); }                          \
    static inline T div_##S(T x, T y) { return y == 0 ? 0 : (T)(x / y); }                                 \
    static inline T mod_##S(T x, T y) { return y == 0 ? 0 : (T)(x % y); }                                 \
    static inline T pow_##S(T x, T y) {                                                                    \
        uint32_t r = 1, b = x;                                                                             \
        for (; y; y >>= 1) {                                                                               \
            if (y & 1) r *= b;                                                                             \
            b *= b;                                                                                        \
        }                                                                                                  \
        return (T)r;                                                                                       \
    }
UINT_HELPERS(u8, uint8_t)

static inline float mod_f32(float x, float y) {
    float r = fmodf(x, y);
    return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
}
static inline double mod_f64(double x, double y) {
    double r = fmod(x, y);
    return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
}
/* Max/min that propagate NaN from either side, as numpy and ONNX Runtime do. */
#define FMAX(x, y) (((x) > (y) || (x) != (x)) ? (x) : (y))
#define FMIN(x, y) (((x) < (y) || (x) != (x)) ? (x) : (y))

ROW_BIN(f32_add, float, float, x + y, 0)
ROW_BIN(f32_sub, float, float, x - y, 0)
ROW_BIN(f32_mul, float, float, x * y, 0)
ROW_BIN(f32_div, float, float, x / y, 0)
ROW_BIN(f32_max, float, float, FMAX(x, y), 0)
ROW_BIN(f32_min, float, float, FMIN(x, y), 0)
ROW_BIN(f32_powg, float, float, powf(x, y), 0)
ROW_BIN(f32_sq, float, float, x * x, 0)
ROW_BIN(f32_mod, float, float, mod_f32(x, y), 0)
ROW_BIN(f32_fmod, float, float, fmodf(x, y), 0)
ROW_BIN(f32_prelu, float, float, x >= 0 ? x : x * y, 0)

/* Squares and square roots dominate real exponents: skip powf for them. */
static int f32_pow(void *o, const void *a, const void *b, const void *c, int sa, int sb, int sc, int64_t n) {
    if (!sb && *(const float *)b == 2.0f) return f32_sq(o, a, b, c, sa, sb, sc, n);
    return f32_powg(o, a, b, c, sa, sb, sc, n);
}

#define ROWS_INT(S, T)                                                                                     \
    ROW_BIN(S##_add, T, T, add_##S(x, y), 0)                                                               \
    ROW_BIN(S##_sub, T, T, sub_##S(x, y), 0)                                                               \
    ROW_BIN(S##_mul, T, T, mul_##S(x, y), 0)                                                               \
    ROW_BIN(S##_div, T, T, div_##S(x, y), y == 0)                                                          \
    ROW_BIN(S##_max, T, T, x > y ? x : y, 0)                                                               \
    ROW_BIN(S##_min, T, T, x < y ? x : y, 0)                                                               \
    ROW_BIN(S##_pow, T, T, pow_##S(x, y), y < 0 && x == 0)                                                 \
    ROW_BIN(S##_mod, T, T, mod_##S(x, y), y == 0)                                                          \
    ROW_BIN(S##_fmod, T, T, fmod_##S(x, y), y == 0)
ROWS_INT(i8, int8_t)
ROWS_INT(i32, int32_t)
ROWS_INT(i64, int64_t)

#define ROWS_UINT(S, T)                                                                                    \
    ROW_BIN(S##_add, T, T, add_##S(x, y), 0)                                                               \
    ROW_BIN(S##_sub, T, T, sub_##S(x, y), 0)                                                               \
    ROW_BIN(S##_mul, T, T, mul_##S(x, y), 0)                                                               \
    ROW_BIN(S##_div, T, T, div_##S(x, y), y == 0)                                                          \
    ROW_BIN(S##_max, T, T, x > y ? x : y, 0)                                                               \
    ROW_BIN(S##_min, T, T, x < y ? x : y, 0)                                                               \
    ROW_BIN(S##_pow, T, T, pow_##S(x, y), 0)                                                               \
    ROW_BIN(S##_mod, T, T, mod_##S(x, y), y == 0)                                                          \
    ROW_BIN(S##_fmod, T, T, mod_##S(x, y), y == 0)
ROWS_UINT(u8, uint8_t)

/* float64 in double; float16 in float32, rounded once to half on the way out. For + - * /
 * float32 carries more than twice half's precision plus two bits, so rounding its result to
 * half gives the correctly rounded half result. */
#define ROWS_FLOAT(S, TI, TC, LD, ST, POW, FMOD, MOD)                                                      \
    ROW_BIN_CVT(S##_add, TI, TC, TI, LD, ST, x + y, 0)                                                     \
    ROW_BIN_CVT(S##_sub, TI, TC, TI, LD, ST, x - y, 0)                                                     \
    ROW_BIN_CVT(S##_mul, TI, TC, TI, LD, ST, x * y, 0)                                                     \
    ROW_BIN_CVT(S##_div, TI, TC, TI, LD, ST, x / y, 0)                                                     \
    ROW_BIN_CVT(S##_max, TI, TC, TI, LD, ST, FMAX(x, y), 0)                                                \
    ROW_BIN_CVT(S##_min, TI, TC, TI, LD, ST, FMIN(x, y), 0)                                                \
    ROW_BIN_CVT(S##_pow, TI, TC, TI, LD, ST, POW(x, y), 0)                                                 \
    ROW_BIN_CVT(S##_mod, TI, TC, TI, LD, ST, MOD(x, y), 0)                                                 \
    ROW_BIN_CVT(S##_fmod, TI, TC, TI, LD, ST, FMOD(x, y), 0)                                               \
    ROW_BIN_CVT(S##_eq, TI, TC, uint8_t, LD, ROW_ID, x == y, 0)                                            \
    ROW_BIN_CVT(S##_lt, TI, TC, uint8_t, LD, ROW_ID, x < y, 0)                                             \
    ROW_BIN_CVT(S##_gt, TI, TC, uint8_t, LD, ROW_ID, x > y, 0)                                             \
    ROW_BIN_CVT(S##_le, TI, TC, uint8_t, LD, ROW_ID, x <= y, 0)                                            \
    ROW_BIN_CVT(S##_ge, TI, TC, uint8_t, LD, ROW_ID, x >= y, 0)
ROWS_FLOAT(f64, double, double, ROW_ID, ROW_ID, pow, fmod, mod_f64)
ROWS_FLOAT(f16, uint16_t, float, kiln_half_to_float, kiln_float_to_half, powf, fmodf, mod_f32)

#define ROWS_CMP(S, T)                                                                                     \
    ROW_BIN(S##_eq, T, uint8_t, x == y, 0)                                                                 \
    ROW_BIN(S##_lt, T, uint8_t, x < y, 0)                                                                  \
    ROW_BIN(S##_gt, T, uint8_t, x > y, 0)                                                                  \
    ROW_BIN(S##_le, T, uint8_t, x <= y, 0)                                                                 \
    ROW_BIN(S##_ge, T, uint8_t, x >= y, 0)
ROWS_CMP(f32, float)
ROWS_CMP(i8, int8_t)
ROWS_CMP(u8, uint8_t)
ROWS_CMP(i32, int32_t)
ROWS_CMP(i64, int64_t)
ROWS_CMP(b8, uint8_t)

ROW_BIN(b8_and, uint8_t, uint8_t, (x != 0) & (y != 0), 0)
ROW_BIN(b8_or, uint8_t, uint8_t, (x != 0) | (y != 0), 0)
ROW_BIN(b8_xor, uint8_t, uint8_t, (x != 0) ^ (y != 0), 0)

#define ARITH_TABLE(S, POW)                                                                                \
    [KILN_ELT_ADD] = S##_add, [KILN_ELT_SUB] = S##_sub, [KILN_ELT_MUL] = S##_mul, [KILN_ELT_DIV] = S##_div, \
    [KILN_ELT_MAX] = S##_max, [KILN_ELT_MIN] = S##_min, [KILN_ELT_POW] = POW, [KILN_ELT_MOD] = S##_mod,     \
    [KILN_ELT_FMOD] = S##_fmod
#define CMP_TABLE(S)                                                                                       \
    [KILN_ELT_EQUAL] = S##_eq, [KILN_ELT_LESS] = S##_lt, [KILN_ELT_GREATER] = S##_gt,                      \
    [KILN_ELT_LESS_EQUAL] = S##_le, [KILN_ELT_GREATER_EQUAL] = S##_ge

static const bc_row_fn rows_f32[KILN_ELT_COUNT] = {ARITH_TABLE(f32, f32_pow), CMP_TABLE(f32)};
static const bc_row_fn rows_f64[KILN_ELT_COUNT] = {ARITH_TABLE(f64, f64_pow), CMP_TABLE(f64)};
static const bc_row_fn rows_f16[KILN_ELT_COUNT] = {ARITH_TABLE(f16, f16_pow), CMP_TABLE(f16)};
static const bc_row_fn rows_i8[KILN_ELT_COUNT] = {ARITH_TABLE(i8, i8_pow), CMP_TABLE(i8)};
static const bc_row_fn rows_u8[KILN_ELT_COUNT] = {ARITH_TABLE(u8, u8_pow), CMP_TABLE(u8)};
static const bc_row_fn rows_i32[KILN_ELT_COUNT] = {ARITH_TABLE(i32, i32_pow), CMP_TABLE(i32)};
static const bc_row_fn rows_i64[KILN_ELT_COUNT] = {ARITH_TABLE(i64, i64_pow), CMP_TABLE(i64)};
static const bc_row_fn rows_b8[KILN_ELT_COUNT] = {
    CMP_TABLE(b8), [KILN_ELT_AND] = b8_and, [KILN_ELT_OR] = b8_or, [KILN_ELT_XOR] = b8_xor};

static bc_row_fn elt_row(kiln_dtype t, kiln_elementwise_op op) {
    if ((unsigned)op >= KILN_ELT_COUNT) return NULL;
    switch (t) {
    case KILN_FLOAT32: return rows_f32[op];
    case KILN_FLOAT64: return rows_f64[op];
    case KILN_FLOAT16: return rows_f16[op];
    case KILN_INT8: return rows_i8[op];
    case KILN_UINT8: return rows_u8[op];
    case KILN_INT32: return rows_i32[op];
    case KILN_INT64: return rows_i64[op];
    case KILN_BOOL: return rows_b8[op];
    default: return NULL;
    }
}

/* ---- layers ---- */

typedef struct bc_state {
    bc_plan plan;
    bc_row_fn row;
    size_t oes, es[BC_OPS];
} bc_state;

static kiln_status bc_prepare(const kiln_layer *l, const kiln_env *env, void **state, bc_row_fn row) {
    bc_state *s = kiln_alloc(env, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    const kiln_dims *in[BC_OPS], *out = &l->outputs[0]->dims;
    for (int k = 0; k < l->nb_inputs; k++) {
        in[k] = &l->inputs[k]->dims;
        s->es[k] = kiln_dtype_size(l->inputs[k]->dtype);
        /* the walk trusts these shapes: an operand that does not stretch to the output
         * would be read out of bounds */
        bool fits = in[k]->nb_dims <= out->nb_dims;
        for (int i = 0; fits && i < in[k]->nb_dims; i++) {
            int64_t dk = in[k]->d[i], dout = out->d[out->nb_dims - in[k]->nb_dims + i];
            fits = dk == 1 || dk == dout;
        }
        if (!fits) {
            kiln_free(env, s);
            return kg_layer_error(l, KILN_ERR_INTERNAL, "input %d does not broadcast to the output shape", k);
        }
    }
    bc_plan_make(&s->plan, out, in, l->nb_inputs);
    s->row = row;
    s->oes = kiln_dtype_size(l->outputs[0]->dtype);
    *state = s;
    return KILN_OK;
}

static kiln_status elt_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    *scratch = 0;
    bc_row_fn row = elt_row(l->inputs[0]->dtype, l->p.elt);
    if (!row || l->inputs[1]->dtype != l->inputs[0]->dtype)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for op %d on %s inputs", (int)l->p.elt,
                              kiln_dtype_name(l->inputs[0]->dtype));
    return bc_prepare(l, env, state, row);
}

static kiln_status bc_layer_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                                kcpu_exec *x) {
    const bc_state *s = state;
    if (bc_execute(x, &s->plan, s->row, out[0], s->oes, in, s->es, l->nb_inputs))
        return kg_layer_error(l, KILN_ERR_RUNTIME, "integer division by zero (%s)",
                              l->p.elt == KILN_ELT_POW ? "zero to a negative power" : "zero divisor");
    if (l->outputs[0]->dtype == KILN_FLOAT32) kcpu_epilogue(l, out[0], NULL, x);
    return KILN_OK;
}

const kcpu_kernel kcpu_elementwise = {elt_prepare, bc_layer_run, NULL};

static kiln_status prelu_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || l->inputs[1]->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CPU kernel takes float32 only");
    return bc_prepare(l, env, state, f32_prelu);
}

const kcpu_kernel kcpu_prelu = {prelu_prepare, bc_layer_run, NULL};

/* Select moves elements by size, so it serves every dtype. */
#define ROW_SEL(name, T)                                                                                   \
    static int name(void *vo, const void *va, const void *vb, const void *vc, int sc, int sa, int sb,     \
                    int64_t n) {                                                                           \
        T *o = vo;                                                                                         \
        const uint8_t *c = va;                                                                             \
        const T *a = vb, *b = vc;                                                                          \
        if (sc && sa && sb) {                                                                              \
            for (int64_t i = 0; i < n; i++) o[i] = c[i] ? a[i] : b[i];                                     \
        } else {                                                                                           \
            for (int64_t i = 0; i < n; i++) o[i] = c[i * sc] ? a[i * sa] : b[i * sb];                      \
        }                                                                                                  \
        return 0;                                                                                          \
    }
ROW_SEL(sel8, uint8_t)
ROW_SEL(sel16, uint16_t)
ROW_SEL(sel32, uint32_t)
ROW_SEL(sel64, uint64_t)

static kiln_status select_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    *scratch = 0;
    bc_row_fn row = NULL;
    switch (kiln_dtype_size(l->outputs[0]->dtype)) {
    case 1: row = sel8; break;
    case 2: row = sel16; break;
    case 4: row = sel32; break;
    case 8: row = sel64; break;
    default: break;
    }
    if (!row || l->inputs[0]->dtype != KILN_BOOL)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for %s values with a %s condition",
                              kiln_dtype_name(l->outputs[0]->dtype), kiln_dtype_name(l->inputs[0]->dtype));
    return bc_prepare(l, env, state, row);
}

const kcpu_kernel kcpu_select = {select_prepare, bc_layer_run, NULL};
