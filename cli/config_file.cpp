#include "cli/config_file.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"

namespace dracarys {

void check_config_argument(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string path;
    if (arg == "--config" && i + 1 < argc)
      path = argv[i + 1];
    else if (arg.rfind("--config=", 0) == 0)
      path = arg.substr(std::string("--config=").size());
    else
      continue;
    try {
      read_file(path, kMaxConfigBytes);  // a regular file within the limit (a FIFO is refused, not waited on)
    } catch (const DataError& e) {
      throw std::invalid_argument("--config " + std::string(e.what()));
    }
  }
}

void check_config_file_keys(const CLI::App& app) {
  const auto* config = app.get_config_ptr();
  if (!config || config->count() == 0) return;
  const std::string path = config->as<std::string>();
  std::vector<std::string> known;
  for (const auto* opt : app.get_options())
    for (const auto& name : opt->get_lnames()) known.push_back(name);
  std::vector<CLI::ConfigItem> items;
  try {
    items = app.get_config_formatter()->from_file(path);
  } catch (const std::exception&) {
    throw std::invalid_argument("--config " + path + " cannot be read as a TOML/INI file");
  }
  std::set<std::string> seen;
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    const std::string& key = item.name;  // CLI11 matches the long name exactly: batch_size is not batch-size
    if (!item.parents.empty() && !(item.parents.size() == 1 && item.parents[0] == "default"))
      throw std::invalid_argument("--config " + path + ": key '" + item.fullname() +
                                  "' is inside a section; write every key at the top level");
    if (!seen.insert(key).second)  // CLI11 would keep one of the two without a word
      throw std::invalid_argument("--config " + path + ": key '" + key + "' is given twice; keep one");
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string nearest;
    size_t best = SIZE_MAX;
    for (const auto& k : known)
      if (edit_distance(key, k) < best) best = edit_distance(key, k), nearest = k;
    throw std::invalid_argument("--config " + path + ": unknown key '" + item.name + "'" +
                                (best <= 3 ? "; did you mean '" + nearest + "'?" : "; keys are the long option names"));
  }
}

}  // namespace dracarys
