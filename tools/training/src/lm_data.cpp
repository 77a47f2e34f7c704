#include "proxykv/training/lm_data.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::training {
namespace {

using tasks::uniform_below;

int64_t draw(std::mt19937_64& rng, int64_t lo, int64_t hi) {  // inclusive
  return lo + static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(hi - lo + 1)));
}

void push(TrainingSequence& s, int32_t token, float weight) {
  s.tokens.push_back(token);
  s.weights.push_back(s.tokens.size() == 1 ? 0.f : weight);
}

void push_words(TrainingSequence& s, const std::vector<int32_t>& ids, float weight) {
  for (int32_t id : ids) push(s, id, weight);
}

bool is_key_id(int32_t id) { return id >= tasks::kFirstKeyId && id < tasks::kFirstValueId; }

bool is_digit_id(int32_t id) { return id >= tasks::kFirstDigitId && id < tasks::kFirstDigitId + tasks::kNumDigits; }

int32_t random_key_or_value(std::mt19937_64& rng) {
  return static_cast<int32_t>(tasks::kFirstKeyId + uniform_below(rng, tasks::kNumKeys + tasks::kNumValues));
}

int32_t random_digit(std::mt19937_64& rng) {
  return static_cast<int32_t>(tasks::kFirstDigitId + uniform_below(rng, tasks::kNumDigits));
}

// Draws a key not in `taken` (redrawing until one is new) and appends it there.
int32_t add_fresh_key(std::mt19937_64& rng, std::vector<int32_t>& taken) {
  int32_t k;
  do {
    k = static_cast<int32_t>(tasks::kFirstKeyId + uniform_below(rng, tasks::kNumKeys));
  } while (std::find(taken.begin(), taken.end(), k) != taken.end());
  taken.push_back(k);
  return k;
}


// Facts drawn for a training context: small enough to fit, varied enough to teach distractors. `facts_max` > 0
// caps the draw (the bounds change, the number of draws does not).
int draw_facts(std::mt19937_64& rng, const std::string& task, int64_t context_tokens, int facts_max = 0) {
  const auto capped = [facts_max](int64_t lo, int64_t hi) {
    return facts_max > 0 ? std::pair{std::min<int64_t>(lo, facts_max), std::min<int64_t>(hi, facts_max)}
                         : std::pair{lo, hi};
  };
  if (task == "niah_single") return 1;
  std::pair<int64_t, int64_t> range;
  if (task == "variable_tracking") {
    range = capped(1, std::min<int64_t>(4, context_tokens / 64 + 1));
  } else if (task == "kv_retrieval") {
    range = capped(2, std::clamp<int64_t>(context_tokens / 16, 2, 64));
  } else {
    range = capped(2, std::clamp<int64_t>(context_tokens / 32, 2, 16));
  }
  return static_cast<int>(draw(rng, range.first, range.second));
}

Result<tasks::TaskContext> generate_one(std::mt19937_64& rng, const std::string& task, int64_t context_tokens,
                                        int facts, int queries, tasks::HaystackKind haystack) {
  tasks::TaskSpec spec;
  spec.haystack = haystack;
  spec.task = task;
  spec.length_tokens = context_tokens;
  spec.facts = facts;
  spec.queries = queries;
  spec.n_contexts = 1;
  spec.seed = rng();
  // Too many facts for the length: halve until they fit (a training sample, not a user request).
  for (;;) {
    auto generated = tasks::generate_tasks(spec);
    if (generated.is_ok()) return std::move(generated->front());
    if (spec.facts <= 1) return generated.status();
    spec.facts = std::max(1, spec.facts / 2);
  }
}

