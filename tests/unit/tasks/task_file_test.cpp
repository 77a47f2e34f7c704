// The JSONL interchange format: round trip, what is tolerated, and errors that name the file and line.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "proxykv/tasks/task_suite.h"
#include "tasks_test_util.h"

namespace proxykv::tasks {
namespace {

using test::TempDir;

const char* const kGoodLine =
    R"({"id": "a-1", "task": "niah_single", "context": "the grass is green .", )"
    R"("queries": [{"question": "what is the magic number for k001 ?", "answers": ["1 2 3 4"]}]})";

std::vector<TaskContext> sample_contexts() {
  return {
      TaskContext{
          "niah_multikey-2048-0007",
          "niah_multikey",
          "the grass is green . the magic number for k017 is 4 0 9 1 .",
          {{"what is the magic number for k017 ?", {"4 0 9 1"}}, {"what is the magic number for k017 ?", {"4 0 9 1"}}}},
      TaskContext{"vt-1",
                  "variable_tracking",
                  "var k001 = 1 2 3 4 . var k002 = k001 .",
                  {{"which var equal 1 2 3 4 ?", {"k001", "k002"}}}},
      // Text a generator would never write still round-trips: quotes, backslashes, UTF-8.
      TaskContext{"odd \"id\"", "my_task", "caf\xC3\xA9 \\ \t tab", {{"q?", {"\xE2\x9C\x93"}}}},
  };
}

TEST(TaskFileTest, RoundTrips) {
  TempDir dir;
  const std::string path = dir.file("tasks.jsonl");
  const auto contexts = sample_contexts();
  ASSERT_TRUE(write_task_file(path, contexts).is_ok());
  auto read = read_task_file(path);
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  EXPECT_EQ(read.value(), contexts);

  // One object per line, keys in the documented order.
  const std::string bytes = test::read_bytes(path);
  EXPECT_EQ(std::count(bytes.begin(), bytes.end(), '\n'), 3);
  EXPECT_EQ(bytes.rfind(R"({"id":"niah_multikey-2048-0007","task":"niah_multikey","context":)", 0), 0u) << bytes;
  EXPECT_NE(bytes.find(R"("queries":[{"question":"what is the magic number for k017 ?","answers":["4 0 9 1"]})"),
            std::string::npos);
}

TEST(TaskFileTest, EmptyFileHasNoContexts) {
  TempDir dir;
  ASSERT_TRUE(write_task_file(dir.file("empty.jsonl"), {}).is_ok());
  auto read = read_task_file(dir.file("empty.jsonl"));
  ASSERT_TRUE(read.is_ok());
  EXPECT_TRUE(read.value().empty());
}

TEST(TaskFileTest, ToleratesBlankLinesExtraKeysAnyTaskAndCrlf) {
  const std::string text = std::string("\n  \n") + kGoodLine + "\r\n\t\r\n" +
                           R"({"queries": [{"answers": ["x"], "question": "q", "score": 1}], "context": "c", )"
                           R"("task": "some_task_from_elsewhere", "id": "b", "length": 4096, "extra": {"a": [1]}})" +
                           "\n\n";
  auto read = parse_task_jsonl(text, "mem.jsonl");
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  ASSERT_EQ(read.value().size(), 2u);
  EXPECT_EQ(read.value()[0].id, "a-1");
  EXPECT_EQ(read.value()[0].queries[0].answers, std::vector<std::string>{"1 2 3 4"});
  EXPECT_EQ(read.value()[1].task, "some_task_from_elsewhere");
  EXPECT_EQ(read.value()[1].context, "c");
  EXPECT_EQ(read.value()[1].queries[0].question, "q");
}

TEST(TaskFileTest, MalformedLinesAreErrorsNamingFileAndLine) {
  struct Case {
    std::string line;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"{not json", "not valid JSON"},
      {R"({"id": "a"} {"id": "b"})", "not valid JSON"},
      {R"(["id", "task"])", "expected a JSON object, not an array"},
      {R"("just a string")", "expected a JSON object, not a string"},
      {R"({"task": "t", "context": "c", "queries": [{"question": "q", "answers": ["a"]}]})", "'id' is missing"},
      {R"({"id": 7, "task": "t", "context": "c", "queries": [{"question": "q", "answers": ["a"]}]})",
       "'id' must be a string, not a number"},
      {R"({"id": "i", "task": null, "context": "c", "queries": [{"question": "q", "answers": ["a"]}]})",
       "'task' must be a string, not null"},
      {R"({"id": "i", "task": "t", "queries": [{"question": "q", "answers": ["a"]}]})", "'context' is missing"},
      {R"({"id": "i", "task": "t", "context": "c"})", "'queries' must be a non-empty array"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": []})", "'queries' must be a non-empty array"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": {"question": "q"}})", "'queries' must be a non-empty"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": ["q"]})", "queries[0] must be an object, not a string"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": [{"answers": ["a"]}]})",
       "queries[0] 'question' is missing"},
      {R"({"id": "i", "task": "t", "context": "c", )"
       R"("queries": [{"question": "q", "answers": ["a"]}, {"question": "q"}]})",
       "queries[1] 'answers' must be a non-empty array of strings"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": [{"question": "q", "answers": []}]})",
       "queries[0] 'answers' must be a non-empty array of strings"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": [{"question": "q", "answers": "a"}]})",
       "queries[0] 'answers' must be a non-empty array of strings"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": [{"question": "q", "answers": ["a", 4]}]})",
       "queries[0] answers[1] must be a string, not a number"},
      {R"({"id": "i", "task": "t", "context": "c", "queries": [{"question": "q", "answers": [""]}]})",
       "queries[0] answers[0] is empty"},
      {"{\"id\": \"i\xFF\", \"task\": \"t\", \"context\": \"c\", \"queries\": []}", "not valid JSON"},  // bad UTF-8
  };
  TempDir dir;
  const std::string path = dir.file("bad.jsonl");
  for (const Case& c : cases) {
    // Line 3, after a good line and a blank one: blank lines still count.
    test::write_bytes(path, std::string(kGoodLine) + "\n\n" + c.line + "\n" + kGoodLine + "\n");
    auto read = read_task_file(path);
    ASSERT_FALSE(read.is_ok()) << c.line;
    EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
    const std::string& message = read.status().message();
    EXPECT_EQ(message.rfind(path + ":3: ", 0), 0u) << message;
    EXPECT_NE(message.find(c.message_part), std::string::npos) << message;
  }
}

TEST(TaskFileTest, MissingFileIsNotFound) {
  TempDir dir;
  auto read = read_task_file(dir.file("absent.jsonl"));
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.status().code(), StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find("absent.jsonl"), std::string::npos);
}

TEST(TaskFileTest, WritingInvalidUtf8IsAnErrorNotACrash) {
  TempDir dir;
  const std::vector<TaskContext> contexts = {TaskContext{"bad", "t", "caf\xE9", {{"q", {"a"}}}}};
  const Status status = write_task_file(dir.file("out.jsonl"), contexts);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'bad'"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace proxykv::tasks
