// Seeded generators of the task families of shared/TASKS.md. Templates (each word one token; docs/tasks.md):
//
//   niah_*             fact      the magic number for kXXX is d d d d .
//                      question  what is the magic number for kXXX ?                 answers  ["d d d d"]
//   niah_multiquery    question  what is the magic number for kA and kB and kC ?      answers  one per key
//   kv_retrieval       fact      kXXX is vYYY .
//                      question  what is the value of kXXX ?                         answers  ["vYYY"]
//   variable_tracking  facts     var kA = d d d d .  var kB = kA .  ...  var kE = kD .  (in chain order)
//                      question  which var equal d d d d ?                           answers  ["kA", ..., "kE"]
#include <algorithm>
#include <cstdio>
#include <unordered_set>
#include <utility>

#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::tasks {
namespace {

using Sentence = std::vector<std::string>;

constexpr const char* kNiahSingle = "niah_single";
constexpr const char* kNiahMultikey = "niah_multikey";
constexpr const char* kNiahMultivalue = "niah_multivalue";
constexpr const char* kNiahMultiquery = "niah_multiquery";
constexpr const char* kKvRetrieval = "kv_retrieval";
constexpr const char* kVariableTracking = "variable_tracking";

constexpr int kNumberDigits = 4;
constexpr int kDistinctNumbers = 10000;
constexpr int64_t kNiahFactWords = 7 + kNumberDigits;   // the magic number for k is d d d d .
constexpr int64_t kKvFactWords = 4;                     // k is v .
constexpr int64_t kChainHeadWords = 4 + kNumberDigits;  // var k = d d d d .
constexpr int64_t kChainHopWords = 5;                   // var k = k .

// ---- Platform-independent randomness ----

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(std::string_view text) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ull;
  }
  return hash;
}

// Each context gets its own stream, so context i is the same whatever n_contexts is. spec.queries is left out on
// purpose: asking more questions must not change the context.
uint64_t context_seed(const TaskSpec& spec, int index) {
  uint64_t h = splitmix64(spec.seed);
  h = splitmix64(h ^ fnv1a64(spec.task));
  h = splitmix64(h ^ static_cast<uint64_t>(spec.length_tokens));
  h = splitmix64(h ^ static_cast<uint64_t>(spec.facts));
  return splitmix64(h ^ static_cast<uint64_t>(index));
}

// Fisher-Yates with our own draw (std::shuffle's use of the generator is implementation-defined).
template <typename T>
void shuffle(std::vector<T>& items, std::mt19937_64& rng) {
  for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[uniform_below(rng, i)]);
}

// `count` distinct values of [0, universe), in random order (partial Fisher-Yates).
std::vector<int> sample_distinct(int universe, int count, std::mt19937_64& rng) {
  std::vector<int> pool(universe);
  for (int i = 0; i < universe; ++i) pool[i] = i;
  for (int i = 0; i < count; ++i) std::swap(pool[i], pool[i + uniform_below(rng, universe - i)]);
  pool.resize(count);
  return pool;
}

// ---- Words ----

Sentence split_words(std::string_view text) {
  Sentence words;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t end = i;
    while (end < text.size() && text[end] != ' ') ++end;
    if (end > i) words.emplace_back(text.substr(i, end - i));
    i = end;
  }
  return words;
}

std::string join(const Sentence& words) {
  std::string text;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) text += ' ';
    text += words[i];
  }
  return text;
}

// "0 4 1 2": a number as 4 spaced digits, leading zeros kept.
Sentence number_words(int number) {
  Sentence digits(kNumberDigits);
  for (int i = kNumberDigits - 1; i >= 0; --i) {
    digits[i] = digit_word(number % 10);
    number /= 10;
  }
  return digits;
}

Sentence concat(std::initializer_list<Sentence> parts) {
  Sentence words;
  for (const Sentence& part : parts) words.insert(words.end(), part.begin(), part.end());
  return words;
}

Sentence niah_fact(int key, int number) {
  return concat({{"the", "magic", "number", "for", key_word(key), "is"}, number_words(number), {"."}});
}

// ---- Haystack ----

struct Haystack {
  std::vector<Sentence> sentences;
  std::vector<int64_t> lengths;
};

Haystack make_haystack(const std::vector<std::string>& texts) {
  Haystack out;
  for (const std::string& text : texts) {
    out.sentences.push_back(split_words(text));
    out.lengths.push_back(static_cast<int64_t>(out.sentences.back().size()));
  }
  return out;
}

