#include "proxykv/tensor/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

namespace proxykv {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// The reference implementation's limit; real headers are a few hundred KB even for the largest checkpoints.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr uint64_t kMaxIndexBytes = 100ull << 20;
// A valid header nests three deep ({name: {"shape": [...]}}); anything deeper is refused before parsing.
constexpr int kMaxHeaderNesting = 8;
constexpr int kMaxIndexNesting = 64;
constexpr size_t kMaxQuotedChars = 96;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kIndexFileName = "model.safetensors.index.json";
constexpr const char* kSingleFileName = "model.safetensors";

// Valid safetensors dtypes this build does not support: refused as UNIMPLEMENTED rather than as a malformed file.
constexpr std::string_view kUnsupportedDTypes[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                                   "F4",      "U16",     "U32",     "U64",     "C64"};

// Length of the well-formed UTF-8 sequence at text[i] (1 for ASCII), or 0 when the bytes there are not one.
size_t utf8_sequence_length(std::string_view text, size_t i) {
  auto byte_at = [&](size_t k) { return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0; };
  const unsigned char lead = byte_at(0);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) second_min = 0xa0;  // overlong
    if (lead == 0xed) second_max = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) second_min = 0x90;  // overlong
    if (lead == 0xf4) second_max = 0x8f;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (byte_at(1) < second_min || byte_at(1) > second_max) return 0;
  for (size_t k = 2; k < length; ++k) {
    if ((byte_at(k) & 0xc0) != 0x80) return 0;
  }
  return length;
}

// Text from an untrusted file, made safe to put in a message: control bytes and bytes that are not UTF-8 escaped
// (messages end up in logs and JSON responses), long text cut at a character boundary.
std::string printable(std::string_view text, size_t max_bytes = kMaxQuotedChars) {
  std::string out;
  size_t i = 0;
  while (i < text.size() && i < max_bytes) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0 || byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      out += escaped;
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  if (i < text.size()) out += "...";
  return out;
}

std::string in_quotes(std::string_view text) {
  return "'" + printable(text) + "'";
}

std::string range_text(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

Status os_error(const std::string& path, const char* what, int err) {
  std::string message = path + ": " + what + ": " + std::generic_category().message(err);
  if (err == ENOENT || err == ENOTDIR) return not_found(std::move(message));
  return failed_precondition(std::move(message));
}

Status out_of_memory(const std::string& path) {
  return Status(StatusCode::kResourceExhausted, path + ": out of memory");
}

// Closes the descriptor on every return path.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now so that the caller sees the error close() reports (NFS reports write errors there).
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

uint64_t read_le64(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// True when `text` never nests arrays/objects deeper than `max_depth`. Checked before parsing so that a hostile
// header of 100 MB of '[' cannot make the parser build a container per byte. Strings are skipped exactly as the
// JSON lexer skips them, so for any prefix the parser accepts the two agree on the depth.
bool nesting_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// Parses JSON, turning every parse failure into a Status. Duplicate keys are refused at every level: nlohmann
// silently keeps the last one, which would let two header entries for one tensor disagree unnoticed.
Result<Json> parse_json(std::string_view text, const std::string& what, int max_nesting) {
  if (!nesting_within(text, max_nesting)) {
    return invalid_argument(what + " nests deeper than " + std::to_string(max_nesting) + " levels");
  }
  std::vector<std::set<std::string>> keys_of_open_objects;
  std::string duplicate_key;
  const Json::parser_callback_t track_keys = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: keys_of_open_objects.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!keys_of_open_objects.empty()) keys_of_open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys_of_open_objects.empty() && duplicate_key.empty() &&
            !keys_of_open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate_key = parsed.get<std::string>();
        }
        break;
      default: break;
    }
    return true;
  };
  Json parsed;
  try {
    parsed = Json::parse(text.data(), text.data() + text.size(), track_keys, /*allow_exceptions=*/true);
  } catch (const Json::exception& error) {
    // Mostly parse_error, but a number beyond double range ("2e491") throws out_of_range (found by the fuzz test).
    std::string detail = error.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix; the rest says where and why.
    if (const size_t prefix_end = detail.find("] "); prefix_end != std::string::npos) detail.erase(0, prefix_end + 2);
    return invalid_argument(what + " is not valid JSON: " + printable(detail, 240));
  }
  if (!duplicate_key.empty()) return invalid_argument(what + " has the key " + in_quotes(duplicate_key) + " twice");
  return parsed;
}