// TrainingSequence::copy_from for an answer at [answer_begin, end of s): a digit or value token at `pos` is a copy of
// the same place in the one occurrence of the span "KEY is NUMBER" in the context, where KEY is the answer's last key
// before pos (before the answer names one: the question's last key, as in kv_retrieval's "what is the value of kA ?
// <a> vB") and NUMBER the whole run of digits or values around pos. So in "kA is 1 2 3 4
// and 5 6 7 8" the 7 gets the 7 of the fact "kA is 5 6 7 8", whatever other numbers of kA start with 5 6. A key in
// the answer is a copy of its one occurrence in the question, or else of the one statement "var KEY =" that assigns
// it. A token with no key before it in the answer, or whose span is absent or stands twice, gets no source.
void add_copy_sources(TrainingSequence& s, int32_t context_begin, int32_t context_end, int32_t answer_begin) {
  static const int32_t kIs = tasks::family_encode("is").at(0);
  static const int32_t kVar = tasks::family_encode("var").at(0);
  static const int32_t kEqual = tasks::family_encode("=").at(0);
  const auto is_copyable = [](int32_t id) {
    return is_digit_id(id) || (id >= tasks::kFirstValueId && id < tasks::kFirstValueId + tasks::kNumValues);
  };
  const auto& t = s.tokens;
  const auto n = static_cast<int32_t>(t.size());
  int32_t key_at = -1, run_start = -1;
  // Until the answer names a key: the question's last one (an answer that is not restated, as kv_retrieval's).
  for (int32_t i = answer_begin - 1; i > context_end && t[i] != tasks::kQuestionId && key_at < 0; --i) {
    if (is_key_id(t[i])) key_at = i;
  }
  int32_t question_begin = answer_begin;
  while (question_begin > context_end && t[question_begin] != tasks::kQuestionId) --question_begin;
  std::vector<int32_t> pattern;
  for (int32_t pos = answer_begin; pos < n; ++pos) {
    if (is_key_id(t[pos])) {
      key_at = pos;
      // A key is copied from the question when it stands there once (a restated niah key; multiquery's keys in
      // turn), else from the one statement "var KEY =" that assigns it (variable_tracking's chain).
      int32_t found = -1, count = 0;
      for (int32_t q = question_begin; q < answer_begin; ++q) {
        if (t[q] == t[pos]) {
          found = q;
          ++count;
        }
      }
      if (count == 0) {
        for (int32_t c = context_begin + 1; c + 1 < context_end; ++c) {
          if (t[c] == t[pos] && t[c - 1] == kVar && t[c + 1] == kEqual) {
            found = c;
            ++count;
          }
        }
      }
      if (count == 1) s.copy_from.emplace_back(pos, found);
      run_start = -1;
      continue;
    }
    if (!is_copyable(t[pos])) {
      run_start = -1;
      continue;
    }
    if (run_start < 0) run_start = pos;
    if (key_at < 0) continue;
    int32_t run_end = pos + 1;
    while (run_end < n && is_copyable(t[run_end])) ++run_end;
    pattern.assign({t[key_at], kIs});
    pattern.insert(pattern.end(), t.begin() + run_start, t.begin() + run_end);
    const auto span = static_cast<int32_t>(pattern.size());
    int32_t found = -1, count = 0;
    for (int32_t c = context_begin; c + span <= context_end && count < 2; ++c) {
      if (std::equal(pattern.begin(), pattern.end(), t.begin() + c)) {
        found = c + 2 + (pos - run_start);
        ++count;
      }
    }
    if (count == 1) s.copy_from.emplace_back(pos, found);
  }
}

// TrainingSequence::chain_from for the context at [context_begin, context_end): for every key stated with a run of
// digits two or more times ("kA is 1 2 3 4 ... kA is 5 6 7 8"), the j-th digit of each statement after the first
// points at the j-th digit of the key's statement before it (pairs only up to the shorter run). Statements of other
// shapes (values, "var kA =") are not chained.
void add_chain_sources(TrainingSequence& s, int32_t context_begin, int32_t context_end) {
  static const int32_t kIs = tasks::family_encode("is").at(0);
  const auto& t = s.tokens;
  std::map<int32_t, int32_t> last_run;  // key -> first digit of its latest statement
  for (int32_t c = context_begin; c + 2 < context_end; ++c) {
    if (!is_key_id(t[c]) || t[c + 1] != kIs || !is_digit_id(t[c + 2])) continue;
    const int32_t run = c + 2;
    auto it = last_run.find(t[c]);
    if (it != last_run.end()) {
      for (int32_t j = 0; run + j < context_end && is_digit_id(t[run + j]) && is_digit_id(t[it->second + j]); ++j) {
        s.chain_from.emplace_back(run + j, it->second + j);
      }
    }
    last_run[t[c]] = run;
  }
}

const std::string& pick_task(std::mt19937_64& rng, const std::vector<std::string>& allowed) {
  const auto& pool = allowed.empty() ? tasks::task_families() : allowed;
  return pool[uniform_below(rng, pool.size())];
}

}  // namespace

double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) / static_cast<double>(1ull << 53);
}

TrainingSequence sample_induction(std::mt19937_64& rng, int64_t length, double digit_runs) {
  TrainingSequence s;
  push(s, tasks::kBosId, 0.f);
  while (static_cast<int64_t>(s.tokens.size()) < length) {
    const int64_t have = static_cast<int64_t>(s.tokens.size());
    if (have >= 8 && uniform_below(rng, 2) == 0) {
      const int64_t span = std::min<int64_t>(draw(rng, 4, 16), have - 1);
      const int64_t src = draw(rng, 1, have - span);
      for (int64_t i = 0; i < span; ++i) {
        push(s, s.tokens[src + i], 1.f);
        s.copied.resize(s.tokens.size(), 0);
        s.copied.back() = i > 0 ? 1 : 0;
      }
    } else {
      const int64_t run = draw(rng, 1, 16);
      // No draw when digit runs are off: the phases written before the option replay the same sequences.
      const bool digits = digit_runs > 0 && uniform01(rng) < digit_runs;
      for (int64_t i = 0; i < run; ++i) push(s, digits ? random_digit(rng) : random_key_or_value(rng), 1.f);
    }
  }
  s.tokens.resize(length);
  s.weights.resize(length);
  s.copied.resize(length, 0);
  return s;
}

