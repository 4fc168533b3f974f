// TaskResult: the record a worker sends back, always fitting the mailbox
// and always decodable text.
#include <gtest/gtest.h>

#include <string>

#include "common/distributed/processes/mailbox.h"
#include "common/distributed/graph/task_result.h"

using namespace tierflow;

namespace {

// True if s is well-formed UTF-8.
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::string repeat(const std::string& unit, size_t times) {
  std::string s;
  for (size_t i = 0; i < times; ++i) s += unit;
  return s;
}

TaskResult round_trip(const TaskResult& r, size_t cap = kMailboxPayload) {
  std::string buf(cap, '\0');
  size_t n = r.encode(&buf[0], cap);
  EXPECT_LE(n, cap);
  return TaskResult::decode(r.ok, buf.data(), n);
}

}  // namespace

TEST(TaskResult, ValuesRoundTripAndNoneCostsNothing) {
  TaskResult none;
  std::string buf(16, 'x');
  EXPECT_EQ(none.encode(&buf[0], buf.size()), 0u);
  TaskResult v;
  v.value = std::string("\x80\x05pickled\0bytes", 15);
  EXPECT_EQ(round_trip(v).value, v.value);
}

TEST(TaskResult, SmallFailuresRoundTripExactly) {
  TaskResult f = TaskResult::failure("ValueError: bad", "Traceback ...\nValueError: bad\n");
  f.types = "builtins.ValueError|builtins.Exception|builtins.BaseException";
  f.exception = std::string("\x80\x04pickle", 8);
  TaskResult g = round_trip(f);
  EXPECT_FALSE(g.ok);
  EXPECT_EQ(g.message, f.message);
  EXPECT_EQ(g.traceback, f.traceback);
  EXPECT_EQ(g.types, f.types);
  EXPECT_EQ(g.exception, f.exception);
}

TEST(TaskResult, AHugeMessageKeepsItsHeadAndTail) {
  TaskResult f = TaskResult::failure("RuntimeError: " + std::string(100000, 'x') + " THE END", "tb\n");
  TaskResult g = round_trip(f);
  EXPECT_LE(g.message.size(), 8u * 1024);
  EXPECT_EQ(g.message.rfind("RuntimeError: ", 0), 0u);
  EXPECT_EQ(g.message.substr(g.message.size() - 7), "THE END");
  EXPECT_EQ(g.traceback, "tb\n");
}

TEST(TaskResult, AHugeTracebackKeepsItsTailFromALineStart) {
  std::string tb = "Traceback (most recent call last):\n";
  for (int i = 0; i < 5000; ++i) tb += "  File \"deep.py\", line " + std::to_string(i) + ", in f\n    return f(n - 1)\n";
  tb += "RecursionError: maximum recursion depth exceeded\n";
  TaskResult f = TaskResult::failure("RecursionError: maximum recursion depth exceeded", tb);
  f.exception = std::string(4096, 'p');
  TaskResult g = round_trip(f);
  EXPECT_LT(g.traceback.size(), kMailboxPayload);
  EXPECT_EQ(g.traceback.substr(g.traceback.size() - 49), "RecursionError: maximum recursion depth exceeded\n");
  EXPECT_NE(g.traceback.find("line 4999"), std::string::npos) << "the innermost frames are kept";
  EXPECT_EQ(g.traceback.rfind("[... ", 0), 0u) << "a marker says what was left out";
  EXPECT_EQ(g.message, f.message);
}

TEST(TaskResult, CutsNeverSplitACharacter) {
  for (const std::string& unit : {std::string("\xc3\xa9"), std::string("\xe2\x82\xac"), std::string("\xf0\x9f\x99\x82")}) {
    std::string text = repeat(unit, 40000);
    TaskResult f = TaskResult::failure("ValueError: " + text, "Traceback\nValueError: " + text + "\n");
    TaskResult g = round_trip(f);
    EXPECT_TRUE(valid_utf8(g.message)) << "unit of " << unit.size() << " bytes";
    EXPECT_TRUE(valid_utf8(g.traceback)) << "unit of " << unit.size() << " bytes";
    EXPECT_LE(g.message.size() + g.traceback.size(), kMailboxPayload);
  }
}

TEST(TaskResult, ThePickledExceptionGivesWayFirst) {
  TaskResult f = TaskResult::failure("E: x", std::string(60000, 't'));
  f.exception = std::string(20000, 'p');
  TaskResult g = round_trip(f);
  EXPECT_TRUE(g.exception.empty());
  EXPECT_GT(g.traceback.size(), 50000u);
}

TEST(TaskResult, Utf8HelpersFindCharacterBoundaries) {
  std::string s = "a\xc3\xa9\xe2\x82\xac";  // a, é (2 bytes), € (3 bytes)
  EXPECT_EQ(utf8_prefix(s.data(), 6), 6u);
  EXPECT_EQ(utf8_prefix(s.data(), 5), 3u);
  EXPECT_EQ(utf8_prefix(s.data(), 4), 3u);
  EXPECT_EQ(utf8_prefix(s.data(), 2), 1u);
  EXPECT_EQ(utf8_boundary_after(s.data(), 6, 2), 3u);
  EXPECT_EQ(utf8_boundary_after(s.data(), 6, 4), 6u);
}

TEST(TaskResult, MalformedReportsDecodeToAMessage) {
  TaskResult g = TaskResult::decode(false, "ab", 2);
  EXPECT_FALSE(g.ok);
  EXPECT_NE(g.message.find("malformed"), std::string::npos);
}
