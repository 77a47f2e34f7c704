// Fuzz-style robustness test: thousands of mutations of a valid file, each of which the reader must either refuse
// with a Status or accept with every tensor inside the mapping. Run it under -fsanitize=address,undefined too.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "proxykv/tensor/safetensors.h"
#include "safetensors_test_util.h"

namespace proxykv {
namespace {

using namespace std::string_literals;

constexpr int kMutations = 4000;
constexpr uint32_t kSeed = 20240611;

// Numbers chosen to hit the edges of the validation: signs, 64-bit limits, floats, exponents.
const std::vector<std::string> kHostileNumbers = {"-1",
                                                  "0",
                                                  "1",
                                                  "7",
                                                  "-0",
                                                  "1.5",
                                                  "1e30",
                                                  "2e3",
                                                  "4294967296",
                                                  "9223372036854775807",
                                                  "9223372036854775808",
                                                  "18446744073709551615",
                                                  "18446744073709551616",
                                                  "99999999999999999999999999",
                                                  "1099511627776",
                                                  "-9223372036854775808"};
const std::vector<std::string> kDTypeNames = {"F64", "F32", "F16",  "BF16",    "I64", "I32", "I16",
                                              "I8",  "U8",  "BOOL", "F8_E4M3", "U64", "",    "f32"};
const std::vector<std::string> kKeyNames = {"dtype", "shape", "data_offsets", "__metadata__", "extra", ""};
const std::string kInterestingBytes = "{}[]\",:-0123456789eE. \\\x00\xff"s;  // NUL included

std::vector<TensorToWrite> base_tensors() {
  std::mt19937 rng(1);
  auto make = [&](const std::string& name, DType dtype, std::vector<int64_t> shape) {
    size_t numel = 1;
    for (int64_t dim : shape) numel *= static_cast<size_t>(dim);
    return TensorToWrite{name, dtype, std::move(shape), test::random_bytes(numel * dtype_size(dtype), rng)};
  };
  return {make("a.weight", DType::kF32, {3, 4}),  make("b.bias", DType::kBF16, {5}), make("c.ids", DType::kI64, {2, 2}),
          make("d.empty", DType::kU8, {0, 3}),    make("e.mask", DType::kBool, {7}), make("f.scalar", DType::kI8, {}),
          make("g.half", DType::kF16, {2, 1, 3}), make("h.f64", DType::kF64, {2})};
}

// Spans [begin, end) of the header text that look like JSON numbers or strings, for token-aware mutations.
struct Token {
  size_t begin;
  size_t end;
};

std::vector<Token> find_tokens(const std::string& file, size_t header_end, bool strings) {
  std::vector<Token> tokens;
  size_t i = 8;
  while (i < header_end) {
    if (strings && file[i] == '"') {
      const size_t close = file.find('"', i + 1);
      if (close == std::string::npos || close >= header_end) break;
      tokens.push_back({i + 1, close});
      i = close + 1;
    } else if (!strings && (std::isdigit(static_cast<unsigned char>(file[i])) || file[i] == '-')) {
      size_t j = i + 1;
      while (j < header_end && std::isdigit(static_cast<unsigned char>(file[j]))) ++j;
      tokens.push_back({i, j});
      i = j;
    } else {
      ++i;
    }
  }
  return tokens;
}

class Mutator {
 public:
  explicit Mutator(uint32_t seed) : rng_(seed) {}

