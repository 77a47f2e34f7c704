// proxykv make-tasks: writes a JSONL file of generated task contexts (shared/TASKS.md, docs/tasks.md).
// proxykv write-family-tokenizer: writes the tiny family's tokenizer.json.
#include <iostream>
#include <memory>

#include "commands.h"
#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::cli {
namespace {

struct MakeTasksArgs {
  std::string task;
  int64_t length = 0;
  int facts = 0;  // 0: the family's default (tasks::default_facts)
  int queries = 4;
  int n = 1;
  uint64_t seed = 0;
  std::string haystack = tasks::haystack_kind_name(tasks::HaystackKind::kShort);
  std::string out;
};

Status run_make_tasks(const MakeTasksArgs& args) {
  std::vector<std::string> families;
  if (args.task == "all") {
    families = tasks::task_families();
  } else {
    families = {args.task};
  }
  PROXYKV_ASSIGN_OR_RETURN(const tasks::HaystackKind haystack, tasks::parse_haystack_kind(args.haystack));
  std::vector<tasks::TaskContext> contexts;
  for (const std::string& family : families) {
    tasks::TaskSpec spec;
    spec.task = family;
    spec.length_tokens = args.length;
    // niah_single holds one fact whatever --facts says, so that --task all works with any --facts.
    spec.facts = (args.facts == 0 || (args.task == "all" && family == "niah_single")) ? tasks::default_facts(family)
                                                                                      : args.facts;
    spec.queries = args.queries;
    spec.n_contexts = args.n;
    spec.seed = args.seed;
    spec.haystack = haystack;
    PROXYKV_ASSIGN_OR_RETURN(auto generated, tasks::generate_tasks(spec));
    std::cerr << "proxykv make-tasks: " << family << ": " << generated.size() << " contexts of " << args.length
              << " tokens, " << spec.facts << " facts\n";
    contexts.insert(contexts.end(), std::make_move_iterator(generated.begin()),
                    std::make_move_iterator(generated.end()));
  }
  PROXYKV_RETURN_IF_ERROR(tasks::write_task_file(args.out, contexts));
  std::cerr << "proxykv make-tasks: wrote " << contexts.size() << " contexts to " << args.out << "\n";
  return Status::ok();
}

}  // namespace

void register_make_tasks(CLI::App& app) {
  auto args = std::make_shared<MakeTasksArgs>();
  CLI::App* cmd = app.add_subcommand("make-tasks", "generate a JSONL file of long-context tasks (docs/tasks.md)");
  cmd->add_option("--task", args->task,
                  "niah_single | niah_multikey | niah_multivalue | niah_multiquery | "
                  "kv_retrieval | variable_tracking | all")
      ->required();
  cmd->add_option("--length", args->length, "context length in words (= tokens), without <bos> <ctx> </ctx>")
      ->required()
      ->check(CLI::Range(int64_t{1}, tasks::kMaxLengthTokens));
  cmd->add_option("--facts", args->facts, "facts per context (its meaning per task: docs/tasks.md; 0: task default)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--queries", args->queries, "queries per context (niah_single, niah_multivalue: always 1)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--n", args->n, "contexts per task")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--seed", args->seed, "seed; the same options give the same file on every machine")
      ->capture_default_str();
  cmd->add_option("--haystack", args->haystack,
                  "filler sentences: short (40 sentences of 4-8 words) or joined (the same 40 in fixed pairs, "
                  "9-16 words; docs/tasks.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({tasks::haystack_kind_name(tasks::HaystackKind::kShort),
                              tasks::haystack_kind_name(tasks::HaystackKind::kJoined)}));
  cmd->add_option("--out", args->out, "output JSONL file")->required();
  on_run(cmd, [args] { return run_make_tasks(*args); });
}

void register_write_family_tokenizer(CLI::App& app) {
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("write-family-tokenizer", "write the tiny model family's HF tokenizer.json");
  cmd->add_option("--out", *out, "output file (tokenizer.json)")->required();
  cmd->callback([out] {
    const Status s = tasks::write_family_tokenizer(*out);
    if (!s.is_ok()) {
      std::cerr << "proxykv write-family-tokenizer: " << s.to_string() << "\n";
      set_exit_code(1);
      return;
    }
    std::cerr << "proxykv write-family-tokenizer: wrote " << tasks::kFamilyVocabSize << " tokens to " << *out << "\n";
  });
}

}  // namespace proxykv::cli
