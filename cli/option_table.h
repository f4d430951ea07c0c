// One description per command-line option. An executable lists its options once, in a function
// that hands each (description, member) pair to a visitor; registering them with CLI11, storing
// them in a checkpoint, reading them back and checking their ranges are visitors over that list.
// Each executable has its list: train/options.cpp's for_each_option, infer/main.cpp's
// for_each_infer_option, serve/main.cpp's for_each_serve_option and export/main.cpp's options.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cli/option_checks.h"

namespace dracarys {

// What `--resume CKPT` does with an option.
enum class OnResume {
  kThisRun,    // not stored: paths, the device, the distributed set-up, one-off modes
  kContinues,  // stored in the checkpoint and reused; given again, the new value wins
  kFixed,      // stored (or part of the model's shape): giving it with --resume is refused
};

struct OptionSpec {
  std::string flag;   // "--batch-size" (a short name may come first: "-c,--checkpoint")
  std::string group;  // heading in --help
  std::string help;
  std::string key;  // its key among a checkpoint's stored settings; empty: not stored there
  OnResume on_resume = OnResume::kThisRun;
  bool has_range = false, above_lo = false;
  double lo = 0, hi = 0;
  std::vector<std::string> choices;  // the allowed words, when the value is one of a few
  bool show_default = true;
  bool required = false;  // the executable cannot run without it
  // Stored options added later: the value a checkpoint that lacks the key ran with (null: keep the default).
  nlohmann::json when_absent;

  OptionSpec(std::string flag_, std::string group_, std::string help_)
      : flag(std::move(flag_)), group(std::move(group_)), help(std::move(help_)) {}
  OptionSpec& stored(std::string key_, OnResume r = OnResume::kContinues) {
    key = std::move(key_), on_resume = r;
    return *this;
  }
  OptionSpec& resume(OnResume r) {
    on_resume = r;
    return *this;
  }
  OptionSpec& range(double lo_, double hi_) {  // lo <= value <= hi
    has_range = true, lo = lo_, hi = hi_;
    return *this;
  }
  OptionSpec& above(double lo_, double hi_) {  // lo < value <= hi
    range(lo_, hi_).above_lo = true;
    return *this;
  }
  OptionSpec& one_of(std::vector<std::string> words) {
    choices = std::move(words);
    return *this;
  }
  OptionSpec& must_be_given() {
    required = true;
    return *this;
  }
  OptionSpec& when_absent_value(nlohmann::json v) {
    when_absent = std::move(v);
    return *this;
  }
  OptionSpec& no_default() {  // a long or empty default that would clutter --help
    show_default = false;
    return *this;
  }
  // The long name without dashes, as app.count() and --config files know it: "batch-size".
  std::string long_name() const { return flag.substr(flag.rfind("--") + 2); }
};

// Members whose command-line form differs from their stored form.
struct Duration {  // written "90s", "10m", "1h30m" or plain seconds; stored as seconds
  double& seconds;
};
struct NegatedFlag {  // a flag that turns `value` off, e.g. --no-overlap for overlap_allreduce
  bool& value;
};

// The longest duration any option takes: a year.
constexpr double kMaxDurationSeconds = 366.0 * 24 * 3600;

// "90s", "10m", "1h30m", "45" (seconds) -> seconds. Throws std::invalid_argument.
double parse_duration(const std::string& text);

// Registers one option on `app` as its description says.
template <class T>
void add_to_app(CLI::App& app, const OptionSpec& spec, T& member) {
  CLI::Option* opt;
  if constexpr (std::is_same_v<T, bool>) {
    opt = app.add_flag(spec.flag, member, spec.help);
  } else {
    opt = app.add_option(spec.flag, member, spec.help);
    if (spec.show_default) opt->capture_default_str();
  }
  if (!spec.choices.empty()) opt->check(CLI::IsMember(spec.choices));
  if (spec.required) opt->required();
  opt->group(spec.group);
}
inline void add_to_app(CLI::App& app, const OptionSpec& spec, Duration d) {
  app.add_option_function<std::string>(
         spec.flag,
         [d, flag = spec.flag](const std::string& text) {
           try {
             d.seconds = parse_duration(text);
           } catch (const std::invalid_argument& e) {
             throw CLI::ValidationError(flag, e.what());
           }
         },
         spec.help)
      ->group(spec.group);
}
inline void add_to_app(CLI::App& app, const OptionSpec& spec, NegatedFlag f) {
  app.add_flag_function(
         spec.flag, [f](int64_t) { f.value = false; }, spec.help)
      ->group(spec.group);
}

// Throws std::invalid_argument (option_checks' wording) when a member is outside its range.
template <class T>
void check_range(const OptionSpec& spec, const T& value) {
  if (!spec.has_range) return;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    require_count(spec.flag, static_cast<int64_t>(value), static_cast<int64_t>(spec.lo), static_cast<int64_t>(spec.hi));
  else if constexpr (std::is_floating_point_v<T>)
    require_number(spec.flag, value, spec.lo, spec.hi, spec.above_lo);
}
inline void check_range(const OptionSpec& spec, Duration d) { check_range(spec, d.seconds); }

}  // namespace dracarys
