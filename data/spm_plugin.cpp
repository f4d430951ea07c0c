// The only translation unit that sees sentencepiece (and its protobuf). Built as a shared
// module; see spm_plugin_api.h for why.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "data/spm_plugin_api.h"

namespace sentencepiece::logging {
void SetMinLogLevel(int v);  // exported by libsentencepiece, not declared in its headers
}

namespace {

char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) {
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
  }
  return p;
}

int fail(char** error_out, const std::string& msg) {
  if (error_out) *error_out = dup(msg);
  return 1;
}

class ArrayIterator : public sentencepiece::SentenceIterator {
 public:
  ArrayIterator(const char* const* s, const size_t* l, size_t n) : s_(s), l_(l), n_(n) { load(); }
  bool done() const override { return i_ >= n_; }
  void Next() override {
    ++i_;
    load();
  }
  const std::string& value() const override { return cur_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void load() {
    if (i_ < n_) cur_.assign(s_[i_], l_[i_]);
  }
  const char* const* s_;
  const size_t* l_;
  size_t n_, i_ = 0;
  std::string cur_;
};

int train(const char* const* sentences, const size_t* lengths, size_t n, const char* args, char** model_out,
          size_t* model_len, char** error_out) {
  try {
    sentencepiece::logging::SetMinLogLevel(3);  // its own lines never reach the user; errors come back as statuses
    ArrayIterator it(sentences, lengths, n);
    std::string model;
    auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
    if (!st.ok()) return fail(error_out, st.ToString());
    *model_out = static_cast<char*>(std::malloc(model.size()));
    std::memcpy(*model_out, model.data(), model.size());
    *model_len = model.size();
    return 0;
  } catch (const std::exception& e) {
    return fail(error_out, e.what());
  }
}

void* load(const char* model, size_t model_len, char** error_out) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  auto st = sp->LoadFromSerializedProto(std::string(model, model_len));
  if (!st.ok()) {
    delete sp;
    fail(error_out, st.ToString());
    return nullptr;
  }
  return sp;
}

void release(void* h) { delete static_cast<sentencepiece::SentencePieceProcessor*>(h); }

sentencepiece::SentencePieceProcessor* sp(void* h) { return static_cast<sentencepiece::SentencePieceProcessor*>(h); }

int encode(void* h, const char* text, size_t len, int32_t** ids_out, size_t* n_out, char** error_out) {
  std::vector<int> ids;
  auto st = sp(h)->Encode(std::string(text, len), &ids);
  if (!st.ok()) return fail(error_out, st.ToString());
  *ids_out = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (ids.size() ? ids.size() : 1)));
  for (size_t i = 0; i < ids.size(); ++i) (*ids_out)[i] = ids[i];
  *n_out = ids.size();
  return 0;
}

int decode(void* h, const int32_t* ids, size_t n, char** text_out, size_t* len_out, char** error_out) {
  std::vector<int> v(ids, ids + n);
  std::string text;
  auto st = sp(h)->Decode(v, &text);
  if (!st.ok()) return fail(error_out, st.ToString());
  *text_out = dup(text);
  *len_out = text.size();
  return 0;
}

int vocab_size(void* h) { return sp(h)->GetPieceSize(); }
int eos_id(void* h) { return sp(h)->eos_id(); }
char* id_to_piece(void* h, int id) { return dup(sp(h)->IdToPiece(id)); }
int is_byte(void* h, int id) { return sp(h)->IsByte(id) ? 1 : 0; }
int is_control(void* h, int id) { return sp(h)->IsControl(id) ? 1 : 0; }
void free_buffer(void* p) { std::free(p); }

const dracarys_spm_api kApi = {DRACARYS_SPM_ABI, train,  load,        release, encode,     decode,
                               vocab_size,       eos_id, id_to_piece, is_byte, is_control, free_buffer};

}  // namespace

extern "C" __attribute__((visibility("default"))) const dracarys_spm_api* dracarys_spm_plugin(void) { return &kApi; }
