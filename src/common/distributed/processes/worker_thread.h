// WorkerThread: an in-process worker behind a ShmEndpoint — a thread running
// the child loop on a private Mailbox. The C++ tests use it as a fake chip or
// sub-worker; it exercises the same mailbox protocol a child process does.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/distributed/processes/child_port.h"
#include "common/distributed/processes/shm_endpoint.h"

namespace tierflow {

class WorkerThread {
 public:
  // Runs `fn(request, &error)`; returning false fails the task with `error`
  // as its traceback (its last line as the message).
  using Body = std::function<bool(const Request&, std::string*)>;
  // Returns the whole report (value, or failure with class names, ...).
  using ResultBody = std::function<TaskResult(const Request&)>;
  WorkerThread(Doorbell& bell, Body body);
  // `barrier`: the rendezvous of groups this worker leads (see ShmEndpoint).
  WorkerThread(Doorbell& bell, ResultBody body, GroupBarrier* barrier = nullptr);
  ~WorkerThread();  // asks the loop to exit and joins it
  Endpoint& endpoint() { return endpoint_; }

 private:
  std::unique_ptr<Mailbox> box_;
  ShmEndpoint endpoint_;
  ChildPort port_;
  ResultBody body_;
  std::thread thread_;
};

}  // namespace tierflow
