#include "common/distributed/processes/worker_thread.h"

namespace tierflow {

WorkerThread::WorkerThread(Doorbell& bell, Body body)
    : WorkerThread(bell, ResultBody([body](const Request& req) {
        std::string err;
        return body(req, &err) ? TaskResult{} : TaskResult::from_traceback(err);
      })) {}

WorkerThread::WorkerThread(Doorbell& bell, ResultBody body, GroupBarrier* barrier)
    : box_(new Mailbox()), endpoint_(*box_, barrier), port_(*box_, bell), body_(std::move(body)) {
  thread_ = std::thread([this] {
    Request req;
    while (port_.wait(&req)) port_.complete(body_(req));
  });
}

WorkerThread::~WorkerThread() {
  endpoint_.stop();
  thread_.join();
}

}  // namespace tierflow
