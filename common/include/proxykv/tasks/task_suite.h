// The long-context task suite (shared/TASKS.md, docs/tasks.md): the JSONL interchange format, the seeded
// generators of the six task families, and RULER's string_match_all metric.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "proxykv/core/status.h"

namespace proxykv::tasks {

// ---- Interchange format: one JSON object per line ----
// {"id": "niah_multikey-2048-0007", "task": "niah_multikey", "context": "the grass is green . ...",
//  "queries": [{"question": "what is the magic number for k017 ?", "answers": ["4 0 9 1"]}]}

struct TaskQuery {
  std::string question;              // words of the question, without <q> and <a>
  std::vector<std::string> answers;  // every one must occur in the generated text
};

struct TaskContext {
  std::string id, task;
  std::string context;  // the context words, without <bos> <ctx> ... </ctx>
  std::vector<TaskQuery> queries;
};

bool operator==(const TaskQuery& a, const TaskQuery& b);
bool operator==(const TaskContext& a, const TaskContext& b);

// Reads and validates a JSONL task file. Every non-blank line must be an object with string "id", "task" and
// "context" and a non-empty array "queries" of {"question": string, "answers": non-empty array of non-empty
// strings}. Blank lines are skipped, other keys ignored, and any task name is accepted (held-out files may come
// from elsewhere). Errors name the file and the 1-based line ("tasks.jsonl:3: queries[0] 'answers' must be ...").
Result<std::vector<TaskContext>> read_task_file(const std::string& path);
// The same for text already in memory; `origin` names it in messages.
Result<std::vector<TaskContext>> parse_task_jsonl(std::string_view text, const std::string& origin);

// Writes one compact JSON object per line, keys in the order id, task, context, queries (question, answers).
Status write_task_file(const std::string& path, const std::vector<TaskContext>& contexts);
// The text write_task_file writes.
Result<std::string> format_task_jsonl(const std::vector<TaskContext>& contexts);

// ---- Generators ----

// The families of TASKS.md, in its order: niah_single, niah_multikey, niah_multivalue, niah_multiquery,
// kv_retrieval, variable_tracking.
const std::vector<std::string>& task_families();
bool is_task_family(std::string_view task);

// What `facts` counts per family (see docs/tasks.md):
//   niah_single        1 (the only value allowed)
//   niah_multikey      facts with distinct keys; each query asks one of them
//   niah_multivalue    numbers of the one key, one fact each; the single query asks for all of them
//   niah_multiquery    facts with distinct keys; each query asks min(4, facts) distinct keys at once
//   kv_retrieval       "kXXX is vYYY ." facts, keys distinct and values distinct
//   variable_tracking  chains of kChainKeys keys (one "var kA = d d d d ." plus 4 "var kB = kA ." each)
// The filler sentences a haystack is drawn from: kShort, the 40 sentences of filler_sentences() (4-8 words;
// every file before 2026-12-07 used them), or kJoined, joined_filler_sentences() (9-16 words, each two short
// sentences in a fixed pairing). Both cover the same words; see docs/tasks.md, "Haystacks".
enum class HaystackKind { kShort, kJoined };

// "short" / "joined"; parse_haystack_kind gives INVALID_ARGUMENT naming the word for anything else.
const char* haystack_kind_name(HaystackKind kind);
Result<HaystackKind> parse_haystack_kind(std::string_view name);

struct TaskSpec {
  std::string task;
  int64_t length_tokens = 0;  // context words, not counting the prompt's <bos> <ctx> and </ctx>
  int facts = 0;
  int queries = 0;  // per context; niah_single and niah_multivalue have one distinct question and emit one
  int n_contexts = 0;
  uint64_t seed = 0;
  // Not part of the per-context seed: the same spec with the other haystack draws the same facts (keys and
  // numbers); the filler, where the facts sit and the queries drawn after them differ.
  HaystackKind haystack = HaystackKind::kShort;
};

inline constexpr int kMultiqueryKeysPerQuestion = 4;
inline constexpr int kChainKeys = 5;  // RULER's variable tracking default: 4 hops
inline constexpr int64_t kMaxLengthTokens = int64_t{1} << 20;

// A sensible `facts` for each family (1, 4, 4, 4, 16, 2), for callers that let the user leave it out.
int default_facts(std::string_view task);

// Generates spec.n_contexts contexts with ids "<task>-<length>-<index, 4 digits>". The context holds exactly
// spec.length_tokens words, except when the words left over by the facts are 1 to 3 (no filler sentence is that
// short): then up to 3 fewer. Facts sit at uniformly random sentence boundaries of a haystack of filler
// sentences drawn uniformly with replacement; queries are drawn with replacement among the facts.
//
// Output is a pure function of the spec, identical across runs, machines and standard libraries: context i uses
// its own std::mt19937_64 (whose sequence the C++ standard fixes) seeded from (seed, task, length, facts, i), and
// all draws go through uniform_below() and our own shuffle, never std:: distributions. Queries are drawn last, so
// changing spec.queries or spec.n_contexts changes neither the contexts nor the first queries.
// Invalid specs (unknown task, facts that do not fit in the length, more keys than the vocabulary has) give
// INVALID_ARGUMENT naming the field.
Result<std::vector<TaskContext>> generate_tasks(const TaskSpec& spec);

// Uniform draw in [0, bound), bound >= 1, by rejection (unbiased and the same on every platform, unlike
// std::uniform_int_distribution whose algorithm each standard library chooses).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound);

// ---- Metric ----

// RULER's string_match_all, all-or-nothing as TASKS.md defines it: true when every answer occurs as a substring
// of the generated text. Case-insensitive (RULER lowercases both sides; ASCII only, the family is ASCII). An
// empty answers list, or an empty answer string, is false: such a query cannot be scored, and counting it as
// right would inflate accuracy.
bool string_match_all(const std::string& generated, const std::vector<std::string>& answers);

// Mean of string_match_all over parallel lists (one entry per query). INVALID_ARGUMENT when the lists differ in
// size or are empty.
Result<double> string_match_all_accuracy(const std::vector<std::string>& generated,
                                         const std::vector<std::vector<std::string>>& answers);

}  // namespace proxykv::tasks
