// Reaper: deaths and births reported the moment they happen, from the fork
// server's socket and the server's pidfd. Real children are forked (before
// any thread of the test starts) and the test plays the fork server.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common/distributed/processes/reaper.h"

using namespace tierflow;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

pid_t fork_exit(int code) {
  pid_t pid = fork();
  if (pid == 0) _exit(code);
  return pid;
}

pid_t fork_pause() {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a failed test
    for (;;) pause();
  }
  return pid;
}

// Records the callbacks (they run on the reaper thread).
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<uint32_t, std::string>> deaths;
  std::vector<std::pair<uint32_t, int>> spawns;  // (mailbox, pid)
  std::vector<int> spawn_fds;

  ReaperCallbacks callbacks() {
    ReaperCallbacks cb;
    cb.on_death = [this](uint32_t m, const std::string& why) {
      std::lock_guard<std::mutex> lock(mu);
      deaths.emplace_back(m, why);
      cv.notify_all();
    };
    cb.on_spawn = [this](uint32_t m, int pid, int fd) {
      std::lock_guard<std::mutex> lock(mu);
      spawns.emplace_back(m, pid);
      spawn_fds.push_back(fd);
      cv.notify_all();
    };
    return cb;
  }
  bool wait_deaths(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(20), [&] { return deaths.size() >= n; });
  }
  bool wait_spawns(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(20), [&] { return spawns.size() >= n; });
  }
};

void send_msg(int fd, ForkServerMsg m, int pass_fd = -1) {
  iovec iov{&m, sizeof m};
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  char control[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ASSERT_EQ(sendmsg(fd, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof m));
}

// Reaps `pid` the way the fork server does and returns (si_code, si_status).
std::pair<int, int> reap(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  EXPECT_EQ(waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED), 0);
  return {info.si_code, info.si_status};
}

}  // namespace

TEST(Reaper, DescribeNamesExitCodesAndSignals) {
  EXPECT_EQ(Reaper::describe(CLD_EXITED, 3), "exited with exit code 3");
  EXPECT_EQ(Reaper::describe(CLD_KILLED, SIGKILL), "killed by signal SIGKILL");
  EXPECT_EQ(Reaper::describe(CLD_DUMPED, SIGSEGV), "killed by signal SIGSEGV (core dumped)");
}

TEST(Reaper, ServerExitingWithCode3ReportsItsChildrenDead) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  pid_t server = fork_exit(3);
  ASSERT_GT(server, 0);
  int pidfd = pidfd_open(server);
  ASSERT_GE(pidfd, 0) << std::strerror(errno);
  close(sv[1]);  // the server's end: it is gone with the server
  Events ev;
  {
    Reaper r(sv[0], server, pidfd, {"chip 0", "sub 1"}, {4242, 4343}, ev.callbacks());
    r.start();
    ASSERT_TRUE(ev.wait_deaths(2));
    EXPECT_TRUE(r.wait_all_exited(1000));
    EXPECT_EQ(r.alive(), 0u);
  }
  std::lock_guard<std::mutex> lock(ev.mu);
  ASSERT_EQ(ev.deaths.size(), 2u);
  for (auto& d : ev.deaths) {
    EXPECT_NE(d.second.find("exit code 3"), std::string::npos) << d.second;
    EXPECT_NE(d.second.find("fork server exited"), std::string::npos) << d.second;
  }
  EXPECT_EQ(ev.deaths[0].second.rfind(ev.deaths[0].first == 0 ? "chip 0 (pid 4242) died: " : "sub 1 (pid 4343) died: ", 0),
            0u)
      << ev.deaths[0].second;
  // The reaper reaped the server: it is no longer our child.
  EXPECT_EQ(waitpid(server, nullptr, WNOHANG), -1);
}

TEST(Reaper, ServerKilledBySigkillIsReported) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  pid_t server = fork_pause();
  ASSERT_GT(server, 0);
  int pidfd = pidfd_open(server);
  ASSERT_GE(pidfd, 0);
  Events ev;
  {
    Reaper r(sv[0], server, pidfd, {"chip 2"}, {777}, ev.callbacks());
    r.start();
    ASSERT_EQ(kill(server, SIGKILL), 0);
    ASSERT_TRUE(ev.wait_deaths(1));
    EXPECT_TRUE(r.wait_all_exited(1000));
  }
  close(sv[1]);
  std::lock_guard<std::mutex> lock(ev.mu);
  ASSERT_EQ(ev.deaths.size(), 1u);
  EXPECT_EQ(ev.deaths[0].first, 0u);
  EXPECT_EQ(ev.deaths[0].second, "chip 2 (pid 777) died: its fork server exited (killed by signal SIGKILL)");
}