// JSON integers safetensors writes as usize; nlohmann parses non-negative ones as unsigned, negative ones as
// signed and anything with a fraction or exponent (or beyond 64 bits) as float.
std::optional<uint64_t> non_negative_integer(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) {
    const auto signed_value = value.get<int64_t>();
    if (signed_value >= 0) return static_cast<uint64_t>(signed_value);
  }
  return std::nullopt;
}

constexpr uint64_t kMaxElementCount =
    std::min<uint64_t>(std::numeric_limits<int64_t>::max(), std::numeric_limits<size_t>::max());

// Element count of `shape`, or nullopt when it does not fit int64 / size_t. A zero dimension makes the count 0
// whatever the other dimensions are; negative dimensions are refused.
std::optional<uint64_t> element_count(const std::vector<int64_t>& shape) {
  for (const int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t count = 1;
  for (const int64_t dim : shape) {
    uint64_t product = 0;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &product) || product > kMaxElementCount) {
      return std::nullopt;
    }
    count = product;
  }
  return count;
}

std::optional<uint64_t> byte_count(uint64_t elements, DType dtype) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(dtype_size(dtype)), &bytes)) return std::nullopt;
  if (bytes > std::numeric_limits<size_t>::max()) return std::nullopt;
  return bytes;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

bool is_unsupported_dtype(std::string_view name) {
  return std::find(std::begin(kUnsupportedDTypes), std::end(kUnsupportedDTypes), name) != std::end(kUnsupportedDTypes);
}

struct HeaderEntry {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Validates one tensor entry of the header against a data section of `data_size` bytes.
Result<HeaderEntry> parse_tensor_entry(const std::string& path, const std::string& name, const Json& entry,
                                       uint64_t data_size) {
  const std::string where = path + ": tensor " + in_quotes(name) + ": ";
  if (name.empty()) return invalid_argument(path + ": header has a tensor with an empty name");
  if (!entry.is_object()) return invalid_argument(where + "entry is not a JSON object");
  for (const auto& item : entry.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      return invalid_argument(where + "unknown key " + in_quotes(item.key()));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) return invalid_argument(where + "missing \"" + key + "\"");
  }

  HeaderEntry out;
  out.view.name = name;
  const Json& dtype_json = entry["dtype"];
  if (!dtype_json.is_string()) return invalid_argument(where + "\"dtype\" is not a string");
  const auto& dtype_string = dtype_json.get_ref<const std::string&>();
  const std::optional<DType> dtype = dtype_from_name(dtype_string);
  if (!dtype) {
    if (is_unsupported_dtype(dtype_string)) {
      return unimplemented(where + "dtype " + in_quotes(dtype_string) + " is not supported by this build");
    }
    return invalid_argument(where + "unknown dtype " + in_quotes(dtype_string));
  }
  out.view.dtype = *dtype;

  const Json& shape_json = entry["shape"];
  if (!shape_json.is_array()) return invalid_argument(where + "\"shape\" is not an array");
  out.view.shape.reserve(shape_json.size());
  for (const Json& dim_json : shape_json) {
    const std::optional<uint64_t> dim = non_negative_integer(dim_json);
    if (!dim || *dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return invalid_argument(
          where + "shape " + printable(shape_json.dump()) +
          " has a dimension that is not a non-negative 64-bit integer: " + printable(dim_json.dump()));
    }
    out.view.shape.push_back(static_cast<int64_t>(*dim));
  }
  const std::optional<uint64_t> elements = element_count(out.view.shape);
  const std::optional<uint64_t> bytes = elements ? byte_count(*elements, *dtype) : std::nullopt;
  if (!bytes) {
    return invalid_argument(where + "shape " + printable(shape_text(out.view.shape)) + " of " + dtype_string +
                            " overflows: more elements or bytes than fit in 64 bits");
  }