TrainingSequence sample_recall(std::mt19937_64& rng, int facts, int queries, float other_weight, bool sentences,
                               int value_digits) {
  static const int32_t kIs = tasks::family_encode("is").at(0);
  static const int32_t kDot = tasks::family_encode(".").at(0);
  static const int32_t kQuestionMark = tasks::family_encode("?").at(0);
  TrainingSequence s;
  push(s, tasks::kBosId, 0.f);
  std::vector<int32_t> keys;
  std::vector<std::vector<int32_t>> values;  // one value token, or value_digits digits
  std::vector<int32_t> value_at;             // where each value starts in the context
  for (int i = 0; i < facts; ++i) {
    const int32_t k = add_fresh_key(rng, keys);
    std::vector<int32_t> value;
    if (value_digits > 0) {
      for (int d = 0; d < value_digits; ++d) value.push_back(random_digit(rng));
    } else {
      value.push_back(static_cast<int32_t>(tasks::kFirstValueId + uniform_below(rng, tasks::kNumValues)));
    }
    values.push_back(std::move(value));
    push(s, k, other_weight);
    if (sentences) push(s, kIs, other_weight);
    value_at.push_back(static_cast<int32_t>(s.tokens.size()));
    push_words(s, values.back(), other_weight);
    if (sentences) push(s, kDot, other_weight);
  }
  push(s, tasks::kSepId, other_weight);
  for (int q = 0; q < queries; ++q) {
    const size_t i = uniform_below(rng, keys.size());  // with replacement: no "not asked yet" shortcut
    if (sentences) push(s, tasks::kQuestionId, other_weight);
    push(s, keys[i], other_weight);
    if (sentences) {
      push(s, kQuestionMark, other_weight);
      push(s, tasks::kAnswerId, other_weight);
    }
    for (size_t d = 0; d < values[i].size(); ++d) {
      s.copy_from.emplace_back(static_cast<int32_t>(s.tokens.size()), value_at[i] + static_cast<int32_t>(d));
      push(s, values[i][d], 1.f);
    }
  }
  return s;
}

TrainingSequence sample_var_recall(std::mt19937_64& rng, int statements, int queries, float other_weight,
                                   int value_digits, double chain_share) {
  static const std::vector<int32_t> kVar = tasks::family_encode("var");
  static const std::vector<int32_t> kEqual = tasks::family_encode("=");
  static const std::vector<int32_t> kDot = tasks::family_encode(".");
  static const std::vector<int32_t> kWhichVarEqual = tasks::family_encode("which var equal");
  static const std::vector<int32_t> kQuestionMark = tasks::family_encode("?");
  static const std::vector<int32_t> kAnd = tasks::family_encode("and");
  const int digits = value_digits > 0 ? value_digits : 4;
  statements = std::clamp(statements, 1, static_cast<int>(tasks::kNumKeys));
  TrainingSequence s;
  push(s, tasks::kBosId, 0.f);
  std::vector<int32_t> assigned;                            // every LHS key so far
  std::vector<int32_t> chain_ends;                          // the last LHS of each chain
  std::vector<std::pair<int32_t, std::vector<int32_t>>> made;  // (LHS, RHS words)
  std::vector<std::vector<int32_t>> chains;                    // each chain's keys, from its number on
  for (int i = 0; i < statements; ++i) {
    const int32_t k = add_fresh_key(rng, assigned);
    std::vector<int32_t> rhs;
    if (chain_ends.empty() || uniform_below(rng, 10) < 3) {  // a new chain, from a number
      for (int d = 0; d < digits; ++d) rhs.push_back(random_digit(rng));
      chain_ends.push_back(k);
      chains.push_back({k});
    } else {  // a chain grows by one hop: its end becomes this statement's RHS
      const size_t c = uniform_below(rng, chain_ends.size());
      rhs.push_back(chain_ends[c]);
      chain_ends[c] = k;
      chains[c].push_back(k);
    }
    push_words(s, kVar, other_weight);
    push(s, k, other_weight);
    push_words(s, kEqual, other_weight);
    push_words(s, rhs, other_weight);
    push_words(s, kDot, other_weight);
    made.emplace_back(k, std::move(rhs));
  }
  push(s, tasks::kSepId, other_weight);
  for (int q = 0; q < queries; ++q) {
    if (chain_share > 0 && uniform01(rng) < chain_share) {  // the whole chain of one number
      const std::vector<int32_t>& chain = chains[uniform_below(rng, chains.size())];
      const auto head = std::find_if(made.begin(), made.end(), [&](const auto& m) { return m.first == chain[0]; });
      push(s, tasks::kQuestionId, other_weight);
      push_words(s, kWhichVarEqual, other_weight);
      push_words(s, head->second, other_weight);
      push_words(s, kQuestionMark, other_weight);
      push(s, tasks::kAnswerId, other_weight);
      for (size_t i = 0; i < chain.size(); ++i) {
        if (i > 0) push_words(s, kAnd, 1.f);
        push(s, chain[i], 1.f);
      }
      push(s, tasks::kEosId, 1.f);
      continue;
    }
    const auto& [lhs, rhs] = made[uniform_below(rng, made.size())];  // with replacement
    push(s, tasks::kQuestionId, other_weight);
    push_words(s, kWhichVarEqual, other_weight);
    push_words(s, rhs, other_weight);
    push_words(s, kQuestionMark, other_weight);
    push(s, tasks::kAnswerId, other_weight);
    push(s, lhs, 1.f);
  }
  return s;
}

