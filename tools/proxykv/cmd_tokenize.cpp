// proxykv tokenize: text -> token ids (one JSON array on one line), or ids -> text with --ids.
//   proxykv tokenize --tokenizer models/tiny/tokenizer.json --text "<bos> <ctx> the sky is blue . </ctx>"
//   proxykv tokenize --tokenizer tokenizer.json --ids "[9707,11,1879]" [--skip-special]
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "proxykv/model/tokenizer.h"

namespace proxykv::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer_path;
  std::string text;
  std::string ids_json;
  bool skip_special = false;
};

void fail(const std::string& message) {
  std::cerr << "proxykv tokenize: " << message << "\n";
  set_exit_code(1);
}

void run_tokenize(const TokenizeOptions& options, bool decode) {
  auto tokenizer = Tokenizer::from_file(options.tokenizer_path);
  if (!tokenizer.is_ok()) return fail(tokenizer.status().to_string());

  if (!decode) {
    const std::vector<int32_t> ids = tokenizer->encode(options.text);
    std::cout << nlohmann::json(ids).dump() << "\n";
    return;
  }
  const nlohmann::json parsed = nlohmann::json::parse(options.ids_json, nullptr, /*allow_exceptions=*/false);
  std::vector<int32_t> ids;
  bool well_formed = parsed.is_array();
  for (const auto& id : parsed) {
    if (!well_formed) break;
    well_formed = id.is_number_integer() && id.get<int64_t>() >= INT32_MIN && id.get<int64_t>() <= INT32_MAX;
    if (well_formed) ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  if (!well_formed) return fail("--ids must be a JSON array of integer token ids, e.g. [1,2,3]");
  std::cout << tokenizer->decode(ids, options.skip_special) << "\n";
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* command = app.add_subcommand("tokenize", "Encode text to token ids with a tokenizer.json (or decode ids)");
  command->add_option("--tokenizer", options->tokenizer_path, "tokenizer.json file")->required();
  CLI::Option* text = command->add_option("--text", options->text, "text to encode; no BOS is added");
  CLI::Option* ids = command->add_option("--ids", options->ids_json, "JSON array of ids to decode instead");
  command->add_flag("--skip-special", options->skip_special, "with --ids: leave special tokens out");
  text->excludes(ids);
  command->callback([options, text, ids] {
    if (text->count() == 0 && ids->count() == 0) throw CLI::RequiredError("--text or --ids");
    run_tokenize(*options, /*decode=*/ids->count() > 0);
  });
}

}  // namespace proxykv::cli
