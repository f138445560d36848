/* kiln internal: which backends this build has. */
#include "runtime/backend.h"

const kb_backend *kb_backend_for(const kiln_env *env, kiln_device device, kiln_status *why) {
    kiln_status st;
    switch (device) {
    case KILN_DEVICE_CPU: return &kb_cpu_backend;
    case KILN_DEVICE_CUDA: {
#ifdef KILN_HAVE_CUDA
        const kb_backend *b = kb_cuda_backend_get(env, &st);
        if (b) return b;
#else
        st = kiln_error(env, KILN_ERR_UNSUPPORTED, "CUDA requested, but this kiln was built without the CUDA backend");
#endif
        break;
    }
    default: st = kiln_error(env, KILN_ERR_INVALID_ARGUMENT, "unknown device %d", (int)device); break;
    }
    if (why) *why = st;
    return NULL;
}