// reachable[g]: some sequence of the haystack's sentences has exactly g words (g in [0, budget]).
std::vector<char> reachable_lengths(const Haystack& h, int64_t budget) {
  std::vector<char> reachable(static_cast<std::size_t>(budget) + 1, 0);
  reachable[0] = 1;
  for (int64_t g = 1; g <= budget; ++g) {
    for (const int64_t length : h.lengths) {
      if (length <= g && reachable[g - length]) {
        reachable[g] = 1;
        break;
      }
    }
  }
  return reachable;
}

const Haystack& sentences_of(HaystackKind kind) {
  static const auto* const short_sentences = new Haystack(make_haystack(filler_sentences()));
  static const auto* const joined = new Haystack(make_haystack(joined_filler_sentences()));
  return kind == HaystackKind::kJoined ? *joined : *short_sentences;
}

// Indices of the haystack's sentences whose words add up to the largest total <= budget that they can make (with the
// short sentences, lengths 4..8, budget itself whenever it is 0 or at least 4; build_context hands the joined ones
// only budgets they make exactly). `reachable` is reachable_lengths(h, budget). Each step draws uniformly among the
// sentences that keep the rest reachable, so a long haystack is a uniform random sequence.
std::vector<int> draw_filler(const Haystack& h, const std::vector<char>& reachable, int64_t budget,
                             std::mt19937_64& rng) {
  int64_t gap = budget;
  while (!reachable[gap]) --gap;

  std::vector<int> picked;
  std::vector<int> candidates;
  while (gap > 0) {
    candidates.clear();
    for (std::size_t s = 0; s < h.lengths.size(); ++s) {
      if (h.lengths[s] <= gap && reachable[gap - h.lengths[s]]) candidates.push_back(static_cast<int>(s));
    }
    const int s = candidates[uniform_below(rng, candidates.size())];  // never empty: gap is reachable
    picked.push_back(s);
    gap -= h.lengths[s];
  }
  return picked;
}

// Filler sentences with the facts (kept in their order) at uniformly random sentence boundaries; several facts
// may share a boundary.
std::string build_context(const std::vector<Sentence>& facts, int64_t length_tokens, HaystackKind kind,
                          std::mt19937_64& rng) {
  int64_t fact_words = 0;
  for (const Sentence& fact : facts) fact_words += static_cast<int64_t>(fact.size());
  const int64_t budget = length_tokens - fact_words;
  // The joined sentences (9-16 words) cannot make budgets of 1-8 or 17 words; those take the short sentences, so
  // the length rule stays the short haystack's.
  const Haystack* h = &sentences_of(kind);
  std::vector<char> reachable = reachable_lengths(*h, budget);
  if (!reachable[static_cast<std::size_t>(budget)] && kind == HaystackKind::kJoined) {
    h = &sentences_of(HaystackKind::kShort);
    reachable = reachable_lengths(*h, budget);
  }
  const std::vector<int> filler = draw_filler(*h, reachable, budget, rng);

  std::vector<uint64_t> boundaries(facts.size());
  for (uint64_t& b : boundaries) b = uniform_below(rng, filler.size() + 1);
  std::sort(boundaries.begin(), boundaries.end());

  Sentence words;
  words.reserve(static_cast<std::size_t>(length_tokens));
  std::size_t next_fact = 0;
  for (std::size_t i = 0; i <= filler.size(); ++i) {
    while (next_fact < facts.size() && boundaries[next_fact] == i) {
      words.insert(words.end(), facts[next_fact].begin(), facts[next_fact].end());
      ++next_fact;
    }
    if (i < filler.size()) words.insert(words.end(), h->sentences[filler[i]].begin(), h->sentences[filler[i]].end());
  }
  return join(words);
}

// ---- Families ----

std::string niah_question(const std::vector<int>& keys) {
  Sentence words{"what", "is", "the", "magic", "number", "for"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) words.push_back("and");
    words.push_back(key_word(keys[i]));
  }
  words.push_back("?");
  return join(words);
}

// What a context's facts were made of; the queries are drawn from it after the context is built.
struct FamilyDraws {
  std::vector<int> keys, numbers, values;  // fact f: keys[f] with numbers[f] or values[f] (multivalue: keys[0])
  std::vector<std::vector<int>> chains;    // variable_tracking: the keys of chain c, holding numbers[c]
};