namespace {

// Puts a multivalue answer's numbers (given in context order) in `order`; kShuffled draws from `rng`, the others
// draw nothing.
void order_answers(std::mt19937_64& rng, MultivalueOrder order, std::vector<std::string>& answers) {
  switch (order) {
    case MultivalueOrder::kContext:
      return;
    case MultivalueOrder::kReverse:
      std::reverse(answers.begin(), answers.end());
      return;
    case MultivalueOrder::kShuffled:
    case MultivalueOrder::kSet:
      // Fisher-Yates with the file's own draw (std::shuffle's draws differ between standard libraries, and a config
      // with a seed must rebuild the same model).
      for (size_t i = answers.size(); i > 1; --i) std::swap(answers[i - 1], answers[uniform_below(rng, i)]);
      return;
  }
}

// Pushes a niah_multivalue answer (`answers` in the order written, joined as compose_answer joins them) with loss 1
// and, under kSet, the tokens also right at each of its positions: at a number's d-th digit, that digit of every
// number not yet written that agrees with the current number's first d digits. The key restated before the numbers,
// the separators and the numbers' order are teacher-forced as before; a number written twice in the expected list
// counts twice.
void push_multivalue_answer(TrainingSequence& s, const std::string& question, const std::vector<std::string>& answers,
                            const std::string& separator, bool restate, MultivalueOrder order) {
  const std::vector<int32_t> all =
      tasks::family_encode(compose_answer("niah_multivalue", question, answers, separator, restate));
  const size_t start = s.tokens.size();
  push_words(s, all, 1.f);
  if (order != MultivalueOrder::kSet) return;
  std::vector<std::vector<int32_t>> numbers;
  size_t number_tokens = 0;
  for (const auto& a : answers) {
    numbers.push_back(tasks::family_encode(a));
    number_tokens += numbers.back().size();
  }
  const size_t sep = separator.empty() ? 0 : tasks::family_encode(separator).size();
  const size_t tail = number_tokens + sep * (numbers.empty() ? 0 : numbers.size() - 1);
  size_t pos = start + all.size() - tail;  // the first number's first token (after a restated "kA is")
  std::vector<std::vector<int32_t>> left = numbers;
  for (size_t i = 0; i < numbers.size(); ++i) {
    const auto& current = numbers[i];
    for (size_t d = 0; d < current.size(); ++d, ++pos) {
      std::vector<int32_t> also;
      for (const auto& other : left) {
        if (other.size() <= d || !std::equal(current.begin(), current.begin() + d, other.begin())) continue;
        if (other[d] != current[d] && std::find(also.begin(), also.end(), other[d]) == also.end()) {
          also.push_back(other[d]);
        }
      }
      for (int32_t t : also) s.also_right.emplace_back(static_cast<int32_t>(pos), t);
    }
    left.erase(std::find(left.begin(), left.end(), current));
    pos += sep;
  }
}

}  // namespace

