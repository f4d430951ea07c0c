// The protobuf-free boundary between dracarys and sentencepiece.
//
// Debian's libsentencepiece carries its own copy of protobuf, and LibTorch links the system
// one: linked into one program, the two clash and it dies before main(). So sentencepiece
// lives only in a plugin (libdracarys_spm.so) that is loaded with RTLD_LOCAL | RTLD_DEEPBIND
// (see tokenizer.cpp) and speaks plain C types. Buffers the plugin returns are malloc()ed and
// released with free_buffer().
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

#define DRACARYS_SPM_ABI 1

typedef struct dracarys_spm_api {
  int abi_version;
  // Trains a model on `n` sentences with a sentencepiece trainer argument string
  // ("--vocab_size=... --model_type=..."). On success returns 0 and the serialized model.
  int (*train)(const char* const* sentences, const size_t* lengths, size_t n, const char* args, char** model_out,
               size_t* model_len, char** error_out);
  // Loads a serialized model; returns a handle or null with *error_out set.
  void* (*load)(const char* model, size_t model_len, char** error_out);
  void (*release)(void* handle);
  int (*encode)(void* handle, const char* text, size_t len, int32_t** ids_out, size_t* n_out, char** error_out);
  int (*decode)(void* handle, const int32_t* ids, size_t n, char** text_out, size_t* len_out, char** error_out);
  int (*vocab_size)(void* handle);
  int (*eos_id)(void* handle);
  // The piece's text ("▁the", "<0x0A>", "</s>"); malloc()ed, NUL-terminated.
  char* (*id_to_piece)(void* handle, int id);
  int (*is_byte)(void* handle, int id);
  int (*is_control)(void* handle, int id);
  void (*free_buffer)(void* p);
} dracarys_spm_api;

// The one symbol the plugin exports.
const dracarys_spm_api* dracarys_spm_plugin(void);
}