// The fact sentences, in context order.
std::vector<Sentence> make_facts(const TaskSpec& spec, std::mt19937_64& rng, FamilyDraws& d) {
  std::vector<Sentence> facts;
  const std::string& task = spec.task;
  if (task == kNiahSingle || task == kNiahMultikey || task == kNiahMultiquery) {
    d.keys = sample_distinct(kNumKeys, spec.facts, rng);
    d.numbers = sample_distinct(kDistinctNumbers, spec.facts, rng);
    for (int i = 0; i < spec.facts; ++i) facts.push_back(niah_fact(d.keys[i], d.numbers[i]));
  } else if (task == kNiahMultivalue) {
    d.keys = sample_distinct(kNumKeys, 1, rng);
    d.numbers = sample_distinct(kDistinctNumbers, spec.facts, rng);
    for (const int number : d.numbers) facts.push_back(niah_fact(d.keys[0], number));
  } else if (task == kKvRetrieval) {
    d.keys = sample_distinct(kNumKeys, spec.facts, rng);
    d.values = sample_distinct(kNumValues, spec.facts, rng);
    for (int i = 0; i < spec.facts; ++i) facts.push_back({key_word(d.keys[i]), "is", value_word(d.values[i]), "."});
  } else {  // variable_tracking
    const std::vector<int> keys = sample_distinct(kNumKeys, spec.facts * kChainKeys, rng);
    d.numbers = sample_distinct(kDistinctNumbers, spec.facts, rng);
    for (int c = 0; c < spec.facts; ++c) {
      d.chains.emplace_back(keys.begin() + c * kChainKeys, keys.begin() + (c + 1) * kChainKeys);
    }
    // A uniformly random interleaving of the chains that keeps each chain in order: a variable is assigned
    // before it is read, as a left-to-right reader needs.
    std::vector<int> order;
    for (int c = 0; c < spec.facts; ++c) order.insert(order.end(), kChainKeys, c);
    shuffle(order, rng);
    std::vector<int> next(spec.facts, 0);
    for (const int c : order) {
      const int hop = next[c]++;
      const std::vector<int>& chain = d.chains[c];
      if (hop == 0) {
        facts.push_back(concat({{"var", key_word(chain[0]), "="}, number_words(d.numbers[c]), {"."}}));
      } else {
        facts.push_back({"var", key_word(chain[hop]), "=", key_word(chain[hop - 1]), "."});
      }
    }
  }
  return facts;
}

// Drawn after the context so that spec.queries changes nothing before them.
std::vector<TaskQuery> make_queries(const TaskSpec& spec, const FamilyDraws& d, std::mt19937_64& rng) {
  std::vector<TaskQuery> queries;
  const std::string& task = spec.task;
  if (task == kNiahSingle) {
    queries.push_back({niah_question({d.keys[0]}), {join(number_words(d.numbers[0]))}});
  } else if (task == kNiahMultivalue) {
    TaskQuery query{niah_question({d.keys[0]}), {}};
    for (const int number : d.numbers) query.answers.push_back(join(number_words(number)));
    queries.push_back(std::move(query));
  } else if (task == kNiahMultikey) {
    for (int q = 0; q < spec.queries; ++q) {
      const auto f = uniform_below(rng, d.keys.size());
      queries.push_back({niah_question({d.keys[f]}), {join(number_words(d.numbers[f]))}});
    }
  } else if (task == kNiahMultiquery) {
    const int per_question = std::min(kMultiqueryKeysPerQuestion, spec.facts);
    for (int q = 0; q < spec.queries; ++q) {
      // Distinct keys within a question; across questions facts repeat (drawn with replacement).
      const std::vector<int> picked = sample_distinct(spec.facts, per_question, rng);
      std::vector<int> keys;
      TaskQuery query;
      for (const int f : picked) {
        keys.push_back(d.keys[f]);
        query.answers.push_back(join(number_words(d.numbers[f])));
      }
      query.question = niah_question(keys);
      queries.push_back(std::move(query));
    }
  } else if (task == kKvRetrieval) {
    for (int q = 0; q < spec.queries; ++q) {
      const auto f = uniform_below(rng, d.keys.size());
      queries.push_back({"what is the value of " + key_word(d.keys[f]) + " ?", {value_word(d.values[f])}});
    }
  } else {  // variable_tracking
    for (int q = 0; q < spec.queries; ++q) {
      const auto c = uniform_below(rng, d.chains.size());
      TaskQuery query{"which var equal " + join(number_words(d.numbers[c])) + " ?", {}};
      for (const int key : d.chains[c]) query.answers.push_back(key_word(key));
      queries.push_back(std::move(query));
    }
  }
  return queries;
}

// Words the facts of one context take, and the keys they need; both follow from the spec alone.
int64_t fact_words(const TaskSpec& spec) {
  if (spec.task == kKvRetrieval) return kKvFactWords * spec.facts;
  if (spec.task == kVariableTracking) return (kChainHeadWords + kChainHopWords * (kChainKeys - 1)) * spec.facts;
  return kNiahFactWords * spec.facts;
}