TrainingSequence sample_multi_recall(std::mt19937_64& rng, int statements, int queries, float other_weight,
                                     int value_digits, MultivalueOrder order) {
  static const std::vector<int32_t> kFactHead = tasks::family_encode("the magic number for");
  static const std::vector<int32_t> kQuestionHead = tasks::family_encode("what is the magic number for");
  static const int32_t kIs = tasks::family_encode("is").at(0);
  static const int32_t kDot = tasks::family_encode(".").at(0);
  static const int32_t kQuestionMark = tasks::family_encode("?").at(0);
  const int digits = value_digits > 0 ? value_digits : 4;
  statements = std::clamp(statements, 1, static_cast<int>(tasks::kNumKeys));  // fresh keys never run out
  TrainingSequence s;
  push(s, tasks::kBosId, 0.f);
  std::vector<int32_t> keys;                          // distinct, in order of first use
  std::vector<std::vector<std::vector<int32_t>>> numbers;  // per key, its numbers in context order
  for (int i = 0; i < statements; ++i) {
    size_t k;
    if (!keys.empty() && uniform_below(rng, 2) == 0) {
      k = uniform_below(rng, keys.size());
    } else {
      add_fresh_key(rng, keys);
      numbers.emplace_back();
      k = keys.size() - 1;
    }
    std::vector<int32_t> number;
    for (int d = 0; d < digits; ++d) number.push_back(random_digit(rng));
    push_words(s, kFactHead, other_weight);
    push(s, keys[k], other_weight);
    push(s, kIs, other_weight);
    push_words(s, number, other_weight);
    push(s, kDot, other_weight);
    numbers[k].push_back(std::move(number));
  }
  const auto context_end = static_cast<int32_t>(s.tokens.size());
  add_chain_sources(s, 1, context_end);
  push(s, tasks::kSepId, other_weight);
  for (int q = 0; q < queries; ++q) {
    const size_t k = uniform_below(rng, keys.size());  // with replacement
    std::vector<int32_t> question = kQuestionHead;
    question.push_back(keys[k]);
    question.push_back(kQuestionMark);
    push(s, tasks::kQuestionId, other_weight);
    push_words(s, question, other_weight);
    push(s, tasks::kAnswerId, other_weight);
    std::vector<std::string> answers;
    for (const auto& number : numbers[k]) answers.push_back(tasks::family_decode(number));
    order_answers(rng, order, answers);
    // The answer a niah_multivalue task context is trained on (answer_restate, "and" between the numbers).
    const int32_t answer_begin = static_cast<int32_t>(s.tokens.size());
    push_multivalue_answer(s, tasks::family_decode(question), answers, "and", /*restate=*/true, order);
    add_copy_sources(s, 1, context_end, answer_begin);
    push(s, tasks::kEosId, 1.f);
  }
  return s;
}

std::string compose_answer(const std::string& task, const std::string& question,
                           const std::vector<std::string>& answers, const std::string& separator, bool restate) {
  std::vector<std::string> keys;
  if (restate && task.rfind("niah_", 0) == 0) {
    for (int32_t id : tasks::family_encode(question)) {
      if (is_key_id(id)) {
        keys.push_back(tasks::key_word(id - tasks::kFirstKeyId));
      }
    }
  }
  const bool per_answer = !keys.empty() && keys.size() == answers.size();
  const std::string between = separator.empty() ? " " : " " + separator + " ";
  std::string out;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (i > 0) out += between;
    if (per_answer) {
      out += keys[i] + " is ";
    } else if (i == 0 && keys.size() == 1) {
      out += keys[0] + " is ";
    }
    out += answers[i];
  }
  return out;
}

Result<TrainingSequence> sample_task(std::mt19937_64& rng, const std::string& task, int64_t context_tokens, int facts,
                                     int qa, float context_weight, const std::string& answer_separator,
                                     bool restate, MultivalueOrder multivalue_order, tasks::HaystackKind haystack) {
  PROXYKV_ASSIGN_OR_RETURN(tasks::TaskContext ctx, generate_one(rng, task, context_tokens, facts, qa, haystack));
  TrainingSequence s;
  push(s, tasks::kBosId, 0.f);
  push(s, tasks::kCtxId, 0.f);
  const int32_t context_begin = static_cast<int32_t>(s.tokens.size());
  push_words(s, tasks::family_encode(ctx.context), context_weight);
  const int32_t context_end = static_cast<int32_t>(s.tokens.size());
  push(s, tasks::kCtxEndId, context_weight);
  add_chain_sources(s, context_begin, context_end);
  for (const auto& q : ctx.queries) {
    push(s, tasks::kQuestionId, context_weight);
    push_words(s, tasks::family_encode(q.question), context_weight);
    push(s, tasks::kAnswerId, context_weight);
    std::vector<std::string> answers = q.answers;
    if (task == "niah_multivalue") {
      order_answers(rng, multivalue_order, answers);
      const int32_t answer_begin = static_cast<int32_t>(s.tokens.size());
      push_multivalue_answer(s, q.question, answers, answer_separator, restate, multivalue_order);
      add_copy_sources(s, context_begin, context_end, answer_begin);
    } else {
      const int32_t answer_begin = static_cast<int32_t>(s.tokens.size());
      push_words(s, tasks::family_encode(compose_answer(task, q.question, answers, answer_separator, restate)), 1.f);
      add_copy_sources(s, context_begin, context_end, answer_begin);
    }
    push(s, tasks::kEosId, 1.f);
  }
  return s;
}

