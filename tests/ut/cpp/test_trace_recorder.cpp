// TraceRecorder: runs and edges kept in order up to the capacity given, the
// rest counted as dropped; names interned once; a snapshot taken from
// another thread while the writer appends always sees a consistent prefix.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "common/distributed/graph/trace_recorder.h"

using namespace tierflow;

namespace {
TraceRun run_of(TaskId id, uint32_t worker) {
  TraceRun r{};
  r.task = id;
  r.worker = worker;
  r.t_start_ns = static_cast<int64_t>(id) * 10;
  r.t_end_ns = r.t_start_ns + 5;
  return r;
}
}  // namespace

TEST(TraceRecorder, KeepsRunsAndEdgesInOrderAndCountsWhatDoesNotFit) {
  TraceRecorder t(3, 2);
  for (TaskId i = 1; i <= 5; ++i) t.run(run_of(i, 0));
  t.edge(1, 2);
  t.edge(2, 3);
  t.edge(3, 4);
  auto s = t.snapshot();
  ASSERT_EQ(s.runs.size(), 3u);
  EXPECT_EQ(s.runs[0].task, 1u);
  EXPECT_EQ(s.runs[2].task, 3u);
  EXPECT_EQ(s.dropped_runs, 2u);
  ASSERT_EQ(s.edges.size(), 2u);
  EXPECT_EQ(s.edges[1].producer, 2u);
  EXPECT_EQ(s.dropped_edges, 1u);
}

TEST(TraceRecorder, InternsANameOnce) {
  TraceRecorder t(4, 4);
  uint32_t a = t.intern("load"), b = t.intern("step"), c = t.intern("load");
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);
  auto s = t.snapshot();
  EXPECT_EQ(s.names[a], "load");
  EXPECT_EQ(s.names[b], "step");
  EXPECT_EQ(s.names[0], "") << "index 0 is the empty name";
}

// One writer appends (as the scheduler does) while readers snapshot: every
// snapshot is a prefix whose records are complete (TSan checks the rest).
TEST(TraceRecorderStress, SnapshotsWhileTheWriterAppendsSeeCompletePrefixes) {
  for (int readers : {1, 2, 4}) {
    TraceRecorder t(20000, 20000);
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (TaskId i = 1; i <= 20000; ++i) {
        t.run(run_of(i, static_cast<uint32_t>(i % 7)));
        t.edge(i, i + 1);
        if (i % 1000 == 0) t.intern("name " + std::to_string(i));
      }
      done.store(true);
    });
    std::vector<std::thread> rs;
    for (int r = 0; r < readers; ++r)
      rs.emplace_back([&] {
        while (!done.load()) {
          auto s = t.snapshot();
          for (size_t k = 0; k < s.runs.size(); ++k) {
            ASSERT_EQ(s.runs[k].task, k + 1);
            ASSERT_EQ(s.runs[k].t_end_ns, s.runs[k].t_start_ns + 5);
          }
          for (size_t k = 0; k < s.edges.size(); ++k) ASSERT_EQ(s.edges[k].consumer, k + 2);
        }
      });
    writer.join();
    for (auto& r : rs) r.join();
    EXPECT_EQ(t.snapshot().runs.size(), 20000u) << readers << " readers";
  }
}
