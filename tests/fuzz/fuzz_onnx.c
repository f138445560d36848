/* libFuzzer target: the ONNX importer on arbitrary bytes. Every input must end in
 * KILN_OK or an error with at least one message: no crash, no leak, no unbounded
 * allocation (folded constants are capped lower than usual here). */
#include <stdio.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_builder *b;
    kiln_network *net;
    kiln_onnx_parser *p;
    fz_open((int64_t)64 << 20, &b, &net, &p);
    kiln_status st = kiln_onnx_parse_memory(p, data, size, NULL);
    /* a failure must always say why */
    if (st != KILN_OK && kiln_onnx_num_errors(p) == 0) abort();
    for (int i = 0; i < kiln_onnx_num_errors(p); i++)
        if (!kiln_onnx_error(p, i)) abort();
    kiln_network_destroy(net);
    kiln_onnx_parser_destroy(p);
    kiln_builder_destroy(b);
    /* the model-info reader (kiln inspect) parses the same untrusted bytes */
    kiln_onnx_model_info *info = NULL;
    if (kiln_onnx_read_model_info(data, size, &info) == KILN_OK) {
        if (!info) abort();
        kiln_onnx_model_info_destroy(info);
    } else if (info) {
        abort();
    }
    return 0;
}