  const Json& offsets_json = entry["data_offsets"];
  if (!offsets_json.is_array() || offsets_json.size() != 2) {
    return invalid_argument(where +
                            "\"data_offsets\" is not an array of two integers: " + printable(offsets_json.dump()));
  }
  const std::optional<uint64_t> begin = non_negative_integer(offsets_json[0]);
  const std::optional<uint64_t> end = non_negative_integer(offsets_json[1]);
  if (!begin || !end) {
    return invalid_argument(where +
                            "\"data_offsets\" are not non-negative integers: " + printable(offsets_json.dump()));
  }
  if (*begin > *end) return invalid_argument(where + "data_offsets " + range_text(*begin, *end) + " are reversed");
  if (*end > data_size) {
    return invalid_argument(where + "data_offsets " + range_text(*begin, *end) + " exceed data section of " +
                            std::to_string(data_size) + " bytes");
  }
  if (*end - *begin != *bytes) {
    return invalid_argument(where + "data_offsets " + range_text(*begin, *end) + " hold " +
                            std::to_string(*end - *begin) + " bytes but shape " + shape_text(out.view.shape) + " of " +
                            dtype_string + " needs " + std::to_string(*bytes));
  }
  out.view.nbytes = static_cast<size_t>(*bytes);
  out.begin = *begin;
  out.end = *end;
  return out;
}

// Two tensors sharing bytes would alias each other's data; empty tensors own no bytes and cannot overlap.
Status check_no_overlap(const std::string& path, std::vector<const HeaderEntry*> entries) {
  entries.erase(std::remove_if(entries.begin(), entries.end(), [](const HeaderEntry* e) { return e->begin == e->end; }),
                entries.end());
  std::sort(entries.begin(), entries.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
    return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
  });
  const HeaderEntry* furthest = nullptr;  // the entry reaching furthest among those seen so far
  for (const HeaderEntry* entry : entries) {
    if (furthest && entry->begin < furthest->end) {
      return invalid_argument(path + ": tensors " + in_quotes(furthest->view.name) + " " +
                              range_text(furthest->begin, furthest->end) + " and " + in_quotes(entry->view.name) + " " +
                              range_text(entry->begin, entry->end) + " overlap");
    }
    if (!furthest || entry->end > furthest->end) furthest = entry;
  }
  return Status::ok();
}

struct ParsedHeader {
  std::map<std::string, std::string> metadata;
  std::map<std::string, TensorView> tensors;
};

// Validates the whole header; `data` is the data section (after the header) and holds `data_size` bytes.
Result<ParsedHeader> parse_header(const std::string& path, std::string_view header_text, const uint8_t* data,
                                  uint64_t data_size) {
  PROXYKV_ASSIGN_OR_RETURN(Json header, parse_json(header_text, path + ": header", kMaxHeaderNesting));
  if (!header.is_object()) return invalid_argument(path + ": header is not a JSON object");

  ParsedHeader parsed;
  std::vector<HeaderEntry> entries;
  entries.reserve(header.size());
  for (const auto& item : header.items()) {
    if (item.key() == kMetadataKey) {
      if (!item.value().is_object()) return invalid_argument(path + ": __metadata__ is not a JSON object");
      for (const auto& meta : item.value().items()) {
        if (!meta.value().is_string()) {
          return invalid_argument(path + ": __metadata__ value of " + in_quotes(meta.key()) + " is not a string");
        }
        parsed.metadata.emplace(meta.key(), meta.value().get<std::string>());
      }
      continue;
    }
    PROXYKV_ASSIGN_OR_RETURN(HeaderEntry entry, parse_tensor_entry(path, item.key(), item.value(), data_size));
    entries.push_back(std::move(entry));
  }

  std::vector<const HeaderEntry*> by_offset;
  by_offset.reserve(entries.size());
  for (const HeaderEntry& entry : entries) by_offset.push_back(&entry);
  PROXYKV_RETURN_IF_ERROR(check_no_overlap(path, std::move(by_offset)));

  for (HeaderEntry& entry : entries) {
    entry.view.data = data + entry.begin;  // begin <= end <= data_size: inside the mapping (or one past, if empty)
    std::string name = entry.view.name;
    parsed.tensors.emplace(std::move(name), std::move(entry.view));
  }
  return parsed;
}

