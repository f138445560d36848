/* kiln CUDA backend: programmatic dependent launch (PDL, compute capability 9.0 and newer).
 *
 * A kernel launched through kcu_pdl_launch may be scheduled before the kernel ahead of it
 * on the stream has finished: its blocks start as soon as the previous grid's blocks have
 * all called kcu_pdl_trigger (or exited), run their prologue (barrier set-up, loads of
 * constant weights and biases), and block in kcu_pdl_wait until the previous grid has
 * completed and its writes are visible. At batch 1 a layer is a few microseconds, much of
 * it the launch and the first loads' latency: PDL hides those under the previous layer's
 * tail. Stream capture keeps the dependency as a programmatic edge of the CUDA graph.
 *
 * The contract, for every kernel launched this way:
 * - no read of an activation (anything an earlier kernel may write) and no global write
 *   before kcu_pdl_wait: every block calls it on every path that touches such memory, and
 *   at least one thread of every block calls it before the block exits, so that the
 *   kernel's completion implies its predecessor's (the next kernel waits on this one only);
 * - weights, biases and tensor maps (written only outside inference) may be read before.
 * kcu_pdl_wait is a no-op where the kernel was launched without the attribute. KILN_PDL=off
 * launches everything plainly (A/B runs). Included only by the kernels that follow the
 * contract. */
#pragma once
#include "cuda/kcu_device.cuh"
#include <stdlib.h>
#include <string.h>
#include <utility>

__device__ __forceinline__ void kcu_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/* The next kernel on the stream may be scheduled once every block of this one has called
 * this (or exited); it still waits for this grid's completion before touching its data. */
__device__ __forceinline__ void kcu_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* KILN_PDL, read once: 0 "off", 2 "early" (kernels trigger their dependents as they start:
 * an A/B setting), 1 otherwise (they trigger once their main loop is done, so the next
 * kernel's blocks arrive for the epilogue and the tail, not to sit beside the main loop). */
static inline int kcu_pdl_env(void) {
    static int env = -1;
    if (env < 0) {
        const char *v = getenv("KILN_PDL");
        env = v && !strcmp(v, "off") ? 0 : v && !strcmp(v, "early") ? 2 : 1;
    }
    return env;
}

/* Kernels' trigger placement: whether they trigger as they start (KILN_PDL=early). */
static inline int kcu_pdl_early(void) { return kcu_pdl_env() == 2; }

/* Whether launches take the attribute: the current device has compute capability 9.0 or
 * newer, and KILN_PDL is not "off". */
static inline bool kcu_pdl_on(void) {
    if (!kcu_pdl_env()) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return major >= 9;
}

/* kernel<<<grid, block, smem, s>>>(args...), with the programmatic-serialization attribute
 * where kcu_pdl_on; returns the launch's error. */
template <typename... P, typename... A>
static cudaError_t kcu_pdl_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                  A &&...args) {
    cudaLaunchAttribute at[1] = {};
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = kcu_pdl_on() ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e;
}
