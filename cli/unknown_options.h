// What a user sees for a command-line word no option takes: a removed or renamed option says
// what replaced it; a misspelled one gets the nearest option's name; stray words are listed in
// the order given, with the quoting hint only where they look like a value's second word.
#pragma once

#include <string>
#include <vector>

namespace dracarys {

// The options that were removed or renamed, each with the sentence that says what replaced it.
struct ReplacedOption {
  const char* flag;      // "--warmup-steps"
  const char* replaced;  // "--warmup, a share of the schedule (e.g. --warmup 0.05)"
};
const std::vector<ReplacedOption>& replaced_options();

// The one-line message for `unknown` (the words no option took, in the order given), given the
// long names of the program's options ("batch-size").
std::string unknown_arguments_text(const std::vector<std::string>& unknown, const std::vector<std::string>& options);

}  // namespace dracarys