  size_t below(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  template <typename T>
  const T& pick(const std::vector<T>& items) {
    return items[below(items.size())];
  }

  // Applies one random mutation; returns its kind for the statistics.
  std::string mutate(std::string& file) {
    const size_t header_end = header_end_of(file);
    switch (below(10)) {
      case 0: {  // bit flip, mostly in the length field and header where the parser looks
        if (file.empty()) return "noop";
        const size_t at = below(4) != 0 ? below(header_end) : below(file.size());
        file[at] = static_cast<char>(file[at] ^ (1 << below(8)));
        return "bit_flip";
      }
      case 1: {  // byte overwrite in the header with a JSON-significant or random byte
        if (header_end <= 8) return "noop";
        const size_t at = 8 + below(header_end - 8);
        file[at] = below(2) ? kInterestingBytes[below(kInterestingBytes.size())] : static_cast<char>(below(256));
        return "byte_overwrite";
      }
      case 2: {  // rewrite the 8-byte length: random, nudged, or around the file size
        if (file.size() < 8) return "noop";
        const uint64_t length = test::read_le64(file);
        uint64_t value = 0;
        switch (below(4)) {
          case 0: value = std::uniform_int_distribution<uint64_t>()(rng_); break;
          case 1: value = length + below(17) - 8; break;
          case 2: value = file.size() - 8 + below(5) - 2; break;
          default: value = uint64_t{1} << below(64); break;
        }
        file.replace(0, 8, test::le64(value));
        return "length_field";
      }
      case 3:  // truncation anywhere, down to nothing
        file.resize(below(file.size() + 1));
        return "truncate";
      case 4: {  // insert random bytes (shifts everything after them)
        const size_t at = below(file.size() + 1);
        std::string inserted(1 + below(16), '\0');
        for (char& c : inserted) c = static_cast<char>(below(256));
        file.insert(at, inserted);
        return "insert";
      }
      case 5: {  // delete a span of the header
        if (header_end <= 8) return "noop";
        const size_t at = 8 + below(header_end - 8);
        file.erase(at, 1 + below(12));
        return "erase";
      }
      case 6: {  // replace a number in the header with a hostile one, keeping the length field consistent
        const std::vector<Token> numbers = find_tokens(file, header_end, /*strings=*/false);
        if (numbers.empty()) return "noop";
        const Token& number = pick(numbers);
        std::string replacement = below(3) ? pick(kHostileNumbers) : std::to_string(below(file.size() + 64));
        replace_in_header(file, number, replacement);
        return "number";
      }
      case 7: {  // replace a string (dtype, key or name) in the header, keeping the length field consistent
        const std::vector<Token> strings = find_tokens(file, header_end, /*strings=*/true);
        if (strings.empty()) return "noop";
        const Token& token = pick(strings);
        replace_in_header(file, token, below(2) ? pick(kDTypeNames) : pick(kKeyNames));
        return "string";
      }
      case 8: {  // swap a dtype for another: a same-size swap yields a valid file that reads differently
        std::vector<Token> dtypes;
        for (const Token& token : find_tokens(file, header_end, /*strings=*/true)) {
          if (dtype_from_name(file.substr(token.begin, token.end - token.begin))) dtypes.push_back(token);
        }
        if (dtypes.empty()) return "noop";
        replace_in_header(file, pick(dtypes), pick(kDTypeNames));
        return "dtype";
      }
      default: {  // copy one number over another: plausible offsets that now overlap or disagree with the shape
        const std::vector<Token> numbers = find_tokens(file, header_end, /*strings=*/false);
        if (numbers.size() < 2) return "noop";
        const Token& from = pick(numbers);
        const Token& to = pick(numbers);
        replace_in_header(file, to, file.substr(from.begin, from.end - from.begin));
        return "number_copy";
      }
    }
  }

 private:
  static size_t header_end_of(const std::string& file) {
    if (file.size() < 8) return file.size();
    const uint64_t length = test::read_le64(file);
    return length > file.size() - 8 ? file.size() : static_cast<size_t>(8 + length);
  }

  // Replaces a header token and, most of the time, fixes the length field so the data section stays in place
  // and the mutation reaches the semantic checks rather than failing at the JSON level.
  void replace_in_header(std::string& file, const Token& token, const std::string& replacement) {
    const int64_t growth = static_cast<int64_t>(replacement.size()) - static_cast<int64_t>(token.end - token.begin);
    file.replace(token.begin, token.end - token.begin, replacement);
    if (below(5) != 0 && file.size() >= 8) {
      file.replace(0, 8, test::le64(test::read_le64(file) + static_cast<uint64_t>(growth)));
    }
  }

  std::mt19937 rng_;
};

TEST(SafetensorsFuzz, MutatedFilesAreRefusedOrReadSafely) {
  test::TempDir dir;
  const std::string base_path = dir.file("base.safetensors");
  ASSERT_TRUE(write_safetensors(base_path, base_tensors(), {{"format", "pt"}, {"origin", "fuzz"}}).is_ok());
  const std::string base = test::read_bytes(base_path);
  ASSERT_TRUE(SafetensorsFile::open(base_path).is_ok());

  const std::string path = dir.file("mutated.safetensors");
  Mutator mutator(kSeed);
  std::map<std::string, int> outcomes;  // "ok" and the error codes, for the summary and the sanity checks
  uint64_t byte_sum = 0;
  for (int iteration = 0; iteration < kMutations; ++iteration) {
    std::string file = base;
    std::string kinds;
    const size_t mutation_count = 1 + mutator.below(3);
    for (size_t m = 0; m < mutation_count; ++m) kinds += mutator.mutate(file) + " ";
    test::write_bytes(path, file);
    SCOPED_TRACE("iteration " + std::to_string(iteration) + ": " + kinds);

    auto opened = SafetensorsFile::open(path);
    if (!opened.is_ok()) {
      const Status& status = opened.status();
      ++outcomes[status_code_name(status.code())];
      ASSERT_TRUE(status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kUnimplemented)
          << status.to_string();
      ASSERT_EQ(status.message().rfind(path + ": ", 0), 0u)
          << "message does not start with the path: " << status.message();
      // Messages quote bytes from the file; they must stay UTF-8 so that logs and JSON responses can carry them.
      ASSERT_NO_THROW(nlohmann::json(status.message()).dump()) << status.message();
      continue;
    }
    ++outcomes["ok"];
    const SafetensorsFile& reader = **opened;
    ASSERT_EQ(reader.file_size(), file.size());
    const uint8_t* map_begin = reader.file_data();
    const uint8_t* map_end = map_begin + reader.file_size();
    const uint8_t* data_begin = map_begin + 8 + test::read_le64(file);
    for (const std::string& name : reader.names()) {
      auto view = reader.get(name);
      ASSERT_TRUE(view.is_ok()) << view.status().to_string();
      uint64_t numel = 1;
      for (int64_t dim : view->shape) {
        ASSERT_GE(dim, 0);
        numel *= static_cast<uint64_t>(dim);
      }
      ASSERT_EQ(view->nbytes, numel * dtype_size(view->dtype)) << name;
      ASSERT_GE(view->data, data_begin) << name;
      ASSERT_LE(view->data, map_end) << name;
      ASSERT_LE(view->nbytes, static_cast<size_t>(map_end - view->data)) << name;
      // Touch every byte: out-of-bounds reads show up here under ASan, and the bytes must be the file's.
      for (size_t i = 0; i < view->nbytes; ++i) byte_sum += view->data[i];
      const size_t offset = static_cast<size_t>(view->data - map_begin);
      ASSERT_EQ(std::memcmp(view->data, file.data() + offset, view->nbytes), 0) << name;
    }
  }

  std::string summary;
  for (const auto& [outcome, count] : outcomes) summary += outcome + "=" + std::to_string(count) + " ";
  std::printf("[ fuzz     ] %d mutations: %s(byte sum %llu)\n", kMutations, summary.c_str(),
              static_cast<unsigned long long>(byte_sum));
  // The mutations must exercise both sides, or the test proves nothing.
  EXPECT_GT(outcomes["ok"], kMutations / 50);
  EXPECT_GT(outcomes["INVALID_ARGUMENT"], kMutations / 2);
}

}  // namespace
}  // namespace proxykv
