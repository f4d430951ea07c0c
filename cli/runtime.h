// The one device and thread policy, shared by every executable.
//
// Threads: on a small CPU the fastest split measured here is LibTorch's intra-op pool at 1
// thread while OpenBLAS (which does the big matrix multiplies) uses every core: the two
// pools otherwise fight over the same cores (2 + 2 threads on 2 cores ran 1.5-1.9x slower).
// Generation's one-token step (model/decode_step.cpp) shares its matrix-vector products among
// as many threads (model/systems/cpu_threads.h) as OpenBLAS gets.
#pragma once

#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include "cli/option_table.h"

#include <string>

namespace dracarys {

constexpr int kMaxThreads = 256;

struct RuntimeOptions {
  std::string device = "auto";   // auto | cpu | cuda | cuda:N
  int threads = 0;               // threads for matrix products (OpenBLAS, the one-token step); 0 = every core
  int intra_op_threads = 1;      // LibTorch's own pool (element-wise work)
  std::string kernels = "fast";  // attention and generation's one-token step: fast | reference
};

// Throws std::invalid_argument for thread counts out of range (--threads 0..256,
// --intra-op-threads 1..256) or an empty device name.
void check_runtime_options(const RuntimeOptions& opts);

// The BLAS thread count `opts` asks for, with 0 ("every core") resolved to the core count.
int resolved_blas_threads(const RuntimeOptions& opts);

// Applies the thread policy and returns the device to use. Throws std::invalid_argument for an
// unknown device or a CUDA device this LibTorch build cannot reach.
torch::Device apply_runtime(const RuntimeOptions& opts);

// The process's peak resident memory so far, in MB (LibTorch's own ~250 MB included).
double peak_rss_mb();

// The runtime options, described once (see cli/option_table.h). The thread counts are stored
// in a training checkpoint: BLAS results depend on them, so only the same counts continue a run
// bit for bit.
template <class Visit>
void for_each_runtime_option(RuntimeOptions& o, Visit&& visit) {
  const char* group = "Runtime";
  visit(OptionSpec("--threads", group,
                   "Threads for matrix products: OpenBLAS's, and the matrix-vector products of generation's "
                   "one-token step (0 = every core)")
            .stored("threads")
            .range(0, kMaxThreads),
        o.threads);
  visit(OptionSpec("--intra-op-threads", group, "LibTorch intra-op threads (1 measured fastest on 2 cores)")
            .stored("intra_op_threads")
            .range(1, kMaxThreads),
        o.intra_op_threads);
  visit(OptionSpec("--device", group, "auto, cpu or cuda[:N]"), o.device);
  visit(OptionSpec("--kernels", group,
                   "fast (default), or reference: attention box by box as in the diagram (model/attention.cpp), "
                   "and generation's one-token step by the model's forward(). Same arithmetic; for comparing")
            .stored("kernels")
            .one_of({"fast", "reference"}),
        o.kernels);
}

// Registers --threads, --intra-op-threads and --device on `app` (every executable that runs the model).
void add_runtime_options(CLI::App& app, RuntimeOptions& opts);

// OpenBLAS picks its kernels by the CPU's model number when it loads, and on a CPU it does not
// know (virtual machines reporting a generic "Intel Xeon Processor") falls back to Prescott's
// SSE3 kernels: measured 40 GFLOP/s where the same machine's AVX-512 kernels do 233. It reads
// OPENBLAS_CORETYPE only while loading, so where it chose Prescott on a CPU with AVX2 or AVX-512,
// this names the right kernels and starts the program again (execv, same arguments, before
// anything has been done); where OPENBLAS_CORETYPE is set already it does nothing. First thing
// in every program's main().
void use_the_cpus_blas_kernels(char** argv);

// One line describing what apply_runtime chose.
std::string runtime_summary();

}  // namespace dracarys