TEST(Reaper, ChildDeathMessagesReportExitCodeAndSignal) {
  // Real children: one exits with 3, one is killed by SIGKILL; the test
  // reaps them as the fork server would and forwards the waitid status.
  pid_t c0 = fork_exit(3);
  pid_t c1 = fork_pause();
  pid_t server = fork_pause();
  ASSERT_GT(c0, 0);
  ASSERT_GT(c1, 0);
  ASSERT_GT(server, 0);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  int pidfd = pidfd_open(server);
  ASSERT_GE(pidfd, 0);
  Events ev;
  {
    Reaper r(sv[0], server, pidfd, {"chip 0", "chip 1"}, {c0, c1}, ev.callbacks());
    r.start();
    EXPECT_EQ(r.alive(), 2u);
    EXPECT_EQ(r.pid_of(1), c1);

    auto s0 = reap(c0);
    send_msg(sv[1], ForkServerMsg{kMsgDied, 0, c0, s0.first, s0.second});
    ASSERT_TRUE(ev.wait_deaths(1));
    EXPECT_EQ(r.alive(), 1u);
    EXPECT_FALSE(r.wait_all_exited(10));

    r.kill_all(SIGKILL);  // signals only the child still alive: c1
    auto s1 = reap(c1);
    EXPECT_EQ(s1.first, CLD_KILLED);
    send_msg(sv[1], ForkServerMsg{kMsgDied, 1, c1, s1.first, s1.second});
    ASSERT_TRUE(ev.wait_deaths(2));
    EXPECT_TRUE(r.wait_all_exited(1000));

    // A replacement is born on mailbox 1, with its output pipe attached.
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    send_msg(sv[1], ForkServerMsg{kMsgSpawned, 1, 9999, 0, 0}, p[0]);
    close(p[0]);
    ASSERT_TRUE(ev.wait_spawns(1));
    EXPECT_EQ(r.alive(), 1u);
    EXPECT_EQ(r.pid_of(1), 9999);
    {
      std::lock_guard<std::mutex> lock(ev.mu);
      ASSERT_EQ(ev.spawns.size(), 1u);
      EXPECT_EQ(ev.spawns[0], (std::pair<uint32_t, int>{1, 9999}));
      int fd = ev.spawn_fds[0];
      ASSERT_GE(fd, 0);
      ASSERT_EQ(write(p[1], "hi", 2), 2);
      char buf[2];
      ASSERT_EQ(read(fd, buf, 2), 2);  // the passed fd is the pipe's read end
      EXPECT_EQ(std::string(buf, 2), "hi");
      close(fd);
    }
    close(p[1]);
    // A message for an unknown mailbox is ignored.
    send_msg(sv[1], ForkServerMsg{kMsgDied, 7, 1, CLD_EXITED, 0});

    // The fake server never answers QUIT: quit() kills it, and the child
    // still alive (the replacement) is reported dead with the server.
    r.quit(50);
    ASSERT_TRUE(ev.wait_deaths(3));
    EXPECT_TRUE(r.wait_all_exited(1000));
  }
  close(sv[1]);
  std::lock_guard<std::mutex> lock(ev.mu);
  ASSERT_EQ(ev.deaths.size(), 3u);
  EXPECT_EQ(ev.deaths[0], (std::pair<uint32_t, std::string>{
                              0, "chip 0 (pid " + std::to_string(c0) + ") died: exited with exit code 3"}));
  EXPECT_EQ(ev.deaths[1], (std::pair<uint32_t, std::string>{
                              1, "chip 1 (pid " + std::to_string(c1) + ") died: killed by signal SIGKILL"}));
  EXPECT_EQ(ev.deaths[2].first, 1u);
  EXPECT_EQ(ev.deaths[2].second, "chip 1 (pid 9999) died: its fork server exited (killed by signal SIGKILL)");
  EXPECT_EQ(waitpid(server, nullptr, WNOHANG), -1) << "the server was reaped through its pidfd";
}