Result<TrainingSequence> sample_repeat(std::mt19937_64& rng, const std::string& task, int64_t context_tokens,
                                       int64_t chunk_tokens, float context_weight, tasks::HaystackKind haystack) {
  const int facts = draw_facts(rng, task, context_tokens);
  PROXYKV_ASSIGN_OR_RETURN(tasks::TaskContext ctx, generate_one(rng, task, context_tokens, facts, 1, haystack));
  const std::vector<int32_t> words = tasks::family_encode(ctx.context);
  TrainingSequence s;
  push(s, tasks::kBosId, 0.f);
  push(s, tasks::kCtxId, 0.f);
  push_words(s, words, context_weight);
  push(s, tasks::kCtxEndId, context_weight);
  push(s, tasks::kRepeatId, 0.f);
  const int64_t n = static_cast<int64_t>(words.size());
  int64_t start = 0;
  if (n > chunk_tokens && uniform_below(rng, 2) == 1) start = draw(rng, 8, n - 1);
  const int64_t end = std::min(n, start + chunk_tokens);
  if (start > 0) {
    for (int64_t i = std::max<int64_t>(0, start - 8); i < start; ++i) push(s, words[i], 0.f);  // the prompt's tail
  }
  for (int64_t i = start; i < end; ++i) push(s, words[i], 1.f);
  return s;
}