// The shard name as the index gives it must stay in the index's directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

Result<std::string> read_small_file(const std::string& path, uint64_t max_bytes) {
  std::error_code error;
  const uint64_t size = fs::file_size(path, error);
  if (error) return os_error(path, "cannot read", error.value());
  if (size > max_bytes) {
    return invalid_argument(path + ": " + std::to_string(size) + " bytes, more than the limit of " +
                            std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return os_error(path, "cannot open", errno);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in.gcount()) != size) return failed_precondition(path + ": short read");
  return text;
}

// Returns 0 or the errno of the failed write.
int write_all(int fd, const void* bytes, size_t size) {
  const auto* cursor = static_cast<const uint8_t*>(bytes);
  while (size > 0) {
    const ssize_t written = ::write(fd, cursor, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    cursor += written;
    size -= static_cast<size_t>(written);
  }
  return 0;
}

// Writes `parts` to `tmp_path`, flushes them to disk and renames over `path`; removes the temporary on failure.
Status write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts) {
  const std::string tmp_path = path + ".tmp";
  FileDescriptor fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return os_error(tmp_path, "cannot create", errno);
  auto fail = [&](const char* what, int err) {
    ::unlink(tmp_path.c_str());
    return os_error(tmp_path, what, err);
  };
  for (const auto& [bytes, size] : parts) {
    if (const int err = write_all(fd.get(), bytes, size); err != 0) return fail("cannot write", err);
  }
  // Without fsync a crash after the rename could leave the new name pointing at a file whose data never landed.
  if (::fsync(fd.get()) != 0) return fail("cannot fsync", errno);
  if (fd.close() != 0) return fail("cannot close", errno);
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) return fail("cannot rename into place", errno);
  return Status::ok();
}

}  // namespace

int64_t TensorView::numel() const {
  uint64_t count = 1;  // unsigned so that a hand-built view with a huge shape wraps instead of being UB
  for (const int64_t dim : shape) count *= static_cast<uint64_t>(dim);
  return static_cast<int64_t>(count);
}

// ---------------------------------------------------------------------------------------------------------------
// SafetensorsFile

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  try {
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return os_error(path, "cannot open", errno);
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) return os_error(path, "cannot stat", errno);
    if (!S_ISREG(info.st_mode)) return invalid_argument(path + ": not a regular file");
    const auto file_size = static_cast<uint64_t>(info.st_size);
    // Also keeps a zero-length file away from mmap, which refuses a length of 0.
    if (file_size < 8) {
      return invalid_argument(path + ": file is " + std::to_string(file_size) +
                              " bytes, too short for the 8-byte header length");
    }

    // Created before mapping so that its destructor unmaps on every later return.
    std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
    file->path_ = path;
    void* map = ::mmap(nullptr, static_cast<size_t>(file_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (map == MAP_FAILED) return os_error(path, "cannot mmap", errno);
    file->map_ = map;
    file->map_size_ = static_cast<size_t>(file_size);

    const auto* bytes = static_cast<const uint8_t*>(map);
    const uint64_t header_size = read_le64(bytes);
    if (header_size > file_size - 8) {
      return invalid_argument(path + ": header length " + std::to_string(header_size) + " exceeds the " +
                              std::to_string(file_size - 8) + " bytes after the length field");
    }
    if (header_size > kMaxHeaderBytes) {
      return invalid_argument(path + ": header length " + std::to_string(header_size) + " is over the limit of " +
                              std::to_string(kMaxHeaderBytes) + " bytes");
    }
    const std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), static_cast<size_t>(header_size));
    const uint8_t* data = bytes + 8 + header_size;
    const uint64_t data_size = file_size - 8 - header_size;
    PROXYKV_ASSIGN_OR_RETURN(ParsedHeader header, parse_header(path, header_text, data, data_size));
    file->metadata_ = std::move(header.metadata);
    file->tensors_ = std::move(header.tensors);
    return file;
  } catch (const std::bad_alloc&) {
    return out_of_memory(path);
  } catch (const std::exception& error) {
    return internal_error(path + ": unexpected exception while reading: " + error.what());
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) names.push_back(name);
  return names;
}

