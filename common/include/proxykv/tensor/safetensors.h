// Safetensors: mmap reader (single file and sharded through model.safetensors.index.json) and writer.
//
// The reader treats every file as untrusted: the header length, the JSON, every dtype, shape and offset pair is
// validated (offsets inside the data section, byte length == product(shape) * dtype size, no overlapping tensors,
// no overflow in shape products) before any tensor byte is touched. A malformed file yields a Status naming the
// file and the problem; it never crashes or reads out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/tensor/dtype.h"

namespace proxykv {

// A read-only view of one tensor inside a mapped file. Valid while the owning SafetensorsFile lives.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Errors: NOT_FOUND (missing file), INVALID_ARGUMENT (malformed), UNIMPLEMENTED
  // (a dtype this build does not support), FAILED_PRECONDITION (the OS refused to open or map it).
  static Result<std::shared_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  Result<TensorView> get(const std::string& name) const;

  // The whole mapped file, header included; every TensorView points inside it.
  const uint8_t* file_data() const { return static_cast<const uint8_t*>(map_); }
  size_t file_size() const { return map_size_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorView> tensors_;
};

// A checkpoint directory or file: `model.safetensors`, or `model.safetensors.index.json` with its shards
// (the index's weight_map is validated: every shard exists and holds the tensors the index says it holds).
class SafetensorsCheckpoint {
 public:
  // `path` is a directory (looks for model.safetensors.index.json, then model.safetensors), an index file or
  // a single .safetensors file.
  static Result<SafetensorsCheckpoint> open(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  Result<TensorView> get(const std::string& name) const;

 private:
  std::string path_;  // what open() was given, for error messages
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;
  std::map<std::string, size_t> where_;  // tensor name -> shard index
};

// Tensor to write: bytes are copied by the writer, so the source may be freed after add().
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Writes the safetensors layout: 8-byte LE header length, JSON header padded with spaces to a multiple of 8,
// data sorted by tensor name. Writes to `path.tmp` then renames, so a crash never leaves a half file.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace proxykv
