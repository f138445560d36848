/* Times kiln's implicit-GEMM convolution kernel (src/cuda/igemm.cu) alone on a few layer
 * shapes of YOLOv5s and ResNet-50, every tile shape, with CUDA events over back-to-back
 * launches (launch gaps included): the kernel's own speed, apart from the builder's choices.
 * Built with the CUDA backend (bench/CMakeLists.txt); run on a GPU machine:
 *   build-cuda/bench/igemm_bench [N,H,W,C,K,KERNEL,STRIDE,PAD ...]
 * (shapes on the command line replace the built-in ones). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "core/half.h"
#include "kiln/network.h"
#include "cuda/kcu.h"

static int fill(void *d, size_t n, unsigned seed) {
    uint16_t *h = malloc(n * sizeof *h);
    if (!h) return 0;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = kiln_float_to_half((float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f);
    }
    int ok = cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice) == cudaSuccess;
    free(h);
    return ok;
}

int main(int argc, char **argv) {
    /* batch, h, w, c, k, kernel, stride, pad */
    static int shapes[64][8] = {{1, 160, 160, 64, 32, 1, 1, 0},  {1, 160, 160, 32, 32, 3, 1, 1},
                                    {1, 160, 160, 64, 128, 3, 2, 1}, {1, 20, 20, 512, 256, 1, 1, 0},
                                    {1, 40, 40, 256, 256, 3, 1, 1},  {1, 20, 20, 256, 256, 3, 1, 1},
                                    {32, 56, 56, 64, 256, 1, 1, 0},  {32, 28, 28, 128, 128, 3, 1, 1}};
    size_t nshapes = 8;
    if (argc > 1) {
        nshapes = 0;
        for (int a = 1; a < argc && nshapes < 64; a++) {
            int *q = shapes[nshapes];
            if (sscanf(argv[a], "%d,%d,%d,%d,%d,%d,%d,%d", &q[0], &q[1], &q[2], &q[3], &q[4], &q[5], &q[6], &q[7]) != 8 ||
                q[0] < 1 || q[1] < 1 || q[2] < 1 || q[3] < 1 || q[4] < 1 || q[5] < 1 || q[6] < 1 || q[7] < 0) {
                fprintf(stderr, "igemm_bench: '%s' is not N,H,W,C,K,KERNEL,STRIDE,PAD\n", argv[a]);
                return 2;
            }
            nshapes++;
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "igemm_bench: no CUDA device\n");
        return 1;
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    int status = 0;
    for (size_t si = 0; si < nshapes; si++) {
        const int *q = shapes[si];
        kcu_igemm p;
        memset(&p, 0, sizeof p);
        p.n = q[0], p.h = q[1], p.w = q[2], p.c = q[3], p.k = q[4], p.kh = p.kw = q[5], p.sh = p.sw = q[6];
        p.pt = p.pl = q[7], p.dh = p.dw = 1;
        p.oh = (p.h + 2 * p.pt - p.kh) / p.sh + 1, p.ow = (p.w + 2 * p.pl - p.kw) / p.sw + 1;
        p.m = p.n * p.oh * p.ow, p.kg = p.kh * p.kw * p.c;
        p.has_act = 1, p.act.type = KILN_ACT_SILU;
        size_t nx = (size_t)p.n * p.h * p.w * p.c, nw = (size_t)p.k * p.kg, ny = (size_t)p.m * p.k, wsb = 64u << 20;
        void *x = NULL, *w = NULL, *y = NULL, *ws = NULL;
        float *bias = NULL;
        if (cudaMalloc(&x, nx * 2) || cudaMalloc(&w, nw * 2) || cudaMalloc(&y, ny * 2) ||
            cudaMalloc((void **)&bias, (size_t)p.k * 4) || cudaMalloc(&ws, wsb) || !fill(x, nx, 1) || !fill(w, nw, 2) ||
            cudaMemset(bias, 0, (size_t)p.k * 4)) {
            fprintf(stderr, "igemm_bench: out of device memory\n");
            return 1;
        }
        double flop = 2.0 * p.m * p.k * p.kg, bytes = 2.0 * (double)(nx + nw + ny);
        printf("n%d %dx%dx%d -> %d, %dx%d/%d: M %d, K %d, %.2f GFLOP, %.1f MB\n", p.n, p.h, p.w, p.c, p.k, p.kh, p.kw,
               p.sh, p.m, p.kg, flop / 1e9, bytes / 1e6);
        for (int cfg = 0; cfg < kcu_igemm_configs(); cfg++) {
            int bm, bn, split;
            kcu_igemm_tile(&p, cfg, &bm, &bn, &split);
            size_t need = kcu_igemm_workspace(&p, cfg);
            if (need > wsb) continue;
            cudaError_t err = cudaSuccess;
            for (int i = 0; i < 20 && err == cudaSuccess; i++) err = kcu_igemm_run(0, cfg, &p, x, w, bias, NULL, y, ws);
            const int iters = 200;
            cudaEventRecord(e0, 0);
            for (int i = 0; i < iters && err == cudaSuccess; i++) err = kcu_igemm_run(0, cfg, &p, x, w, bias, NULL, y, ws);
            cudaEventRecord(e1, 0);
            if (err == cudaSuccess) err = cudaEventSynchronize(e1);
            float ms = 0;
            cudaEventElapsedTime(&ms, e0, e1);
            double us = ms * 1e3 / iters;
            if (err != cudaSuccess) status = 1;
            printf("  %3dx%-3d split %2d %8.2f us  %6.1f TFLOP/s  %6.0f GB/s  %s\n", bm, bn, split, us,
                   flop / us / 1e6, bytes / us / 1e3, cudaGetErrorString(err));
        }
        cudaFree(x);
        cudaFree(w);
        cudaFree(y);
        cudaFree(bias);
        cudaFree(ws);
    }
    return status;
}
