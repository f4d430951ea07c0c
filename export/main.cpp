// dracarys-export: a trained checkpoint as a GGUF file that llama.cpp (and ollama, LM Studio,
// node-llama-cpp) load unmodified, with an ollama Modelfile beside it.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

#include "checkpoint/output_files.h"
#include "cli/logging.h"
#include "cli/option_table.h"
#include "cli/runtime.h"
#include "data/text.h"
#include "engine/loaded_model.h"
#include "export/llama_model.h"

using namespace dracarys;

namespace {

struct ExportOptions {
  std::string checkpoint;
  std::string out;
  std::string type = "f32";
  std::string modelfile;  // empty: OUT with its extension replaced by ".Modelfile"
  bool no_modelfile = false;
};

// The one table of dracarys-export's options.
template <class Visit>
void for_each_option(ExportOptions& o, Visit&& visit) {
  visit(OptionSpec("-c,--checkpoint", "Export", "Checkpoint to export (written by dracarys-train)").no_default(),
        o.checkpoint);
  visit(OptionSpec("-o,--out", "Export", "GGUF file to write (replaced only if dracarys-export wrote it)").no_default(),
        o.out);
  visit(OptionSpec("--type", "Export",
                   "How the weight matrices are stored: f32 (exact), f16 (half the size) or q8_0 (llama.cpp's "
                   "8-bit blocks, a quarter); norms and biases stay f32")
            .one_of({"f32", "f16", "q8_0"}),
        o.type);
  visit(OptionSpec("--modelfile", "Export",
                   "ollama Modelfile to write beside the GGUF (default: OUT with the extension .Modelfile)")
            .no_default(),
        o.modelfile);
  visit(OptionSpec("--no-modelfile", "Export", "Write the GGUF only"), o.no_modelfile);
}

GgmlType ggml_type(const std::string& name) {
  if (name == "f16") return GgmlType::kF16;
  if (name == "q8_0") return GgmlType::kQ8_0;
  return GgmlType::kF32;
}

std::string default_modelfile(const std::string& out) {
  return std::filesystem::path(out).replace_extension(".Modelfile").string();
}

int export_checkpoint(const ExportOptions& o) {
  check_output_path(o.out, "--out", is_exported_gguf);
  const std::string modelfile = o.no_modelfile ? "" : (o.modelfile.empty() ? default_modelfile(o.out) : o.modelfile);
  if (!modelfile.empty()) {
    if (modelfile == o.out) throw std::invalid_argument("--modelfile names the same file as --out");
    check_output_path(modelfile, "--modelfile", is_exported_modelfile);
  }
  auto m = load_for_inference(o.checkpoint, torch::Device(torch::kCPU));
  const TokenizerModel tokenizer = read_tokenizer_model(m.tokenizer.bytes());
  const ModelConfig& config = m.model->config();

  std::string name = std::filesystem::path(o.checkpoint).stem().string();  // general.name: UTF-8
  if (!valid_utf8(name)) name = "dracarys";
  const std::string gguf = llama_gguf(config, tokenizer, llama_tensors(m.model), ggml_type(o.type), name);
  write_file_atomic(o.out, gguf);
  spdlog::info("wrote {} ({:.2f} MiB, llama.cpp architecture {}, matrices as {})", o.out,
               static_cast<double>(gguf.size()) / (1 << 20), llama_architecture(config), o.type);
  if (!modelfile.empty()) {
    write_file_atomic(modelfile, ollama_modelfile(config, std::filesystem::path(o.out).filename().string()));
    spdlog::info("wrote {} (for ollama: ollama create NAME -f {})", modelfile, modelfile);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  use_the_cpus_blas_kernels(argv);
  setup_logging();
  CLI::App app{
      "dracarys-export: write a trained checkpoint as a GGUF file for llama.cpp, ollama and the programs built on "
      "them.\n"
      "Examples:\n"
      "  dracarys-export -c got.pt -o got.gguf                (and got.Modelfile for ollama)\n"
      "  dracarys-export -c got.pt -o got-q8.gguf --type q8_0\n"
      "  llama-cli -m got.gguf -p \"cersei lannister: When you play the game of thrones, you\" -n 40 -c 128\n"
      "The model goes out as llama.cpp's gpt2 architecture (gptneox with rotary positions); the tokenizer as its "
      "sentencepiece type (BPE "
      "tokenizers only). A position past the model's context is more than llama.cpp can run: give it "
      "the context (-c / num_ctx) that the Modelfile sets."};
  app.get_formatter()->column_width(30);
  ExportOptions o;
  for_each_option(o, [&app](const OptionSpec& spec, auto& member) { add_to_app(app, spec, member); });
  app.get_option("--checkpoint")->required();
  app.get_option("--out")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return report_parse_error(app, e);
  }
  try {
    return export_checkpoint(o);
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
