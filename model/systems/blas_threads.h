// OpenBLAS's thread pool, where OpenBLAS is the BLAS LibTorch loaded (found by name at run time,
// so that another BLAS, or CUDA, simply leaves it alone). The one place that sets its size.
#pragma once

namespace dracarys {

// Sets OpenBLAS's pool to `n` threads; returns the count in force after, or -1 without OpenBLAS.
int set_blas_threads(int n);
// The pool's size now, or -1 without OpenBLAS.
int blas_threads();

// While it lives, each BLAS call runs on its caller's thread alone, so that several threads can
// each run their own products at once (Muon's Newton–Schulz, one matrix per thread).
class OneBlasThreadPerCaller {
 public:
  OneBlasThreadPerCaller();
  ~OneBlasThreadPerCaller();
  OneBlasThreadPerCaller(const OneBlasThreadPerCaller&) = delete;
  OneBlasThreadPerCaller& operator=(const OneBlasThreadPerCaller&) = delete;

 private:
  int before_;
};

}  // namespace dracarys
