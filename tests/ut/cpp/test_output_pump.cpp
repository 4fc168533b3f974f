// OutputPump: children's pipes carried line by line, with a prefix, to one fd.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/distributed/processes/output_pump.h"

using namespace tierflow;
using namespace std::chrono_literals;

namespace {

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    r = fds[0];
    w = fds[1];
  }
};

void put(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
}

// Drains the pump's output pipe on a thread (so the pump never blocks on a
// full pipe) until EOF.
struct Sink {
  Pipe out;
  std::string text;
  std::thread reader;
  Sink() {
    reader = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(out.r, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    });
  }
  // Call once the pump is finished: closes the write end and returns all text.
  std::string collect() {
    close(out.w);
    reader.join();
    close(out.r);
    return text;
  }
};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

}  // namespace

TEST(OutputPump, PartialWritesAreJoinedIntoWholeLines) {
  Sink sink;
  Pipe a;
  {
    OutputPump pump({{a.r, "[chip 0] "}}, sink.out.w);
    pump.start();
    put(a.w, "hel");
    std::this_thread::sleep_for(20ms);
    put(a.w, "lo\nwor");
    std::this_thread::sleep_for(20ms);
    put(a.w, "ld\n\nlast");
    std::this_thread::sleep_for(20ms);
    close(a.w);
    pump.finish(5000);
  }
  EXPECT_EQ(sink.collect(), "[chip 0] hello\n[chip 0] world\n[chip 0] \n[chip 0] last\n");
}

TEST(OutputPump, PartialLastLineIsDeliveredAtEofWithANewline) {
  Sink sink;
  Pipe a, b;
  OutputPump pump({{a.r, "[sub 0] "}, {b.r, "[sub 1] "}}, sink.out.w);
  pump.start();
  put(a.w, "one\ntwo");
  put(b.w, "no newline at all");
  close(a.w);
  close(b.w);
  pump.finish(5000);
  auto lines = lines_of(sink.collect());
  std::multiset<std::string> got(lines.begin(), lines.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"[sub 0] one", "[sub 0] two", "[sub 1] no newline at all"}));
}

TEST(OutputPump, PartialLineOfAnOpenPipeIsDeliveredAtTheDeadline) {
  Sink sink;
  Pipe a;
  {
    OutputPump pump({{a.r, "[chip 3] "}}, sink.out.w);
    pump.start();
    put(a.w, "done\nstill typing");
    std::this_thread::sleep_for(30ms);
    auto t0 = std::chrono::steady_clock::now();
    pump.finish(100);  // the writer never closes its end
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  }
  close(a.w);
  EXPECT_EQ(sink.collect(), "[chip 3] done\n[chip 3] still typing\n");
}

TEST(OutputPump, ConcurrentSourcesDeliverEveryLineOnceWithItsPrefix) {
  constexpr int kSources = 4;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kLines = 1000;
#else
  constexpr int kLines = 5000;
#endif
  Sink sink;
  std::vector<Pipe> pipes(kSources);
  std::vector<std::pair<int, std::string>> sources;
  for (int s = 0; s < kSources; ++s) sources.emplace_back(pipes[s].r, "[w" + std::to_string(s) + "] ");
  OutputPump pump(sources, sink.out.w);
  pump.start();
  std::vector<std::thread> writers;
  for (int s = 0; s < kSources; ++s)
    writers.emplace_back([&, s] {
      std::mt19937 rng(s);
      std::string all;
      for (int i = 0; i < kLines; ++i)
        all += "w" + std::to_string(s) + " line " + std::to_string(i) + std::string(rng() % 40, 'x') + "\n";
      // Write in random chunk sizes, so lines are split across writes.
      size_t off = 0;
      while (off < all.size()) {
        size_t n = std::min<size_t>(all.size() - off, 1 + rng() % 300);
        put(pipes[s].w, all.substr(off, n));
        off += n;
      }
      close(pipes[s].w);
    });
  for (auto& t : writers) t.join();
  pump.finish(10000);
  auto lines = lines_of(sink.collect());
  ASSERT_EQ(lines.size(), size_t(kSources * kLines));
  std::vector<int> next(kSources, 0);
  for (auto& l : lines) {
    ASSERT_EQ(l.rfind("[w", 0), 0u) << l;
    int s = l[2] - '0';
    ASSERT_TRUE(s >= 0 && s < kSources) << l;
    std::string want = "[w" + std::to_string(s) + "] w" + std::to_string(s) + " line " + std::to_string(next[s]);
    // Lines of one source arrive whole, once, in order, with their own prefix.
    ASSERT_EQ(l.substr(0, want.size()), want) << "interleaved or misprefixed line: " << l;
    ASSERT_EQ(l.find_first_not_of('x', want.size()), std::string::npos) << l;
    ++next[s];
  }
  for (int s = 0; s < kSources; ++s) EXPECT_EQ(next[s], kLines);
}

TEST(OutputPump, SourceAddedWhileRunningIsCarried) {
  Sink sink;
  Pipe a, b;
  OutputPump pump({{a.r, "[chip 0] "}}, sink.out.w);
  pump.start();
  put(a.w, "before\n");
  pump.add_source(b.r, "[chip 0'] ");
  put(b.w, "replacement says hi\npartial");
  close(b.w);
  put(a.w, "after\n");
  close(a.w);
  pump.finish(5000);
  auto lines = lines_of(sink.collect());
  std::multiset<std::string> got(lines.begin(), lines.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"[chip 0] before", "[chip 0] after", "[chip 0'] replacement says hi",
                                             "[chip 0'] partial"}));
}

TEST(OutputPump, LongLinesSurviveIntact) {
  Sink sink;
  Pipe a;
  std::string big(200000, 'y');
  OutputPump pump({{a.r, "[sub 0] "}}, sink.out.w);
  pump.start();
  std::thread w([&] {
    put(a.w, big + "\nshort\n");
    close(a.w);
  });
  w.join();
  pump.finish(10000);
  EXPECT_EQ(sink.collect(), "[sub 0] " + big + "\n[sub 0] short\n");
}
