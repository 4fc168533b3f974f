#include "common/distributed/worker_thread.h"

namespace tierflow {

namespace {
// The last non-empty line of a Python traceback is "Type: message".
std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return text;
  size_t start = text.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return text.substr(start, end + 1 - start);
}
}  // namespace

WorkerThread::WorkerThread(Doorbell& bell, Body body)
    : box_(new Mailbox()), endpoint_(*box_), port_(*box_, bell), body_(std::move(body)) {
  thread_ = std::thread([this] {
    Request req;
    while (port_.wait(&req)) {
      std::string err;
      TaskResult result;
      if (!body_(req, &err)) result = TaskResult::failure(last_line(err), err);
      port_.complete(result);
    }
  });
}

WorkerThread::~WorkerThread() {
  endpoint_.stop();
  thread_.join();
}

}  // namespace tierflow