Result<PhaseMix> PhaseMix::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) return invalid_argument(origin + ": a phase must be an object");
  PhaseMix p;
  try {
    p.name = j.value("name", std::string("phase"));
    p.steps = j.at("steps").get<int64_t>();
    p.until_copy_loss = j.value("until_copy_loss", p.until_copy_loss);
    p.batch = j.value("batch", p.batch);
    const auto& mix = j.at("mix");
    p.w_induction = mix.value("induction", 0.0);
    p.w_recall = mix.value("recall", 0.0);
    p.w_task = mix.value("tasks", 0.0);
    p.w_repeat = mix.value("repeat", 0.0);
    p.induction_length = j.value("induction_length", p.induction_length);
    p.induction_digit_runs = j.value("induction_digit_runs", p.induction_digit_runs);
    p.recall_value_digits = j.value("recall_value_digits", p.recall_value_digits);
    p.recall_digit_share = j.value("recall_digit_share", p.recall_digit_share);
    p.recall_facts_min = j.value("recall_facts_min", p.recall_facts_min);
    p.recall_facts_max = j.value("recall_facts_max", p.recall_facts_max);
    const std::string recall_template = j.value("recall_template", std::string("adjacent"));
    if (recall_template != "adjacent" && recall_template != "sentences" && recall_template != "var" &&
        recall_template != "multi") {
      return invalid_argument(origin + ": recall_template must be \"adjacent\", \"sentences\", \"var\" or \"multi\", got \"" +
                              recall_template + "\"");
    }
    p.recall_sentences = recall_template == "sentences";
    p.recall_var = recall_template == "var";
    p.recall_multi = recall_template == "multi";
    p.recall_var_chains = j.value("recall_var_chains", p.recall_var_chains);
    p.lr = j.value("lr", p.lr);
    p.attention_supervision = j.value("attention_supervision", p.attention_supervision);
    p.attention_supervision_layer = j.value("attention_supervision_layer", p.attention_supervision_layer);
    const std::string heads = j.value("attention_supervision_heads", std::string("all"));
    if (heads != "all" && heads != "any") {
      return invalid_argument(origin + ": attention_supervision_heads must be \"all\" or \"any\", got \"" + heads + "\"");
    }
    p.attention_supervision_any_head = heads == "any";
    const std::string sources = j.value("attention_supervision_sources", std::string("answers"));
    if (sources != "answers" && sources != "chain") {
      return invalid_argument(origin + ": attention_supervision_sources must be \"answers\" or \"chain\", got \"" +
                              sources + "\"");
    }
    p.attention_supervision_chain = sources == "chain";
    p.context_min = j.value("context_min", p.context_min);
    p.context_max = j.value("context_max", p.context_max);
    p.tasks = j.value("tasks", std::vector<std::string>{});
    p.qa_per_sequence = j.value("qa_per_sequence", p.qa_per_sequence);
    p.context_weight = j.value("context_weight", p.context_weight);
    p.repeat_chunk = j.value("repeat_chunk", p.repeat_chunk);
    p.answer_separator = j.value("answer_separator", p.answer_separator);
    p.answer_restate = j.value("answer_restate", p.answer_restate);
    const std::string mv_order = j.value("multivalue_order", std::string("context"));
    if (mv_order != "context" && mv_order != "reverse" && mv_order != "shuffled" && mv_order != "set") {
      return invalid_argument(origin + ": multivalue_order must be \"context\", \"reverse\", \"shuffled\" or \"set\", got \"" +
                              mv_order + "\"");
    }
    p.multivalue_order = mv_order == "reverse"    ? MultivalueOrder::kReverse
                         : mv_order == "shuffled" ? MultivalueOrder::kShuffled
                         : mv_order == "set"      ? MultivalueOrder::kSet
                                                  : MultivalueOrder::kContext;
    p.facts_max = j.value("facts_max", p.facts_max);
    p.context_drop.share = j.value("context_drop_share", p.context_drop.share);
    p.context_drop.min_rate = j.value("context_drop_min", p.context_drop.min_rate);
    p.context_drop.max_rate = j.value("context_drop_max", p.context_drop.max_rate);
    p.context_drop.facts = j.value("context_drop_facts", p.context_drop.facts);
    p.context_drop.layers = j.value("context_drop_layers", p.context_drop.layers);
    p.context_drop.structure = j.value("context_drop_structure", p.context_drop.structure);
    p.context_drop.whole_tokens = j.value("context_drop_tokens", p.context_drop.whole_tokens);
    p.context_drop.scorer = j.value("context_drop_scorer", p.context_drop.scorer);
    p.context_drop.level = j.value("context_drop_level", p.context_drop.level);
    p.context_drop.repeat = j.value("context_drop_repeat", p.context_drop.repeat);
    p.isolate_queries = j.value("isolate_queries", p.isolate_queries);
    p.repeat_drop_openers = j.value("repeat_drop_openers", p.repeat_drop_openers);
    p.haystack_joined = j.value("haystack_joined", p.haystack_joined);
    const std::string joined_rows = j.value("haystack_joined_rows", std::string("all"));
    if (joined_rows != "all" && joined_rows != "tasks") {
      return invalid_argument(origin + ": haystack_joined_rows must be \"all\" or \"tasks\", got \"" + joined_rows +
                              "\"");
    }
    p.haystack_joined_tasks_only = joined_rows == "tasks";
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(origin + ": phase '" + p.name + "': " + e.what());
  }
  const std::string where = origin + ": phase '" + p.name + "': ";
  if (p.steps < 0 || p.batch < 1) return invalid_argument(where + "steps must be >= 0 and batch >= 1");
  if (p.until_copy_loss < 0) return invalid_argument(where + "until_copy_loss must be >= 0 (0: off)");
  if (p.until_copy_loss > 0 && p.w_induction <= 0) {
    return invalid_argument(where + "until_copy_loss needs induction sequences in the mix");
  }
  if (p.w_induction < 0 || p.w_recall < 0 || p.w_task < 0 || p.w_repeat < 0 ||
      p.w_induction + p.w_recall + p.w_task + p.w_repeat <= 0) {
    return invalid_argument(where + "mix weights must be >= 0 with a positive sum");
  }
  if (p.context_min < 16 || p.context_max < p.context_min) return invalid_argument(where + "bad context_min/max");
  if (p.induction_digit_runs < 0 || p.induction_digit_runs > 1) {
    return invalid_argument(where + "induction_digit_runs must lie in [0, 1]");
  }
  if (p.recall_value_digits < 0 || p.recall_value_digits > 16) {
    return invalid_argument(where + "recall_value_digits must lie in [0, 16] (0: one value token)");
  }
  if (p.recall_digit_share < 0 || p.recall_digit_share > 1) {
    return invalid_argument(where + "recall_digit_share must lie in [0, 1]");
  }
  if (p.facts_max < 0) return invalid_argument(where + "facts_max must be >= 0 (0: no cap)");
  if (p.recall_var_chains < 0 || p.recall_var_chains > 1) {
    return invalid_argument(where + "recall_var_chains must lie in [0, 1]");
  }
  if (p.lr < 0) return invalid_argument(where + "lr must be >= 0 (0: the run's cosine schedule)");
  if (!(p.repeat_drop_openers >= 0 && p.repeat_drop_openers <= 1)) {
    return invalid_argument(where + "repeat_drop_openers must lie in [0, 1] (a share of the reconstruction rows)");
  }
  if (p.repeat_drop_openers > 0 && p.w_repeat <= 0) {
    return invalid_argument(where + "repeat_drop_openers needs reconstruction rows in the mix (repeat > 0)");
  }
  if (!(p.haystack_joined >= 0 && p.haystack_joined <= 1)) {
    return invalid_argument(where + "haystack_joined must lie in [0, 1] (a share of the task and reconstruction contexts)");
  }
  if (p.haystack_joined > 0 && p.w_task <= 0 && (p.w_repeat <= 0 || p.haystack_joined_tasks_only)) {
    return invalid_argument(where + "haystack_joined needs task or reconstruction rows in the mix (tasks or repeat > 0; " +
                            "tasks with haystack_joined_rows \"tasks\")");
  }
  const ContextDropOptions& drop = p.context_drop;
  if (!(p.attention_supervision >= 0 && std::isfinite(p.attention_supervision))) {
    return invalid_argument(where + "attention_supervision must be a finite weight >= 0");
  }
  if (p.attention_supervision_layer < -1) {
    return invalid_argument(where + "attention_supervision_layer must be a layer index >= 0, or -1 for the last");
  }
  if (p.attention_supervision > 0 && drop.share > 0) {
    return invalid_argument(where + "attention_supervision cannot be combined with context_drop_share > 0: the " +
                            "dropout may hide the very source the attention is trained onto");
  }
  if (drop.share < 0 || drop.share > 1 || drop.max_rate < 0 || drop.max_rate > 1) {
    return invalid_argument(where + "context_drop_share and context_drop_max must lie in [0, 1]");
  }
  if (drop.min_rate < 0 || drop.min_rate > drop.max_rate) {
    return invalid_argument(where + "context_drop_min must lie in [0, context_drop_max]");
  }
  for (int64_t l : drop.layers) {
    if (l < 0) return invalid_argument(where + "context_drop_layers must be layer indices >= 0");
  }
  if ((drop.facts || drop.structure || drop.whole_tokens || !drop.layers.empty() || drop.repeat) &&
      drop.share <= 0) {
    return invalid_argument(where +
                            "context_drop_facts, _structure, _tokens, _layers and _repeat need context_drop_share > 0");
  }
  if (!drop.scorer.empty()) {
    if (drop.share <= 0 || drop.max_rate >= 1) {
      return invalid_argument(where + "context_drop_scorer needs context_drop_share > 0 and context_drop_max < 1 " +
                              "(a keep ratio 1 - rate above 0)");
    }
    if (drop.facts || drop.structure || drop.whole_tokens) {
      return invalid_argument(where + "context_drop_scorer decides every entry itself; it takes none of " +
                              "context_drop_facts, _structure, _tokens (_layers limits its eviction to those layers)");
    }
  }
  if (p.recall_facts_min < 1 || p.recall_facts_max < p.recall_facts_min) {
    return invalid_argument(where + "bad recall_facts_min/max");
  }
  if (!p.answer_separator.empty()) {
    const std::vector<int32_t> ids = tasks::family_encode(p.answer_separator);
    if (ids.size() != 1 || ids[0] == tasks::kUnkId) {
      return invalid_argument(where + "answer_separator must be one word of the family vocabulary, got \"" +
                              p.answer_separator + "\"");
    }
  }
  for (const auto& t : p.tasks) {
    if (!tasks::is_task_family(t)) return invalid_argument(where + "unknown task '" + t + "'");
  }
  return p;
}

