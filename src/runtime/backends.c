/* kiln internal: which backends this build has. */
#include "runtime/backend.h"

const kb_backend *kb_backend_for(const kiln_env *env, kiln_device device) {
    switch (device) {
    case KILN_DEVICE_CPU: return &kb_cpu_backend;
    case KILN_DEVICE_CUDA:
#ifdef KILN_HAVE_CUDA
        return kb_cuda_backend_get(env);
#else
        kiln_error(env, KILN_ERR_UNSUPPORTED, "CUDA requested, but this kiln was built without the CUDA backend");
        return NULL;
#endif
    }
    kiln_error(env, KILN_ERR_INVALID_ARGUMENT, "unknown device %d", (int)device);
    return NULL;
}
