#include "proxykv/model/tokenizer_pipeline.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv::tok {
namespace {

// Sequences may nest; a bound keeps a hostile file from recursing deeply.
constexpr int kMaxSequenceDepth = 8;

// openai/gpt-2 encoder.py's pattern, used by the ByteLevel pre-tokenizer when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// HF's Whitespace pre-tokenizer pattern \w+|[^\w\s]+ with the Rust regex crate's Unicode \w spelled out
// (PCRE2's \w lacks marks and join controls).
constexpr std::string_view kWhitespacePattern =
    R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\s]+)";

struct Piece {
  std::size_t begin;
  std::size_t end;
  bool is_match;
};

Result<std::string> read_type(const Json& config, const JsonPath& at) {
  if (!config.is_object()) return at.invalid(std::string("must be an object, not ") + json_type_phrase(config));
  return require_string(config, at, "type");
}

Result<SplitBehavior> read_behavior(const Json& config, const JsonPath& at, bool required) {
  const auto it = config.find("behavior");
  if (it == config.end() || it->is_null()) {
    if (required) return at.key("behavior").invalid("is missing");
    return SplitBehavior::kIsolated;
  }
  PROXYKV_ASSIGN_OR_RETURN(const std::string name, read_string(config, at, "behavior", ""));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return at.key("behavior").unsupported(name);
}

// Fails with the key named when `config` holds a Sequence member that is not an array.
Result<const Json*> read_sequence(const Json& config, const JsonPath& at, std::string_view member, int depth) {
  if (depth >= kMaxSequenceDepth) return at.invalid("nests Sequences too deeply");
  return require_member(config, at, member, Json::value_t::array, "an array");
}

std::string trim_whitespace(std::string_view text, bool left, bool right) {
  std::size_t begin = 0;
  std::size_t end = text.size();
  if (left) {
    while (begin < end) {
      std::size_t next = begin;
      if (!is_whitespace(next_code_point(text, next))) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      std::size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      std::size_t next = start;
      if (!is_whitespace(next_code_point(text, next))) break;
      end = start;
    }
  }
  return std::string(text.substr(begin, end - begin));
}

std::string replace_all(std::string_view text, const SplitPattern& pattern, std::string_view replacement) {
  std::string out;
  std::size_t previous = 0;
  for (const TextSpan& span : pattern.find_all(text)) {
    out.append(text.substr(previous, span.begin - previous));
    out.append(replacement);
    previous = span.end;
  }
  out.append(text.substr(previous));
  return out;
}

}  // namespace

// ---- SplitPattern ----

Result<SplitPattern> SplitPattern::from_json(const Json& config, const JsonPath& at) {
  if (!config.is_object()) return at.invalid(std::string("must be an object, not ") + json_type_phrase(config));
  if (config.contains("Regex")) {
    PROXYKV_ASSIGN_OR_RETURN(const std::string pattern, require_string(config, at, "Regex"));
    auto compiled = regex(pattern);
    if (!compiled.is_ok()) return at.key("Regex").invalid(compiled.status().message());
    return compiled;
  }
  if (config.contains("String")) {
    PROXYKV_ASSIGN_OR_RETURN(std::string text, require_string(config, at, "String"));
    return literal(std::move(text));
  }
  return at.invalid("must hold a \"Regex\" or a \"String\"");
}

Result<SplitPattern> SplitPattern::regex(std::string_view pattern) {
  PROXYKV_ASSIGN_OR_RETURN(RegexPattern compiled, RegexPattern::compile(pattern));
  SplitPattern split;
  split.regex_ = std::move(compiled);
  return split;
}

SplitPattern SplitPattern::literal(std::string text) {
  SplitPattern split;
  split.literal_ = std::move(text);
  return split;
}

SplitPattern SplitPattern::char_class(CharClass char_class) {
  SplitPattern split;
  split.char_class_ = char_class;
  return split;
}

