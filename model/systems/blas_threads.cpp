#include "model/systems/blas_threads.h"

#include <dlfcn.h>

namespace dracarys {

namespace {
using SetFn = void (*)(int);
using GetFn = int (*)();
SetFn openblas_set() { return reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")); }
GetFn openblas_get() { return reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")); }
}  // namespace

int set_blas_threads(int n) {
  auto set = openblas_set();
  if (!set) return -1;
  set(n);
  return blas_threads() < 0 ? n : blas_threads();
}

int blas_threads() {
  auto get = openblas_get();
  return get ? get() : -1;
}

OneBlasThreadPerCaller::OneBlasThreadPerCaller() : before_(blas_threads()) {
  if (before_ > 1) set_blas_threads(1);
}

OneBlasThreadPerCaller::~OneBlasThreadPerCaller() {
  if (before_ > 1) set_blas_threads(before_);
}

}  // namespace dracarys