Result<TrainingSequence> sample_from_phase(std::mt19937_64& rng, const PhaseMix& p) {
  const double total = p.w_induction + p.w_recall + p.w_task + p.w_repeat;
  const double u = uniform01(rng) * total;
  if (u < p.w_induction) return sample_induction(rng, p.induction_length, p.induction_digit_runs);
  if (u < p.w_induction + p.w_recall) {
    const int facts = static_cast<int>(draw(rng, p.recall_facts_min, p.recall_facts_max));
    if (p.recall_var) {
      return sample_var_recall(rng, facts, static_cast<int>(draw(rng, 8, 16)), 0.1f, p.recall_value_digits,
                               p.recall_var_chains);
    }
    if (p.recall_multi) {
      return sample_multi_recall(rng, facts, static_cast<int>(draw(rng, 4, 8)), 0.1f, p.recall_value_digits,
                                 p.multivalue_order);
    }
    int digits = p.recall_value_digits;
    if (digits > 0 && p.recall_digit_share < 1 && uniform01(rng) >= p.recall_digit_share) digits = 0;
    return sample_recall(rng, facts, static_cast<int>(draw(rng, 8, 16)), 0.1f, p.recall_sentences, digits);
  }
  const std::string& task = pick_task(rng, p.tasks);
  const int64_t length = draw(rng, p.context_min, p.context_max);
  // No draw at share 0, so a config without the key rebuilds the data it always did.
  const tasks::HaystackKind haystack = p.haystack_joined > 0 && uniform01(rng) < p.haystack_joined
                                           ? tasks::HaystackKind::kJoined
                                           : tasks::HaystackKind::kShort;
  if (u < p.w_induction + p.w_recall + p.w_task) {
    return sample_task(rng, task, length, draw_facts(rng, task, length, p.facts_max), p.qa_per_sequence,
                       p.context_weight, p.answer_separator, p.answer_restate, p.multivalue_order, haystack);
  }
  return sample_repeat(rng, task, length, p.repeat_chunk, p.context_weight,
                       p.haystack_joined_tasks_only ? tasks::HaystackKind::kShort : haystack);
}

}  // namespace proxykv::training