std::vector<TextSpan> SplitPattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<TextSpan> spans;
  if (char_class_) {
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t begin = pos;
      const char32_t cp = next_code_point(text, pos);
      bool hit = false;
      switch (*char_class_) {
        case CharClass::kWhitespace: hit = is_whitespace(cp); break;
        case CharClass::kNumeric: hit = is_numeric(cp); break;
        case CharClass::kPunctuation: hit = is_punctuation(cp); break;
      }
      if (hit) spans.push_back({begin, pos});
    }
    return spans;
  }
  if (literal_.empty()) return spans;
  std::size_t pos = text.find(literal_);
  while (pos != std::string_view::npos) {
    spans.push_back({pos, pos + literal_.size()});
    pos = text.find(literal_, pos + literal_.size());
  }
  return spans;
}

std::vector<std::string> split_text(std::string_view text, const SplitPattern& pattern, SplitBehavior behavior,
                                    bool invert) {
  // Cover the text with alternating gaps and matches, as HF's Pattern::find_matches does.
  std::vector<Piece> pieces;
  std::size_t previous = 0;
  for (const TextSpan& span : pattern.find_all(text)) {
    if (span.begin > previous) pieces.push_back({previous, span.begin, false});
    pieces.push_back({span.begin, span.end, true});
    previous = span.end;
  }
  if (previous < text.size()) pieces.push_back({previous, text.size(), false});
  if (invert) {
    for (Piece& piece : pieces) piece.is_match = !piece.is_match;
  }

  // Then apply the behavior (tokenizers/src/tokenizer/normalizer.rs, NormalizedString::split).
  std::vector<Piece> kept;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Piece& piece : pieces) {
        if (!piece.is_match) kept.push_back(piece);
      }
      break;
    case SplitBehavior::kIsolated: kept = pieces; break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Piece& piece : pieces) {
        if (piece.is_match && !previous_match && !kept.empty()) {
          kept.back().end = piece.end;
        } else {
          kept.push_back(piece);
        }
        previous_match = piece.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().begin = it->begin;
        } else {
          kept.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Piece& piece : pieces) {
        if (piece.is_match == previous_match && !kept.empty()) {
          kept.back().end = piece.end;
        } else {
          kept.push_back(piece);
        }
        previous_match = piece.is_match;
      }
      break;
  }
  std::vector<std::string> out;
  out.reserve(kept.size());
  for (const Piece& piece : kept) {
    if (piece.end > piece.begin) out.emplace_back(text.substr(piece.begin, piece.end - piece.begin));
  }
  return out;
}

// ---- Normalizer ----

Result<Normalizer> Normalizer::from_json(const Json& config, const JsonPath& at) {
  Normalizer normalizer;
  if (!config.is_null()) PROXYKV_RETURN_IF_ERROR(normalizer.append(config, at, 0));
  return normalizer;
}

Status Normalizer::append(const Json& config, const JsonPath& at, int depth) {
  PROXYKV_ASSIGN_OR_RETURN(const std::string type, read_type(config, at));
  if (type == "Sequence") {
    PROXYKV_ASSIGN_OR_RETURN(const Json* parts, read_sequence(config, at, "normalizers", depth));
    for (std::size_t i = 0; i < parts->size(); ++i) {
      PROXYKV_RETURN_IF_ERROR(append((*parts)[i], at.key("normalizers").index(i), depth + 1));
    }
    return Status::ok();
  }
  Step step{Kind::kNfc};
  if (type == "NFC") {
    step.kind = Kind::kNfc;
  } else if (type == "NFD") {
    step.kind = Kind::kNfd;
  } else if (type == "NFKC") {
    step.kind = Kind::kNfkc;
  } else if (type == "NFKD") {
    step.kind = Kind::kNfkd;
  } else if (type == "Lowercase") {
    step.kind = Kind::kLowercase;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    PROXYKV_ASSIGN_OR_RETURN(step.strip_left, read_bool(config, at, "strip_left", true));
    PROXYKV_ASSIGN_OR_RETURN(step.strip_right, read_bool(config, at, "strip_right", true));
  } else if (type == "Prepend") {
    step.kind = Kind::kPrepend;
    PROXYKV_ASSIGN_OR_RETURN(step.text, require_string(config, at, "prepend"));
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    PROXYKV_ASSIGN_OR_RETURN(const Json* pattern,
                             require_member(config, at, "pattern", Json::value_t::object, "an object"));
    PROXYKV_ASSIGN_OR_RETURN(step.pattern, SplitPattern::from_json(*pattern, at.key("pattern")));
    PROXYKV_ASSIGN_OR_RETURN(step.text, require_string(config, at, "content"));
  } else {
    return at.key("type").unsupported(type);
  }
  steps_.push_back(std::move(step));
  return Status::ok();
}