int keys_needed(const TaskSpec& spec) {
  if (spec.task == kNiahMultivalue) return 1;
  if (spec.task == kVariableTracking) return spec.facts * kChainKeys;
  return spec.facts;
}

Status validate(const TaskSpec& spec) {
  const std::string prefix = "task spec '" + spec.task + "': ";
  if (!is_task_family(spec.task)) {
    std::string known;
    for (const std::string& name : task_families()) known += (known.empty() ? "" : ", ") + name;
    return invalid_argument("unknown task '" + spec.task + "' (known: " + known + ")");
  }
  if (spec.length_tokens < 1 || spec.length_tokens > kMaxLengthTokens) {
    return invalid_argument(prefix + "length_tokens must be in [1, " + std::to_string(kMaxLengthTokens) + "], got " +
                            std::to_string(spec.length_tokens));
  }
  if (spec.facts < 1) return invalid_argument(prefix + "facts must be >= 1, got " + std::to_string(spec.facts));
  if (spec.task == kNiahSingle && spec.facts != 1) {
    return invalid_argument(prefix + "niah_single holds exactly one fact, got facts = " + std::to_string(spec.facts) +
                            " (use niah_multikey for more)");
  }
  if (spec.queries < 1) return invalid_argument(prefix + "queries must be >= 1, got " + std::to_string(spec.queries));
  if (spec.n_contexts < 1) {
    return invalid_argument(prefix + "n_contexts must be >= 1, got " + std::to_string(spec.n_contexts));
  }
  if (keys_needed(spec) > kNumKeys) {
    return invalid_argument(prefix + "facts = " + std::to_string(spec.facts) + " needs " +
                            std::to_string(keys_needed(spec)) + " distinct keys, the vocabulary has " +
                            std::to_string(kNumKeys));
  }
  if (spec.task == kNiahMultivalue && spec.facts > kDistinctNumbers) {
    return invalid_argument(prefix + "facts must be <= " + std::to_string(kDistinctNumbers));
  }
  if (fact_words(spec) > spec.length_tokens) {
    return invalid_argument(prefix + std::to_string(spec.facts) + " facts take " + std::to_string(fact_words(spec)) +
                            " tokens, more than length_tokens = " + std::to_string(spec.length_tokens));
  }
  return Status::ok();
}

std::string context_id(const TaskSpec& spec, int index) {
  char number[16];
  std::snprintf(number, sizeof(number), "%04d", index);
  return spec.task + "-" + std::to_string(spec.length_tokens) + "-" + number;
}

}  // namespace

uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  // Accept draws >= 2^64 mod bound: what remains is a whole number of copies of [0, bound).
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

const std::vector<std::string>& task_families() {
  static const auto* const families = new std::vector<std::string>{kNiahSingle,     kNiahMultikey, kNiahMultivalue,
                                                                   kNiahMultiquery, kKvRetrieval,  kVariableTracking};
  return *families;
}

bool is_task_family(std::string_view task) {
  const auto& families = task_families();
  return std::find(families.begin(), families.end(), task) != families.end();
}

const char* haystack_kind_name(HaystackKind kind) {
  return kind == HaystackKind::kJoined ? "joined" : "short";
}

Result<HaystackKind> parse_haystack_kind(std::string_view name) {
  for (const HaystackKind kind : {HaystackKind::kShort, HaystackKind::kJoined}) {
    if (name == haystack_kind_name(kind)) return kind;
  }
  return invalid_argument("haystack must be \"short\" or \"joined\", got \"" + std::string(name) + "\"");
}

int default_facts(std::string_view task) {
  if (task == kNiahSingle) return 1;
  if (task == kKvRetrieval) return 16;
  if (task == kVariableTracking) return 2;
  return 4;
}

Result<std::vector<TaskContext>> generate_tasks(const TaskSpec& spec) {
  PROXYKV_RETURN_IF_ERROR(validate(spec));
  std::vector<TaskContext> contexts;
  contexts.reserve(static_cast<std::size_t>(spec.n_contexts));
  for (int i = 0; i < spec.n_contexts; ++i) {
    std::mt19937_64 rng(context_seed(spec, i));
    FamilyDraws draws;
    // Keys and numbers are drawn in random order, so the facts need no shuffle; multivalue answers follow the
    // order of the facts in the context.
    const std::vector<Sentence> facts = make_facts(spec, rng, draws);
    TaskContext context;
    context.id = context_id(spec, i);
    context.task = spec.task;
    context.context = build_context(facts, spec.length_tokens, spec.haystack, rng);
    context.queries = make_queries(spec, draws, rng);
    contexts.push_back(std::move(context));
  }
  return contexts;
}

}  // namespace proxykv::tasks
