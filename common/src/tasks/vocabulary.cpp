#include "proxykv/tasks/vocabulary.h"

#include <cstdio>
#include <fstream>
#include <unordered_map>

namespace proxykv::tasks {
namespace {

// Every list below is part of the trained models' contract: append, never reorder or edit.

const char* const kSpecials[] = {"<pad>", "<unk>",  "<bos>", "<eos>", "<sep>",
                                 "<ctx>", "</ctx>", "<q>",   "<a>",   "<repeat>"};

// The order of TASKS.md's list.
const char* const kStructure[] = {"is",    ".",  "?",   "what", "the",   "magic", "number", "for",
                                  "value", "of", "var", "=",    "which", "equal", "and"};

// The words of kSentences other than structure words, in order of first use.
const char* const kFiller[] = {
    "grass",  "green",    "sky",     "blue",   "sun",    "yellow", "here",     "we",    "go",    "there",
    "back",   "again",    "sea",     "deep",   "wide",   "river",  "runs",     "down",  "to",    "moon",
    "bright", "at",       "night",   "birds",  "sing",   "in",     "morning",  "wind",  "blows", "over",
    "hills",  "snow",     "cold",    "white",  "fire",   "warm",   "a",        "small", "boat",  "sails",
    "on",     "lake",     "old",     "tree",   "stands", "field",  "children", "play",  "park",  "road",
    "long",   "quiet",    "rain",    "falls",  "roof",   "cat",    "sleeps",   "by",    "door",  "dog",
    "across", "yard",     "flowers", "grow",   "garden", "bread",  "fresh",    "soft",  "stars", "shine",
    "stone",  "hard",     "gray",    "leaves", "turn",   "red",    "autumn",   "milk",  "fish",  "swim",
    "house",  "walk",     "home",    "clock",  "slow",   "book",   "table",    "apple", "sweet", "clouds",
    "move",   "mountain", "tall",    "window", "open",   "horse",  "loud",     "water", "clear", "calm",
};

// Lengths 4 to 8 words, so that any filler budget of 4 or more words can be met exactly.
const char* const kSentences[] = {
    "the grass is green .",
    "the sky is blue .",
    "the sun is yellow .",
    "here we go .",
    "there and back again .",
    "the sea is deep and wide .",
    "the river runs down to the sea .",
    "the moon is bright at night .",
    "birds sing in the morning .",
    "the wind blows over the hills .",
    "the snow is cold and white .",
    "the fire is warm .",
    "a small boat sails on the lake .",
    "the old tree stands in the field .",
    "children play in the park .",
    "the road is long and quiet .",
    "rain falls on the roof .",
    "the cat sleeps by the door .",
    "the dog runs across the yard .",
    "flowers grow in the garden .",
    "the bread is fresh and soft .",
    "the stars shine at night .",
    "the sun is bright in the morning .",
    "the stone is hard and gray .",
    "leaves turn red in autumn .",
    "the milk is white .",
    "fish swim in the river .",
    "the house is red .",
    "we walk home .",
    "the clock is slow .",
    "the book is on the table .",
    "the apple is sweet .",
    "clouds move across the sky .",
    "the mountain is tall and green .",
    "the fire is bright .",
    "the window is open .",
    "the horse is in the field .",
    "the boat is slow .",
    "the dog is loud .",
    "the water is clear and calm .",
};

static_assert(sizeof(kSpecials) / sizeof(kSpecials[0]) == kNumSpecials);
static_assert(sizeof(kStructure) / sizeof(kStructure[0]) == kNumStructureWords);
static_assert(sizeof(kFiller) / sizeof(kFiller[0]) == kNumFillerWords);

template <std::size_t N>
std::vector<std::string> to_strings(const char* const (&words)[N]) {
  return std::vector<std::string>(words, words + N);
}

std::string numbered_word(char prefix, int i) {
  char buffer[8];
  std::snprintf(buffer, sizeof(buffer), "%c%03d", prefix, i);
  return buffer;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

const std::unordered_map<std::string_view, int32_t>& id_index() {
  static const auto* const index = [] {
    auto* map = new std::unordered_map<std::string_view, int32_t>();
    const auto& vocab = family_vocabulary();  // outlives the map: both are never destroyed
    for (std::size_t id = 0; id < vocab.size(); ++id) map->emplace(vocab[id], static_cast<int32_t>(id));
    return map;
  }();
  return *index;
}

}  // namespace

const std::vector<std::string>& special_tokens() {
  static const auto* const words = new std::vector<std::string>(to_strings(kSpecials));
  return *words;
}

const std::vector<std::string>& structure_words() {
  static const auto* const words = new std::vector<std::string>(to_strings(kStructure));
  return *words;
}

const std::vector<std::string>& filler_words() {
  static const auto* const words = new std::vector<std::string>(to_strings(kFiller));
  return *words;
}

const std::vector<std::string>& filler_sentences() {
  static const auto* const sentences = new std::vector<std::string>(to_strings(kSentences));
  return *sentences;
}

const std::vector<std::string>& joined_filler_sentences() {
  static const auto* const sentences = [] {
    const std::vector<std::string>& single = filler_sentences();
    auto* out = new std::vector<std::string>();
    for (std::size_t k = 0; k < single.size(); ++k) {
      const std::string& first = single[k];
      // Every filler sentence ends in " ." (the vocabulary test pins it).
      out->push_back(first.substr(0, first.size() - 2) + " and " + single[(k + 1) % single.size()]);
    }
    return out;
  }();
  return *sentences;
}

std::string key_word(int i) {
  return numbered_word('k', i);
}
std::string value_word(int i) {
  return numbered_word('v', i);
}
std::string digit_word(int d) {
  return std::string(1, static_cast<char>('0' + d));
}

const std::vector<std::string>& family_vocabulary() {
  static const auto* const vocab = [] {
    auto* words = new std::vector<std::string>();
    words->reserve(kFamilyVocabSize);
    for (const auto* list : {&special_tokens(), &structure_words(), &filler_words()}) {
      words->insert(words->end(), list->begin(), list->end());
    }
    for (int d = 0; d < kNumDigits; ++d) words->push_back(digit_word(d));
    for (int i = 0; i < kNumKeys; ++i) words->push_back(key_word(i));
    for (int i = 0; i < kNumValues; ++i) words->push_back(value_word(i));
    return words;
  }();
  return *vocab;
}

int32_t family_token_id(std::string_view word) {
  const auto& index = id_index();
  const auto it = index.find(word);
  return it == index.end() ? kUnkId : it->second;
}

std::vector<int32_t> family_encode(std::string_view text) {
  std::vector<int32_t> ids;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_ascii_space(text[i])) ++i;
    std::size_t end = i;
    while (end < text.size() && !is_ascii_space(text[end])) ++end;
    if (end > i) ids.push_back(family_token_id(text.substr(i, end - i)));
    i = end;
  }
  return ids;
}

