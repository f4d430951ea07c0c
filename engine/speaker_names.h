// The checkpoint's speakers as the model spells them: the "name:" that opens each one's line,
// as tokens, for a scene whose next speaker the model picks (the server's chat) and as the
// text where another speaker's line begins (a stop sequence: a line ends before the next).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/loaded_model.h"
#include "model/sampler.h"

namespace dracarys {

class SpeakerNames {
 public:
  // Empty when the checkpoint lists no speakers or was trained without their names.
  explicit SpeakerNames(const LoadedModel& m);
  bool empty() const { return names_.empty(); }

  // The speaker of the scene's next line, picked by the model among the listed speakers only:
  // from the scene, each step keeps the logits of the tokens that go on along some listed
  // "name:" (the others -inf), and the sampler picks among them, until one name is spelled.
  std::string pick(LoadedModel& m, const std::vector<TokenId>& scene, const SamplingOptions& sampling) const;

  // "name:" for each listed speaker: where another speaker's line would begin.
  const std::vector<std::string>& openings() const { return openings_; }

 private:
  // A tree of the openings' tokens: node 0 is the root; a node where an opening ends names it.
  struct Node {
    std::map<TokenId, size_t> next;
    int64_t speaker = -1;  // index into names_, or -1
  };
  std::vector<std::string> names_;
  std::vector<std::string> openings_;
  std::vector<Node> nodes_;
  int64_t longest_ = 0;  // tokens in the longest opening
};

}  // namespace dracarys
