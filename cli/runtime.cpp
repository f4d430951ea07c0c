#include "cli/runtime.h"

#include "cli/option_checks.h"
#include "model/systems/blas_threads.h"
#include "model/systems/cpu_threads.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace dracarys {

namespace {
std::string g_summary;

// The kernels OpenBLAS chose when it loaded ("Haswell", "SkylakeX", ...), or "" when it is not the BLAS.
std::string blas_core() {
  using NameFn = char* (*)();
  auto name = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return name ? std::string(name()) : std::string();
}

// The OpenBLAS kernels this CPU can run, by what it says it does: "" when none beats the baseline.
const char* blas_core_for_this_cpu() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return "";
}
}  // namespace

void use_the_cpus_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice, or this process's second start
  std::string core = blas_core();
  for (auto& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const char* better = blas_core_for_this_cpu();
  if (core != "prescott" || !*better) return;
  setenv("OPENBLAS_CORETYPE", better, 1);
  execv("/proc/self/exe", argv);  // only returns where it failed: run on with the kernels loaded
}

void check_runtime_options(const RuntimeOptions& opts) {
  RuntimeOptions copy = opts;
  for_each_runtime_option(copy, [](const OptionSpec& spec, const auto& member) { check_range(spec, member); });
}

int resolved_blas_threads(const RuntimeOptions& opts) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return opts.threads > 0 ? opts.threads : cores;
}

torch::Device apply_runtime(const RuntimeOptions& opts) {
  check_runtime_options(opts);
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  const int blas = resolved_blas_threads(opts);
  torch::set_num_threads(opts.intra_op_threads);
  const int blas_set = set_blas_threads(blas);
  set_cpu_threads(blas);  // generation's one-token step shares its products' rows the same way
  // Keep freed tensor memory in the process instead of returning it to the kernel every step:
  // measured ~14,700 -> ~100 page faults per training step.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);

  torch::Device device(torch::kCPU);
  if (opts.device == "auto") {
    device = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  } else if (opts.device == "cpu" || opts.device.rfind("cuda", 0) == 0) {
    try {
      device = torch::Device(opts.device);
    } catch (const std::exception&) {
      throw std::invalid_argument("unknown device '" + opts.device + "' (use auto, cpu, cuda or cuda:N)");
    }
    if (device.is_cuda() && !torch::cuda::is_available())
      throw std::invalid_argument("--device " + opts.device + ": this LibTorch build has no usable CUDA device");
  } else {
    throw std::invalid_argument("unknown device '" + opts.device + "' (use auto, cpu, cuda or cuda:N)");
  }
  std::ostringstream s;
  s << "device " << device.str() << ", LibTorch intra-op threads " << opts.intra_op_threads << ", BLAS threads "
    << (blas_set < 0 ? std::string("(not OpenBLAS, unchanged)") : std::to_string(blas_set)) << " of " << cores
    << " cores, one-token step threads " << cpu_threads();
  if (const std::string core = blas_core(); !core.empty()) s << ", OpenBLAS kernels " << core;
  g_summary = s.str();
  return device;
}

std::string runtime_summary() { return g_summary; }

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

void add_runtime_options(CLI::App& app, RuntimeOptions& opts) {
  for_each_runtime_option(opts, [&app](const OptionSpec& spec, auto& member) { add_to_app(app, spec, member); });
}

}  // namespace dracarys