std::string family_decode(const std::vector<int32_t>& ids) {
  const auto& vocab = family_vocabulary();
  std::string text;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) text += ' ';
    const int32_t id = ids[i];
    text += (id >= 0 && id < kFamilyVocabSize) ? vocab[id] : vocab[kUnkId];
  }
  return text;
}

nlohmann::ordered_json family_tokenizer_json() {
  using Json = nlohmann::ordered_json;
  const auto& vocab = family_vocabulary();

  Json added = Json::array();
  for (int32_t id = 0; id < kNumSpecials; ++id) {
    added.push_back(Json{{"id", id},
                         {"content", vocab[id]},
                         {"single_word", false},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"normalized", false},
                         {"special", true}});
  }
  Json vocab_json = Json::object();
  for (int32_t id = 0; id < kFamilyVocabSize; ++id) vocab_json[vocab[id]] = id;

  Json doc = Json::object();
  doc["version"] = "1.0";
  doc["truncation"] = nullptr;
  doc["padding"] = nullptr;
  doc["added_tokens"] = std::move(added);
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = Json{{"type", "WhitespaceSplit"}};
  doc["post_processor"] = nullptr;
  doc["decoder"] = nullptr;
  doc["model"] = Json{{"type", "WordLevel"}, {"vocab", std::move(vocab_json)}, {"unk_token", "<unk>"}};
  return doc;
}

Status write_family_tokenizer(const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return invalid_argument(path + ": cannot open for writing");
  out << family_tokenizer_json().dump(2) << "\n";
  out.close();
  if (!out) return Status(StatusCode::kResourceExhausted, path + ": write failed");
  return Status::ok();
}

}  // namespace proxykv::tasks