Result<TensorView> SafetensorsFile::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) return not_found(path_ + ": no tensor " + in_quotes(name));
  return it->second;
}

// ---------------------------------------------------------------------------------------------------------------
// SafetensorsCheckpoint

Result<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& path) {
  try {
    SafetensorsCheckpoint checkpoint;
    checkpoint.path_ = path;
    std::error_code error;
    const fs::file_status status = fs::status(path, error);
    if (status.type() == fs::file_type::not_found) return not_found(path + ": no such file or directory");
    if (error) return os_error(path, "cannot stat", error.value());

    std::string file_path = path;
    if (fs::is_directory(status)) {
      const fs::path index_path = fs::path(path) / kIndexFileName;
      const fs::path single_path = fs::path(path) / kSingleFileName;
      if (fs::exists(index_path, error)) {
        file_path = index_path.string();
      } else if (fs::exists(single_path, error)) {
        file_path = single_path.string();
      } else {
        return not_found(path + ": directory holds neither " + kIndexFileName + " nor " + kSingleFileName);
      }
    }

    const bool is_index = fs::path(file_path).extension() == ".json";
    if (!is_index) {
      PROXYKV_ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> file, SafetensorsFile::open(file_path));
      for (const std::string& name : file->names()) checkpoint.where_.emplace(name, 0);
      checkpoint.shards_.push_back(std::move(file));
      return checkpoint;
    }

    // Sharded: the index's weight_map decides which shard serves each tensor.
    const std::string& index_path = file_path;
    PROXYKV_ASSIGN_OR_RETURN(std::string index_text, read_small_file(index_path, kMaxIndexBytes));
    PROXYKV_ASSIGN_OR_RETURN(Json index, parse_json(index_text, index_path, kMaxIndexNesting));
    if (!index.is_object()) return invalid_argument(index_path + ": not a JSON object");
    if (index.contains("metadata") && !index["metadata"].is_object()) {
      return invalid_argument(index_path + ": \"metadata\" is not a JSON object");
    }
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      return invalid_argument(index_path + ": \"weight_map\" is missing or not a JSON object");
    }
    const Json& weight_map = index["weight_map"];
    if (weight_map.empty()) return invalid_argument(index_path + ": \"weight_map\" is empty");

    const fs::path directory = fs::path(index_path).parent_path();
    std::map<std::string, size_t> shard_by_file_name;
    for (const auto& item : weight_map.items()) {
      const std::string& tensor = item.key();
      const std::string where = index_path + ": tensor " + in_quotes(tensor) + ": ";
      if (tensor.empty()) return invalid_argument(index_path + ": weight_map has an empty tensor name");
      if (!item.value().is_string()) return invalid_argument(where + "shard name is not a string");
      const auto& shard_name = item.value().get_ref<const std::string&>();
      if (!is_plain_file_name(shard_name)) {
        return invalid_argument(where + "shard name " + in_quotes(shard_name) +
                                " is not a plain file name in the index's directory");
      }
      auto [it, inserted] = shard_by_file_name.emplace(shard_name, checkpoint.shards_.size());
      if (inserted) {
        Result<std::shared_ptr<SafetensorsFile>> shard = SafetensorsFile::open((directory / shard_name).string());
        if (!shard.is_ok()) {
          return Status(shard.status().code(),
                        where + "shard " + in_quotes(shard_name) + " unusable: " + shard.status().message());
        }
        checkpoint.shards_.push_back(std::move(shard).value());
      }
      if (!checkpoint.shards_[it->second]->contains(tensor)) {
        return invalid_argument(where + "mapped to shard " + in_quotes(shard_name) + ", which does not contain it");
      }
      checkpoint.where_.emplace(tensor, it->second);
    }
    return checkpoint;
  } catch (const std::bad_alloc&) {
    return out_of_memory(path);
  } catch (const std::exception& error) {
    return internal_error(path + ": unexpected exception while opening checkpoint: " + error.what());
  }
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [name, shard] : where_) names.push_back(name);
  return names;
}

