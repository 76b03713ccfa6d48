/* simd.h: NDL_SIMD_CLONES marks a hot loop function for GCC function multi-versioning: the binary
 * carries an AVX-512, an AVX2 and a baseline copy and picks one at load time for this CPU. The
 * arithmetic is the same in every copy (ISO C mode: no FMA contraction, no fast-math), so results
 * do not depend on the copy chosen. Off under sanitizers and on other compilers/architectures. */
#ifndef NDL_SIMD_H
#define NDL_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__) && !defined(__CUDACC__)
#define NDL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NDL_SIMD_CLONES
#endif

#endif
