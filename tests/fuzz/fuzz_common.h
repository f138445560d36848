/* kiln fuzz targets: what the ONNX-fed targets share (a silent builder, network and
 * importer with a constant-size cap). */
#ifndef KILN_FUZZ_COMMON_H
#define KILN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>

#include "kiln/kiln.h"
#include "kiln/onnx.h"
#include "onnx_internal.h"

static void fz_quiet(void *user, kiln_log_level level, const char *msg) {
    (void)user;
    (void)level;
    (void)msg;
}

/* A builder that logs nothing, an empty network and a parser whose folded constants are
 * capped at const_limit bytes; aborts (a fuzzer finding) if any cannot be made. */
static inline void fz_open(int64_t const_limit, kiln_builder **b, kiln_network **net, kiln_onnx_parser **p) {
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    bd.log = fz_quiet;
    *b = NULL;
    *net = NULL;
    *p = NULL;
    if (kiln_builder_create(&bd, b) != KILN_OK || kiln_network_create(*b, net) != KILN_OK ||
        kiln_onnx_parser_create(*net, NULL, p) != KILN_OK)
        abort();
    ox_parser_set_const_limit(*p, const_limit);
}

#endif