Result<TensorView> SafetensorsCheckpoint::get(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) return not_found(path_ + ": no tensor " + in_quotes(name));
  return shards_[it->second]->get(name);
}

// ---------------------------------------------------------------------------------------------------------------
// Writer

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  try {
    std::vector<const TensorToWrite*> sorted;
    sorted.reserve(tensors.size());
    for (const TensorToWrite& tensor : tensors) sorted.push_back(&tensor);
    std::sort(sorted.begin(), sorted.end(),
              [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });

    Json header = Json::object();
    if (!metadata.empty()) header[kMetadataKey] = metadata;
    uint64_t offset = 0;
    for (size_t i = 0; i < sorted.size(); ++i) {
      const TensorToWrite& tensor = *sorted[i];
      const std::string where = path + ": tensor " + in_quotes(tensor.name) + ": ";
      if (tensor.name.empty()) return invalid_argument(path + ": a tensor has an empty name");
      if (tensor.name == kMetadataKey) return invalid_argument(where + "name is reserved for the metadata");
      if (i > 0 && sorted[i - 1]->name == tensor.name) return invalid_argument(where + "name given twice");
      const std::optional<uint64_t> elements = element_count(tensor.shape);
      const std::optional<uint64_t> bytes = elements ? byte_count(*elements, tensor.dtype) : std::nullopt;
      if (!bytes) {
        return invalid_argument(where + "shape " + shape_text(tensor.shape) + " is negative or overflows");
      }
      if (tensor.bytes.size() != *bytes) {
        return invalid_argument(where + std::to_string(tensor.bytes.size()) + " bytes given but shape " +
                                shape_text(tensor.shape) + " of " + dtype_name(tensor.dtype) + " needs " +
                                std::to_string(*bytes));
      }
      header[tensor.name] = {
          {"dtype", dtype_name(tensor.dtype)}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + *bytes}}};
      offset += *bytes;
    }

    std::string header_text;
    try {
      header_text = header.dump();
    } catch (const Json::type_error&) {
      return invalid_argument(path + ": tensor names and metadata must be valid UTF-8");
    }
    // Readers may map the data section and view it as typed arrays: keep it 8-byte aligned.
    header_text.append((8 - header_text.size() % 8) % 8, ' ');
    uint8_t length_field[8];
    for (int i = 0; i < 8; ++i) length_field[i] = static_cast<uint8_t>(uint64_t{header_text.size()} >> (8 * i));

    std::vector<std::pair<const void*, size_t>> parts;
    parts.reserve(sorted.size() + 2);
    parts.emplace_back(length_field, sizeof(length_field));
    parts.emplace_back(header_text.data(), header_text.size());
    for (const TensorToWrite* tensor : sorted) parts.emplace_back(tensor->bytes.data(), tensor->bytes.size());
    return write_file_atomically(path, parts);
  } catch (const std::bad_alloc&) {
    return out_of_memory(path);
  } catch (const std::exception& error) {
    return internal_error(path + ": unexpected exception while writing: " + error.what());
  }
}

}  // namespace proxykv
