// DRACARYS_VECTOR_CLONES: on x86-64, a function marked with it is compiled twice, for
// x86-64-v3 (AVX2 with FMA) and for the baseline, and the loader picks the one this CPU runs
// (GCC's and Clang's target_clones). The project's loops are written so the compiler turns them
// into vector instructions: fixed-width groups of independent sums, no branches inside.
// (Not under AddressSanitizer, whose start-up the loader's choice would run before.)
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRACARYS_NO_CLONES
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DRACARYS_NO_CLONES
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DRACARYS_NO_CLONES)
#define DRACARYS_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DRACARYS_VECTOR_CLONES
#endif

// The helpers a DRACARYS_VECTOR_CLONES function calls: inlined into each clone, so that they too
// are compiled for its instruction set.
#if defined(__GNUC__) || defined(__clang__)
#define DRACARYS_INLINE inline __attribute__((always_inline))
#else
#define DRACARYS_INLINE inline
#endif
