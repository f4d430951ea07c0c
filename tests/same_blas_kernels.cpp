// The end-to-end tests run LibTorch in their own process and compare its numbers with those of
// the programs they start (dracarys-serve, -infer), which choose OpenBLAS's kernels for this CPU
// first thing (use_the_cpus_blas_kernels, cli/runtime.h). So does every such test program, before
// its main(), so that both sides multiply with the same kernels and agree bit for bit.
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/runtime.h"

namespace {

const bool kChosen = [] {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t start = 0; start < all.size();) {
    const size_t end = all.find('\0', start);
    args.push_back(all.substr(start, end - start));
    start = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (!args.empty()) dracarys::use_the_cpus_blas_kernels(argv.data());
  return true;
}();

}  // namespace
