// Training sequences for the tiny family: the samplers of the curriculum (TASKS.md).
//
// Every sampler returns token ids with a loss weight per position: weight[i] scales the loss of predicting
// tokens[i] from tokens[0..i-1] (weight[0] is always 0). No LibTorch here: batches are assembled by the trainer.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "proxykv/core/status.h"
#include "proxykv/tasks/task_suite.h"

namespace proxykv::training {

struct TrainingSequence {
  std::vector<int32_t> tokens;
  std::vector<float> weights;
  // Induction sequences only (empty elsewhere): 1 where tokens[i] is predictable by copying, i.e. inside a
  // copied span after its first token. The trainer's copy loss (mean loss over these) says whether the
  // induction circuit has formed: ~ln(512) = 6.2 before, below 1 after.
  std::vector<uint8_t> copied;
  // Set-scored answers only (MultivalueOrder::kSet; empty elsewhere): (position, token) pairs that are right at that
  // position besides tokens[position]. The trainer scores such a position by the probability of the set,
  // -log(p(tokens[i]) + sum p(also-right tokens)), instead of the teacher-forced token's alone.
  std::vector<std::pair<int32_t, int32_t>> also_right;
  // (position, source) pairs: the answer token at `position` is a copy of the context token at `source`
  // (tokens[source] == tokens[position], source < position - 1). Filled by sample_recall for every queried value
  // token, and by sample_task and sample_multi_recall for the digits of restated niah answers and kv_retrieval's
  // values: each number's digits come from the one fact "kA is N" of the answer's key (or, before the answer names
  // one, the question's) that states that number (none when that span is absent from the context or stands there
  // twice); a key in such an answer comes from its one occurrence in the question (multiquery's keys in turn), or
  // else from the statement "var KEY =" that assigns it (variable_tracking's chain). Empty elsewhere. PhaseMix::attention_supervision trains one layer's
  // attention of the position that predicts the token (position - 1) onto its source.
  std::vector<std::pair<int32_t, int32_t>> copy_from;
  // (position, source) pairs inside the context: the j-th digit of a key's statement "kA is N" points at the j-th
  // digit of the same key's statement before it (tokens[source] need not equal tokens[position]). Filled by
  // sample_task and sample_multi_recall for every key stated twice or more (niah_multivalue's key, the multi drill's
  // keys). PhaseMix::attention_supervision_chain trains one layer's attention of `position` itself onto `source`.
  std::vector<std::pair<int32_t, int32_t>> chain_from;
};

// Induction pretraining: <bos>, then segments that are either (p=0.5 once 8+ tokens exist) a copy of an
// earlier span of 4-16 tokens from a random source, or a fresh run of 1-16 random key/value tokens.
// Loss on every position. This is what made the induction circuit form on CPU (TASKS.md).
// `digit_runs`: the probability that a fresh run is made of digits instead (0: never, and no draw for it). A
// circuit pretrained on key/value tokens only copies those; the niah answers are digit strings.
TrainingSequence sample_induction(std::mt19937_64& rng, int64_t length, double digit_runs = 0.0);

// A uniform draw in [0, 1) from the top 53 bits of one rng() call (no std distribution: the same on every
// platform, so a seed replays the same data everywhere).
double uniform01(std::mt19937_64& rng);

// Dense multi-query recall: <bos> k v ... k v <sep> then queries k v drawn with replacement; loss on the
// queried values (weight 1) and on everything else (weight `other_weight`).
// With `sentences`, the task suite's shape instead: facts "k is v ." and queries "<q> k ? <a> v", so the key
// stands two tokens before the value in both, as "... k216 is 5 ..." and "k216 ? <a> 5" do in the tasks: a
// 2-layer model must match a key two back, not the adjacent one.
// With `value_digits` > 0, each value is that many random digits (as the niah numbers are), all of them weight 1
// in the queries.
TrainingSequence sample_recall(std::mt19937_64& rng, int facts, int queries, float other_weight, bool sentences = false,
                               int value_digits = 0);

// Reverse recall in variable_tracking's shape, dense: <bos> then `statements` assignments "var kX = RHS ." forming
// chains (a chain starts with "var kA = d d d d ." (`value_digits` digits) and grows by "var kB = kA ."; chains
// interleave, as the task's do), <sep>, then `queries` single hops "<q> which var equal RHS ? <a> kX" drawn with
// replacement. Every key is assigned once and is the right-hand side at most once, so each hop has one answer.
// Its answer stands two tokens *before* the matched RHS in the context: the reverse lookup that every step of a
// variable_tracking chain is and that forward recall (the key before its value) never drills. Loss 1 on the
// answer keys, `other_weight` elsewhere.
// `chain_share` > 0: a query is, with that probability, the task's own question instead, "<q> which var equal d d d d
// ? <a> kA and kB and ... <eos>" (a chain's number, its whole chain joined by "and"): at each "and" the key to look up
// stands one token back, where a single hop's stands two (0: never, and no draw for it).
TrainingSequence sample_var_recall(std::mt19937_64& rng, int statements, int queries, float other_weight,
                                   int value_digits = 4, double chain_share = 0);

// The order of the numbers in a niah_multivalue training answer (PhaseMix::multivalue_order).
// kSet: written in a fresh random order (kShuffled's draw, so the same tokens), but every number not yet written
// is right at each number's start (TrainingSequence::also_right): the answer is scored as a set, and the stop
// (`<eos>`) is trained only where every number has been written.
enum class MultivalueOrder { kContext, kReverse, kShuffled, kSet };

// Dense multi-value recall, niah_multivalue's skill without the filler: `statements` niah facts "the magic number
// for kA is d d d d ." over a few keys (each statement reuses a key drawn so far with probability 1/2, so a key has
// one to several numbers, interleaved with other keys' facts), <sep>, then `queries` questions "<q> what is the
// magic number for kA ? <a> kA is N1 and N2 ... <eos>" drawn with replacement: every number of kA in context order,
// restated as answer_restate writes a multivalue answer, then <eos>. After each "and" the number to write is that
// of the next fact of kA after the one just copied, and <eos> comes after its last; the task's own contexts give one
// such list per sequence, this gives `queries`. Loss 1 on the answers (and their <eos>), `other_weight` elsewhere.
// `value_digits` numbers of digits each (4 when 0). `order`: the numbers in context order, latest first, or in a
// fresh random order per answer (PhaseMix::multivalue_order).
TrainingSequence sample_multi_recall(std::mt19937_64& rng, int statements, int queries, float other_weight,
                                     int value_digits, MultivalueOrder order = MultivalueOrder::kContext);

// A task-suite context: <bos> <ctx> context </ctx> then `qa` question/answer pairs (<q> question <a> answer
// <eos>) of the generated task; loss 1 on answers and <eos>, `context_weight` on the rest. A query with several
// answers (multivalue, multiquery, variable_tracking) has them joined by `answer_separator` (a word such as "and";
// empty: by a space only). string_match_all ignores what lies between the answers, so the separator only gives
// the model a marker where one answer ends and the next begins.
// With `restate`, a niah answer first restates its key as the context's fact states it ("k017 is 4 0 9 1"; RULER
// puts such an answer prefix in its prompts): see compose_answer.
// `multivalue_order`: a niah_multivalue answer lists the key's numbers in the generator's order (the context's),
// latest first (the context's last fact of the key first), or in a fresh random order per answer.
Result<TrainingSequence> sample_task(std::mt19937_64& rng, const std::string& task, int64_t context_tokens, int facts,
                                     int qa, float context_weight, const std::string& answer_separator = "",
                                     bool restate = false,
                                     MultivalueOrder multivalue_order = MultivalueOrder::kContext,
                                     tasks::HaystackKind haystack = tasks::HaystackKind::kShort);

// The training answer of one query: its answers joined by `separator` (empty: a space). With `restate` and a
// niah question, each answer is preceded by "KEY is" for the question's keys in order when there is one key per
// answer (multiquery: "kA is d d d d and kB is d d d d"), else the first answer by the question's one key
// (single, multikey, multivalue: "kA is d d d d and d d d d"). Then every number is copied from a span that
// stands verbatim in the context ("the magic number for kA is d d d d ."), and in multiquery the restated key
// marks which question key the answer is at. Other tasks, or a question without keys: plain join.
std::string compose_answer(const std::string& task, const std::string& question,
                           const std::vector<std::string>& answers, const std::string& separator, bool restate);

// Reconstruction: <bos> <ctx> context </ctx> <repeat> [last 8 words before the chunk] chunk, as KVzip's
// chunked repeat prompt asks for; the chunk starts at a random word (0 half of the time). Loss 1 on the
// repeated words, `context_weight` on the context.
Result<TrainingSequence> sample_repeat(std::mt19937_64& rng, const std::string& task, int64_t context_tokens,
                                       int64_t chunk_tokens, float context_weight,
                                       tasks::HaystackKind haystack = tasks::HaystackKind::kShort);

// One curriculum phase's mixture: which samplers, with which weights and sizes.
// Context dropout of a phase (lm_trainer.h: context_drop_mask): with probability `share` a task sequence's
// questions and answers see its context thinned, per (layer, KV head), at a rate drawn uniformly from
// [min_rate, max_rate], as an evicted cache would be.
struct ContextDropOptions {
  double share = 0;  // the probability that a task sequence's queries see its context thinned
  double min_rate = 0, max_rate = 1;
  // Every context word is droppable, the facts' keys, digits and values too. With `layers`, this teaches a model to
  // answer with the facts gone from some layers, as a scorer that keeps them only in the copying layer leaves its
  // cache.
  bool facts = false;
  // Every word but a key, digit or value is droppable: the facts' `is`, `=`, `.` too, as a token-level KVzip
  // selection drops them.
  bool structure = false;
  // A position's draw holds for every thinned (layer, KV head) at once (token-level eviction), not per (layer, head).
  bool whole_tokens = false;
  std::vector<int64_t> layers;  // the layers thinned; empty: all
  // A scorer's name (scoring::make_scorer: "kvzip", "snapkv", ...). Non-empty: instead of the random draws, a
  // picked row drops what that scorer's own selection on the model as it is at that step evicts at keep ratio
  // 1 - r, at selection level `level`: the model learns to answer from the cache the scorer will leave it. Needs
  // max_rate < 1 and none of facts, structure, whole_tokens, layers.
  std::string scorer;
  std::string level = "token";  // global, layer, head or token (scoring/selection.h)
  // A reconstruction row (`<repeat>` right after `</ctx>`) is a candidate too, as a task row is: its repeated words
  // see the thinned context. Why: KVzip scores a context by how the model reconstructs it, and this target's
  // reconstruction reads the first two words of every filler sentence (~33% of a context), which at keep 0.3 crowd
  // out the facts (bench/RESULTS.md, fourteenth session); reconstructing from its own evicted cache is pressure to
  // carry a sentence on fewer entries. Config key "context_drop_repeat"; false by default (no draw for such rows).
  bool repeat = false;
};

struct PhaseMix {
  std::string name;
  int64_t steps = 0;  // the phase's length; with until_copy_loss, its maximum
  int64_t batch = 16;
  // > 0: the phase ends early, at the first log point where the copy loss averaged over the last log_every
  // steps is below this (TASKS.md: switch from induction pretraining once copying works, loss below ~1.0).
  double until_copy_loss = 0;
  double w_induction = 0, w_recall = 0, w_task = 0, w_repeat = 0;
  int64_t induction_length = 128;
  double induction_digit_runs = 0;  // see sample_induction
  int recall_facts_min = 2, recall_facts_max = 32;
  // "recall_template": "adjacent" (default) | "sentences" (see sample_recall) | "var" (see sample_var_recall) |
  // "multi" (see sample_multi_recall); for "var" and "multi" the number's digit count is recall_value_digits, 4 when
  // that is 0.
  bool recall_sentences = false;
  bool recall_var = false;
  bool recall_multi = false;
  double recall_var_chains = 0;  // "var" only: sample_var_recall's chain_share
  int recall_value_digits = 0;    // see sample_recall
  // With recall_value_digits > 0: the probability that a recall sequence takes digit values (else one value
  // token each), so one phase drills both answer shapes. 1 (default): every sequence; no random draw then.
  double recall_digit_share = 1;
  int64_t context_min = 128, context_max = 512;  // task/repeat context lengths, drawn uniformly
  std::vector<std::string> tasks;                // empty: every family
  int qa_per_sequence = 4;
  float context_weight = 0.1f;
  int64_t repeat_chunk = 512;
  std::string answer_separator;  // see sample_task; must be a family word
  bool answer_restate = false;   // see compose_answer
  // Config key "multivalue_order": "context" (default), "reverse" or "shuffled": the order of the numbers in niah_multivalue
  // answers and in the "multi" recall drill. Why reverse: after writing the number of fact j, the next one to write
  // (fact j-1's) is something fact j can have read at prefill (the causal mask lets it see the earlier fact of its
  // key), so the answer can find it by matching the number just written, as in copying. In context order the next
  // number sits in a fact that only the later fact can point back from, which the 4-layer target never learned:
  // it skips the key's second fact most (bench/RESULTS.md, thirteenth session). string_match_all ignores order.
  // "shuffled" (fifteenth session): a fresh random order per answer. Why: latest first plateaued with answers that
  // walk the key's facts and repeat them (bench/RESULTS.md, fifteenth session); with the order random, the loss at
  // each number is least for a prediction spread over the numbers not yet written, so it rewards knowing which
  // ones were written, the ability multivalue lacks.
  // "set" (eighteenth session): shuffled, scored as a set. Why: under "shuffled" the teacher-forced number's
  // probability is pushed to 1 while it is one of several right ones, so the loss splits the mass and `<eos>` won
  // greedy decoding (k18 stopped after one number); scored as a set, the numbers not yet written share a target of 1
  // and every one already written, or `<eos>` before the last, is wrong.
  MultivalueOrder multivalue_order = MultivalueOrder::kContext;
  int facts_max = 0;             // > 0: at most this many facts (chains for variable_tracking) per task context
  // Context dropout (eviction-robust training), from the config keys context_drop_share, _min, _max, _facts,
  // _layers, _structure, _tokens, _scorer and _level (see ContextDropOptions). share 0 (default): off, no random draw.
  ContextDropOptions context_drop;
  // Each question and answer sees the context but not the earlier questions and answers of its row
  // (lm_trainer.h: query_isolation_mask), as at evaluation. Config key "isolate_queries"; false by default.
  bool isolate_queries = false;
  // The share of reconstruction rows (`<repeat>` right after `</ctx>`) whose repeated words see none of the
  // context's sentence openers (lm_trainer.h: opener_drop_mask): the word after each `.` and after `<ctx>`, in every
  // layer and head. Why: KVzip keeps what the reconstruction reads, and this target reads each filler sentence from
  // its first two words (bench/RESULTS.md, fourteenth session), 0.35 of a context against a budget of 0.3; a
  // reconstruction that names a sentence from its second word alone would need one entry per sentence. Config key
  // "repeat_drop_openers"; 0 by default (no draw). Independent of context_drop, with its own random stream.
  double repeat_drop_openers = 0;
  // The share of task and reconstruction contexts whose filler is the joined haystack (tasks::HaystackKind::kJoined:
  // the 40 sentences in fixed pairs, 9-16 words), the rest the short one. Why: KVzip keeps what the reconstruction
  // reads, and a random sentence order makes the target read two words of every 4-8 (0.35 of a context, over a
  // keep budget of 0.3; bench/RESULTS.md, fourteenth session); with a sentence's second half fixed by its first, a
  // model that learns the pairs needs those words once per 9-16. Config key "haystack_joined"; 0 by default (no
  // draw, so older configs rebuild the same data).
  double haystack_joined = 0;
  // Config key "haystack_joined_rows": "all" (default; task and reconstruction rows) or "tasks" (task rows only;
  // reconstruction rows keep the short haystack). Why: trained on joined reconstruction rows, the target learned to
  // read each joined sentence's second half from the cache, and KVzip's share of the context it needs rose
  // (bench/RESULTS.md, sixteenth session, k19); task rows alone teach answering over a joined haystack.
  bool haystack_joined_tasks_only = false;
  // > 0: this phase's learning rate, constant after a linear warm-up over its first min(50, steps) steps, instead
  // of the run's cosine (which runs over the whole schedule, so a phase appended to a finished run would start at
  // the cosine's floor). 0 (default): the cosine.
  double lr = 0;
  // > 0: the weight of an attention loss on the rows' copy sources (TrainingSequence::copy_from): at the position
  // that predicts a copied answer token, -log of the last layer's attention on the token's source, averaged over
  // that layer's heads (lm_trainer.h: copy_attention_nll). Why: the 2-layer proxy never formed the circuit that
  // fetches a number by its key from the next-token loss alone (bench/RESULTS.md, eighteenth session: p1's drill
  // loss flat for 1800 steps); this tells its last layer where to look, as supervised attention does for alignment
  // in translation. Evaluation is unchanged: the model still has to find the source from its own weights. Config
  // key "attention_supervision"; 0 by default (no extra work). Refused with context dropout, which can hide the
  // source.
  double attention_supervision = 0;
  // The layer whose attention attention_supervision trains; -1 (default): the last. Config key
  // "attention_supervision_layer"; the trainer refuses a layer the model does not have.
  int64_t attention_supervision_layer = -1;
  // Config key "attention_supervision_heads": "all" (default: the mean over the layer's heads, so every head learns
  // to look) or "any" (one head looking suffices; lm_trainer.h: copy_attention_nll). proxy-p2 ran with "all".
  bool attention_supervision_any_head = false;
  // Config key "attention_supervision_sources": "answers" (default: TrainingSequence::copy_from, the answer's copied
  // tokens) or "chain" (TrainingSequence::chain_from: each digit of a key's later statement onto the same digit of
  // its statement before, in the context). Why: the target lists a multi-value key's numbers but does not know which
  // fact comes next (bench/RESULTS.md, k24-k26); a layer that carries each statement's predecessor lets the copying
  // layer find the fact that follows the number just written by content. Sequences without chains add no loss.
  bool attention_supervision_chain = false;

  static Result<PhaseMix> from_json(const nlohmann::json& j, const std::string& origin);
};

// Draws one sequence from the phase's mixture.
Result<TrainingSequence> sample_from_phase(std::mt19937_64& rng, const PhaseMix& phase);

}  // namespace proxykv::training
