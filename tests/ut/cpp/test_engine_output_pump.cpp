// OutputPump: whole lines, right prefix, once each, partial last lines kept.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/distributed/output_pump.h"

using namespace tierflow;

namespace {
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}
}  // namespace

TEST(OutputPump, LinesFromConcurrentWritersArriveWholeAndOnce) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  std::vector<std::pair<int, std::string>> sources;
  std::vector<int> writers;
  for (int i = 0; i < 3; ++i) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    sources.emplace_back(p[0], "[w" + std::to_string(i) + "] ");
    writers.push_back(p[1]);
  }
  std::string collected;
  std::thread reader([&] { collected = read_all(out[0]); });
  {
    OutputPump pump(sources, out[1]);
    pump.start();
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i)
      ts.emplace_back([&, i] {
        for (int k = 0; k < 2000; ++k) {
          std::string line = "line " + std::to_string(k) + " " + std::string(k % 37, 'x') + "\n";
          // Split each line over two writes to exercise reassembly.
          size_t half = line.size() / 2;
          ASSERT_EQ(write(writers[i], line.data(), half), static_cast<ssize_t>(half));
          ASSERT_EQ(write(writers[i], line.data() + half, line.size() - half), static_cast<ssize_t>(line.size() - half));
        }
        ASSERT_EQ(write(writers[i], "tail", 4), 4);  // no newline
        close(writers[i]);
      });
    for (auto& t : ts) t.join();
    pump.finish(5000);
  }
  close(out[1]);
  reader.join();
  std::map<std::string, int> seen;
  std::istringstream in(collected);
  std::string line;
  while (std::getline(in, line)) seen[line] += 1;
  for (int i = 0; i < 3; ++i) {
    std::string prefix = "[w" + std::to_string(i) + "] ";
    for (int k = 0; k < 2000; ++k) EXPECT_EQ(seen[prefix + "line " + std::to_string(k) + " " + std::string(k % 37, 'x')], 1);
    EXPECT_EQ(seen[prefix + "tail"], 1);
  }
  EXPECT_EQ(seen.size(), 3u * 2001u);
}
