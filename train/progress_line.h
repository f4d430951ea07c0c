// The training progress line, as tqdm draws one: how far the run is (a bar on a terminal, a
// percentage in a log), time spent and left, then the step's loss, rate and speed.
//
//   step 252/600  42% [████████▍           ] 01:23<01:55 | loss 4.1234 | lr 2.00e-03 | 2,345 tok/s
#pragma once

#include <cstdint>
#include <string>

namespace dracarys {

struct Progress {
  int64_t step = 0, max_steps = 0;  // max_steps 0: no step limit
  double fraction = 0;              // of the run done, 0..1, towards whichever limit ends it
  double elapsed_s = 0;
  double remaining_s = -1;  // < 0: not known yet
  double tokens_per_s = 0;  // 0: not measured yet
  double loss = 0, lr = 0;
};

// One line, without a line end; `bar` draws the bar (for a terminal).
std::string progress_line(const Progress& p, bool bar);

// Seconds as m:ss, or h:mm:ss from an hour on ("?" when negative or not finite).
std::string clock_time(double seconds);

}  // namespace dracarys