std::string Normalizer::normalize(std::string text) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kNfc: text = unicode_normalize(text, NormalizationForm::kNfc); break;
      case Kind::kNfd: text = unicode_normalize(text, NormalizationForm::kNfd); break;
      case Kind::kNfkc: text = unicode_normalize(text, NormalizationForm::kNfkc); break;
      case Kind::kNfkd: text = unicode_normalize(text, NormalizationForm::kNfkd); break;
      case Kind::kLowercase: text = unicode_lowercase(text); break;
      case Kind::kStrip: text = trim_whitespace(text, step.strip_left, step.strip_right); break;
      case Kind::kPrepend:
        // HF prepends only to non-empty text.
        if (!text.empty()) text.insert(0, step.text);
        break;
      case Kind::kReplace: text = replace_all(text, *step.pattern, step.text); break;
    }
  }
  return text;
}

// ---- PreTokenizer ----

Result<PreTokenizer> PreTokenizer::from_json(const Json& config, const JsonPath& at) {
  PreTokenizer pre_tokenizer;
  if (!config.is_null()) PROXYKV_RETURN_IF_ERROR(pre_tokenizer.append(config, at, 0));
  return pre_tokenizer;
}

Status PreTokenizer::append(const Json& config, const JsonPath& at, int depth) {
  PROXYKV_ASSIGN_OR_RETURN(const std::string type, read_type(config, at));
  const auto split_step = [](SplitPattern pattern, SplitBehavior behavior, bool invert) {
    Step step{Kind::kSplit};
    step.pattern = std::move(pattern);
    step.behavior = behavior;
    step.invert = invert;
    return step;
  };
  if (type == "Sequence") {
    PROXYKV_ASSIGN_OR_RETURN(const Json* parts, read_sequence(config, at, "pretokenizers", depth));
    for (std::size_t i = 0; i < parts->size(); ++i) {
      PROXYKV_RETURN_IF_ERROR(append((*parts)[i], at.key("pretokenizers").index(i), depth + 1));
    }
  } else if (type == "Split") {
    PROXYKV_ASSIGN_OR_RETURN(const Json* pattern_config,
                             require_member(config, at, "pattern", Json::value_t::object, "an object"));
    PROXYKV_ASSIGN_OR_RETURN(SplitPattern pattern, SplitPattern::from_json(*pattern_config, at.key("pattern")));
    PROXYKV_ASSIGN_OR_RETURN(const SplitBehavior behavior, read_behavior(config, at, /*required=*/true));
    PROXYKV_ASSIGN_OR_RETURN(const bool invert, read_bool(config, at, "invert", false));
    steps_.push_back(split_step(std::move(pattern), behavior, invert));
  } else if (type == "ByteLevel") {
    PROXYKV_ASSIGN_OR_RETURN(const bool add_prefix_space, read_bool(config, at, "add_prefix_space", true));
    PROXYKV_ASSIGN_OR_RETURN(const bool use_regex, read_bool(config, at, "use_regex", true));
    if (add_prefix_space) steps_.push_back(Step{Kind::kPrefixSpace});
    if (use_regex) {
      PROXYKV_ASSIGN_OR_RETURN(SplitPattern gpt2, SplitPattern::regex(kGpt2Pattern));
      steps_.push_back(split_step(std::move(gpt2), SplitBehavior::kIsolated, false));
    }
    steps_.push_back(Step{Kind::kByteLevelMap});
  } else if (type == "Whitespace") {
    // Keeps the matches of \w+|[^\w\s]+ and drops the rest.
    PROXYKV_ASSIGN_OR_RETURN(SplitPattern words, SplitPattern::regex(kWhitespacePattern));
    steps_.push_back(split_step(std::move(words), SplitBehavior::kRemoved, /*invert=*/true));
  } else if (type == "WhitespaceSplit") {
    steps_.push_back(
        split_step(SplitPattern::char_class(SplitPattern::CharClass::kWhitespace), SplitBehavior::kRemoved, false));
  } else if (type == "Digits") {
    PROXYKV_ASSIGN_OR_RETURN(const bool individual, read_bool(config, at, "individual_digits", false));
    steps_.push_back(split_step(SplitPattern::char_class(SplitPattern::CharClass::kNumeric),
                                individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false));
  } else if (type == "Punctuation") {
    PROXYKV_ASSIGN_OR_RETURN(const SplitBehavior behavior, read_behavior(config, at, /*required=*/false));
    steps_.push_back(split_step(SplitPattern::char_class(SplitPattern::CharClass::kPunctuation), behavior, false));
  } else if (type == "BertPreTokenizer") {
    steps_.push_back(
        split_step(SplitPattern::char_class(SplitPattern::CharClass::kWhitespace), SplitBehavior::kRemoved, false));
    steps_.push_back(
        split_step(SplitPattern::char_class(SplitPattern::CharClass::kPunctuation), SplitBehavior::kIsolated, false));
  } else if (type == "CharDelimiterSplit") {
    PROXYKV_ASSIGN_OR_RETURN(std::string delimiter, require_string(config, at, "delimiter"));
    if (delimiter.empty()) return at.key("delimiter").invalid("must not be empty");
    steps_.push_back(split_step(SplitPattern::literal(std::move(delimiter)), SplitBehavior::kRemoved, false));
  } else {
    return at.key("type").unsupported(type);
  }
  return Status::ok();
}

