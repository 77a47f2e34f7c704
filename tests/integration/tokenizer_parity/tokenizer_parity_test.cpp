// Tokenizer parity: proxykv::Tokenizer on the real Qwen3 tokenizer.json must give exactly the ids of the
// reference implementation (transformers.js's port of HF tokenizers, see ref_encode.mjs) for every corpus string,
// and decode(encode(s)) must give the text back. Run through run.sh, which produces the reference ids and passes
//   PROXYKV_TOKENIZER_PARITY_REFERENCE  the ref_encode.mjs output {"tokenizer_json": ..., "ids": [[...], ...]}
//   PROXYKV_TOKENIZER_PARITY_CORPUS     tests/data/tokenizer_corpus.json
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/model/tokenizer.h"
#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv {
namespace {

using nlohmann::json;

constexpr std::size_t kMismatchesToShow = 5;

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ADD_FAILURE() << "cannot open " << path;
  std::stringstream contents;
  contents << in.rdbuf();
  return json::parse(contents.str());
}

std::string ids_text(const std::vector<int32_t>& ids) {
  return json(ids).dump();
}

class TokenizerParity : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* reference_path = std::getenv("PROXYKV_TOKENIZER_PARITY_REFERENCE");
    const char* corpus_path = std::getenv("PROXYKV_TOKENIZER_PARITY_CORPUS");
    if (reference_path == nullptr || corpus_path == nullptr) {
      GTEST_SKIP() << "PROXYKV_TOKENIZER_PARITY_REFERENCE/_CORPUS not set; run tests/integration/tokenizer_parity/"
                      "run.sh (ctest -R tokenizer_parity)";
    }
    reference_ = read_json(reference_path);
    corpus_ = read_json(corpus_path).get<std::vector<std::string>>();
    auto tokenizer = Tokenizer::from_file(reference_.at("tokenizer_json").get<std::string>());
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_.emplace(std::move(tokenizer).value());
  }

  json reference_;
  std::vector<std::string> corpus_;
  std::optional<Tokenizer> tokenizer_;
};

TEST_F(TokenizerParity, IdsMatchTheReferenceForEveryString) {
  const auto& reference_ids = reference_.at("ids");
  ASSERT_EQ(reference_ids.size(), corpus_.size()) << "reference and corpus disagree in length; rerun run.sh";
  ASSERT_GE(corpus_.size(), 220u);

  std::size_t identical = 0;
  std::size_t shown = 0;
  std::size_t total_tokens = 0;
  std::ostringstream mismatches;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < corpus_.size(); ++i) {
    const std::vector<int32_t> ours = tokenizer_->encode(corpus_[i]);
    const auto expected = reference_ids[i].get<std::vector<int32_t>>();
    total_tokens += ours.size();
    if (ours == expected) {
      ++identical;
    } else if (shown++ < kMismatchesToShow) {
      mismatches << "  [" << i << "] " << json(corpus_[i]).dump() << "\n    proxykv:   " << ids_text(ours)
                 << "\n    reference: " << ids_text(expected) << "\n";
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "tokenizer parity vs " << reference_.value("reference", std::string("reference")) << ": "
            << corpus_.size() << " strings, " << identical << " identical (" << total_tokens << " tokens, "
            << seconds * 1e3 << " ms)\n";
  EXPECT_EQ(identical, corpus_.size()) << "first mismatches:\n" << mismatches.str();
}

TEST_F(TokenizerParity, DecodeRoundTripsEveryString) {
  std::size_t shown = 0;
  for (std::size_t i = 0; i < corpus_.size(); ++i) {
    // The Qwen3 normalizer is NFC, so encoding loses the difference between canonically equivalent spellings
    // (e + U+0301 comes back as é): what must round-trip is the NFC form of the input.
    const std::string expected = tok::unicode_normalize(corpus_[i], tok::NormalizationForm::kNfc);
    const std::string decoded = tokenizer_->decode(tokenizer_->encode(corpus_[i]));
    if (decoded != expected && shown++ < kMismatchesToShow) {
      ADD_FAILURE() << "[" << i << "] " << json(corpus_[i]).dump() << " decodes to " << json(decoded).dump();
    }
  }
  EXPECT_EQ(shown, 0u);
}

}  // namespace
}  // namespace proxykv
