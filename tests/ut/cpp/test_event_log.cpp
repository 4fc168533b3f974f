// EventLog: the scheduler's lines for the user's log — kept in order,
// bounded (the oldest go, counted), and a waiting reader wakes on a line or
// on close, then sees every line left before it is told the log closed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/distributed/event_log.h"

using namespace tierflow;

TEST(EventLog, LinesComeOutInOrderWithTheirLevels) {
  EventLog log;
  log.push(EventLog::kWarning, "chip 1 died");
  log.push(EventLog::kInfo, "chip 1 is back");
  bool open = false;
  auto got = log.take(0, &open);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(open);
  EXPECT_EQ(got[0].level, EventLog::kWarning);
  EXPECT_EQ(got[0].text, "chip 1 died");
  EXPECT_EQ(got[1].text, "chip 1 is back");
  EXPECT_TRUE(log.take(0, &open).empty()) << "taken lines are gone";
}

TEST(EventLog, WhenNobodyReadsTheOldestGoAndAreCounted) {
  EventLog log(3);
  for (int i = 0; i < 10; ++i) log.push(EventLog::kInfo, std::to_string(i));
  bool open = false;
  auto got = log.take(0, &open);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].text, "7");
  EXPECT_EQ(got[2].text, "9");
  EXPECT_EQ(log.dropped(), 7u);
}

TEST(EventLog, ATakeWaitsForALineAndTimesOutWithout) {
  EventLog log;
  bool open = false;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(log.take(50, &open).empty());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    log.push(EventLog::kInfo, "late");
  });
  auto got = log.take(-1, &open);
  writer.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text, "late");
}

TEST(EventLog, CloseWakesTheReaderWhichGetsWhatWasLeft) {
  EventLog log;
  log.push(EventLog::kInfo, "last words");
  bool open = true;
  std::thread closer([&] { log.close(); });
  closer.join();
  auto got = log.take(-1, &open);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(open);
  log.push(EventLog::kInfo, "after close");  // dropped: nobody will read it
  EXPECT_TRUE(log.take(-1, &open).empty());
  EXPECT_FALSE(open);
}

// Several writers and one reader, at several thread counts: nothing is lost
// while the log has room, nothing is seen twice, each writer's lines stay in
// its order (checked by TSan for races in the CI build).
TEST(EventLogStress, WritersAndAReaderLoseNothingAndKeepEachWritersOrder) {
  for (int writers : {1, 2, 4, 8}) {
    const int per = 2000;
    EventLog log(writers * per);
    std::atomic<int> done{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < writers; ++w)
      ts.emplace_back([&, w] {
        for (int i = 0; i < per; ++i) log.push(EventLog::kInfo, std::to_string(w) + ":" + std::to_string(i));
        done.fetch_add(1);
      });
    std::vector<int> next(writers, 0);
    int seen = 0;
    bool open = true;
    while (open) {
      if (done.load() == writers && seen == writers * per) log.close();
      for (auto& e : log.take(10, &open)) {
        auto colon = e.text.find(':');
        int w = std::stoi(e.text.substr(0, colon)), i = std::stoi(e.text.substr(colon + 1));
        ASSERT_EQ(i, next[w]) << "writer " << w << " out of order";
        ++next[w];
        ++seen;
      }
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(seen, writers * per) << writers << " writers";
    EXPECT_EQ(log.dropped(), 0u);
  }
}