std::vector<std::string> PreTokenizer::pre_tokenize(std::string text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(std::move(text));
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kSplit: {
        std::vector<std::string> next;
        for (const std::string& piece : pieces) {
          for (std::string& part : split_text(piece, *step.pattern, step.behavior, step.invert)) {
            next.push_back(std::move(part));
          }
        }
        pieces = std::move(next);
        break;
      }
      case Kind::kPrefixSpace:
        for (std::string& piece : pieces) {
          if (piece.front() != ' ') piece.insert(piece.begin(), ' ');
        }
        break;
      case Kind::kByteLevelMap:
        for (std::string& piece : pieces) piece = ByteLevelAlphabet::instance().encode(piece);
        break;
    }
  }
  return pieces;
}

// ---- Decoder ----

Result<Decoder> Decoder::from_json(const Json& config, const JsonPath& at) {
  Decoder decoder;
  if (!config.is_null()) {
    decoder.configured_ = true;
    PROXYKV_RETURN_IF_ERROR(decoder.append(config, at, 0));
  }
  return decoder;
}

Status Decoder::append(const Json& config, const JsonPath& at, int depth) {
  PROXYKV_ASSIGN_OR_RETURN(const std::string type, read_type(config, at));
  if (type == "Sequence") {
    PROXYKV_ASSIGN_OR_RETURN(const Json* parts, read_sequence(config, at, "decoders", depth));
    for (std::size_t i = 0; i < parts->size(); ++i) {
      PROXYKV_RETURN_IF_ERROR(append((*parts)[i], at.key("decoders").index(i), depth + 1));
    }
    return Status::ok();
  }
  Step step{Kind::kByteLevel};
  if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    PROXYKV_ASSIGN_OR_RETURN(const std::string content, require_string(config, at, "content"));
    std::size_t pos = 0;
    if (content.empty() || !is_valid_utf8(content) || (next_code_point(content, pos), pos != content.size())) {
      return at.key("content").invalid("must be a single character");
    }
    pos = 0;
    step.strip_char = next_code_point(content, pos);
    PROXYKV_ASSIGN_OR_RETURN(const int64_t start, read_int(config, at, "start", 0));
    PROXYKV_ASSIGN_OR_RETURN(const int64_t stop, read_int(config, at, "stop", 0));
    if (start < 0 || stop < 0) return at.invalid("start and stop must not be negative");
    step.strip_start = static_cast<std::size_t>(start);
    step.strip_stop = static_cast<std::size_t>(stop);
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    PROXYKV_ASSIGN_OR_RETURN(const Json* pattern,
                             require_member(config, at, "pattern", Json::value_t::object, "an object"));
    PROXYKV_ASSIGN_OR_RETURN(step.pattern, SplitPattern::from_json(*pattern, at.key("pattern")));
    PROXYKV_ASSIGN_OR_RETURN(step.text, require_string(config, at, "content"));
  } else {
    return at.key("type").unsupported(type);
  }
  steps_.push_back(std::move(step));
  return Status::ok();
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  if (!configured_) {
    std::string joined;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) joined += ' ';
      joined += tokens[i];
    }
    return joined;
  }
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::instance();
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel: {
        // A token made only of alphabet characters stands for bytes; any other token is taken as it is.
        std::string bytes;
        for (const std::string& token : tokens) {
          std::string token_bytes;
          bool all_mapped = true;
          std::size_t pos = 0;
          while (pos < token.size() && all_mapped) {
            const int byte = alphabet.decode_code_point(next_code_point(token, pos));
            if (byte < 0) all_mapped = false;
            token_bytes.push_back(static_cast<char>(byte));
          }
          bytes += all_mapped ? token_bytes : token;
        }
        tokens.assign(1, sanitize_utf8(bytes));
        break;
      }
      case Kind::kByteFallback: {
        std::vector<std::string> next;
        std::string pending;
        const auto flush = [&] {
          if (pending.empty()) return;
          if (is_valid_utf8(pending)) {
            next.push_back(pending);
          } else {
            for (std::size_t i = 0; i < pending.size(); ++i) next.emplace_back("\xEF\xBF\xBD");
          }
          pending.clear();
        };
        for (std::string& token : tokens) {
          const bool byte_token = token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' &&
                                  std::isxdigit(static_cast<unsigned char>(token[3])) &&
                                  std::isxdigit(static_cast<unsigned char>(token[4]));
          if (byte_token) {
            pending.push_back(static_cast<char>(std::stoi(token.substr(3, 2), nullptr, 16)));
          } else {
            flush();
            next.push_back(std::move(token));
          }
        }
        flush();
        tokens = std::move(next);
        break;
      }
      case Kind::kFuse: {
        std::string fused;
        for (const std::string& token : tokens) fused += token;
        tokens.clear();
        tokens.push_back(std::move(fused));
        break;
      }
      case Kind::kStrip:
        for (std::string& token : tokens) {
          std::vector<std::pair<char32_t, std::size_t>> chars;  // code point, byte offset
          std::size_t pos = 0;
          while (pos < token.size()) {
            const std::size_t at = pos;
            chars.emplace_back(next_code_point(token, pos), at);
          }
          std::size_t start_cut = 0;
          while (start_cut < std::min(step.strip_start, chars.size()) && chars[start_cut].first == step.strip_char) {
            ++start_cut;
          }
          std::size_t stop_cut = chars.size();
          for (std::size_t i = 0; i < step.strip_stop && stop_cut > start_cut; ++i) {
            if (chars[stop_cut - 1].first != step.strip_char) break;
            --stop_cut;
          }
          const std::size_t begin = start_cut < chars.size() ? chars[start_cut].second : token.size();
          const std::size_t end = stop_cut < chars.size() ? chars[stop_cut].second : token.size();
          token = token.substr(begin, end > begin ? end - begin : 0);
        }
        break;
      case Kind::kReplace:
        for (std::string& token : tokens) token = replace_all(token, *step.pattern, step.text);
        break;
    }
  }
  std::string joined;
  for (const std::string& token : tokens) joined += token;
  return joined;
}

}  // namespace proxykv::tok
