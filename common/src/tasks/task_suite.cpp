// The JSONL interchange format and the metric; the generators are in task_generators.cpp.
#include "proxykv/tasks/task_suite.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace proxykv::tasks {
namespace {

using Json = nlohmann::json;

const char* json_kind(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::binary: return "binary";
    case Json::value_t::discarded: return "nothing";
    default: return "a number";
  }
}

bool is_blank(std::string_view line) {
  for (const char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return false;
  }
  return true;
}

// Reads member `name` of `object` as a string; `where` prefixes the message ("path:3: ").
Status read_string_member(const Json& object, const char* name, const std::string& where, std::string& out) {
  const auto it = object.find(name);
  if (it == object.end()) return invalid_argument(where + "'" + name + "' is missing");
  if (!it->is_string()) return invalid_argument(where + "'" + name + "' must be a string, not " + json_kind(*it));
  out = it->get<std::string>();
  return Status::ok();
}

Status parse_query(const Json& value, const std::string& where, TaskQuery& query) {
  if (!value.is_object()) return invalid_argument(where + "must be an object, not " + json_kind(value));
  PROXYKV_RETURN_IF_ERROR(read_string_member(value, "question", where, query.question));
  const auto it = value.find("answers");
  if (it == value.end() || !it->is_array() || it->empty()) {
    return invalid_argument(where + "'answers' must be a non-empty array of strings");
  }
  for (std::size_t i = 0; i < it->size(); ++i) {
    const Json& answer = (*it)[i];
    const std::string at = where + "answers[" + std::to_string(i) + "] ";
    if (!answer.is_string()) return invalid_argument(at + "must be a string, not " + json_kind(answer));
    // An empty answer occurs in every text: it would score as right whatever the model says.
    if (answer.get_ref<const std::string&>().empty()) return invalid_argument(at + "is empty");
    query.answers.push_back(answer.get<std::string>());
  }
  return Status::ok();
}

Status parse_context(const Json& line, const std::string& where, TaskContext& context) {
  if (!line.is_object()) return invalid_argument(where + "expected a JSON object, not " + json_kind(line));
  PROXYKV_RETURN_IF_ERROR(read_string_member(line, "id", where, context.id));
  PROXYKV_RETURN_IF_ERROR(read_string_member(line, "task", where, context.task));
  PROXYKV_RETURN_IF_ERROR(read_string_member(line, "context", where, context.context));
  const auto it = line.find("queries");
  if (it == line.end() || !it->is_array() || it->empty()) {
    return invalid_argument(where + "'queries' must be a non-empty array");
  }
  context.queries.resize(it->size());
  for (std::size_t i = 0; i < it->size(); ++i) {
    PROXYKV_RETURN_IF_ERROR(parse_query((*it)[i], where + "queries[" + std::to_string(i) + "] ", context.queries[i]));
  }
  return Status::ok();
}

// ASCII lowercase: locale-independent, and the family's vocabulary is ASCII.
std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

bool operator==(const TaskQuery& a, const TaskQuery& b) {
  return a.question == b.question && a.answers == b.answers;
}

bool operator==(const TaskContext& a, const TaskContext& b) {
  return a.id == b.id && a.task == b.task && a.context == b.context && a.queries == b.queries;
}

Result<std::vector<TaskContext>> parse_task_jsonl(std::string_view text, const std::string& origin) {
  std::vector<TaskContext> contexts;
  std::size_t line_number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // files written on Windows
    if (is_blank(line)) continue;

    const std::string where = origin + ":" + std::to_string(line_number) + ": ";
    Json parsed;
    try {
      parsed = Json::parse(line);
    } catch (const Json::parse_error& e) {
      return invalid_argument(where + "not valid JSON (" + e.what() + ")");
    }
    TaskContext context;
    PROXYKV_RETURN_IF_ERROR(parse_context(parsed, where, context));
    contexts.push_back(std::move(context));
  }
  return contexts;
}

Result<std::vector<TaskContext>> read_task_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open task file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return invalid_argument(path + ": read failed");
  return parse_task_jsonl(buffer.str(), path);
}

Result<std::string> format_task_jsonl(const std::vector<TaskContext>& contexts) {
  using OrderedJson = nlohmann::ordered_json;
  std::string text;
  for (const TaskContext& context : contexts) {
    OrderedJson queries = OrderedJson::array();
    for (const TaskQuery& query : context.queries) {
      queries.push_back(OrderedJson{{"question", query.question}, {"answers", query.answers}});
    }
    const OrderedJson line{
        {"id", context.id}, {"task", context.task}, {"context", context.context}, {"queries", std::move(queries)}};
    try {
      text += line.dump();
    } catch (const OrderedJson::type_error& e) {  // strings that are not valid UTF-8
      return invalid_argument("task context '" + context.id + "' cannot be written as JSON: " + e.what());
    }
    text += '\n';
  }
  return text;
}

Status write_task_file(const std::string& path, const std::vector<TaskContext>& contexts) {
  PROXYKV_ASSIGN_OR_RETURN(const std::string text, format_task_jsonl(contexts));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return invalid_argument(path + ": cannot open for writing");
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return Status(StatusCode::kResourceExhausted, path + ": write failed");
  return Status::ok();
}

bool string_match_all(const std::string& generated, const std::vector<std::string>& answers) {
  if (answers.empty()) return false;
  const std::string haystack = ascii_lower(generated);
  for (const std::string& answer : answers) {
    if (answer.empty() || haystack.find(ascii_lower(answer)) == std::string::npos) return false;
  }
  return true;
}

Result<double> string_match_all_accuracy(const std::vector<std::string>& generated,
                                         const std::vector<std::vector<std::string>>& answers) {
  if (generated.size() != answers.size()) {
    return invalid_argument("accuracy: " + std::to_string(generated.size()) + " generated texts but " +
                            std::to_string(answers.size()) + " answer lists");
  }
  if (generated.empty()) return invalid_argument("accuracy: no queries to score");
  std::size_t correct = 0;
  for (std::size_t i = 0; i < generated.size(); ++i) correct += string_match_all(generated[i], answers[i]) ? 1 : 0;
  return static_cast<double>(correct) / static_cast<double>(generated.size());
}

}  // namespace proxykv::tasks
