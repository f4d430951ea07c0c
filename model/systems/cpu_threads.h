// The threads of the project's own CPU loops (generation's one-token step, model/decode_step.cpp):
// the calling thread and cpu_threads() − 1 helpers that wait between jobs. A job is a range
// [0, n) cut into a few contiguous pieces per thread, which the threads claim one at a time;
// every element is computed whole by one thread, so the results are the same bits for any
// thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace dracarys {

// How many threads share a job (1 = the caller alone, the default). Set once, before any job, by
// the runtime policy (cli/runtime.h) to the thread count OpenBLAS gets.
void set_cpu_threads(int threads);
int cpu_threads();

// Runs work(begin, end) over consecutive pieces of [0, n), each piece once, and returns when
// all are done. While another job runs (another request of the server), the caller works alone.
void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& work);

}  // namespace dracarys
