#include "common/distributed/worker_thread.h"

namespace tierflow {

WorkerThread::WorkerThread(Doorbell& bell, Body body)
    : box_(new Mailbox()), endpoint_(*box_), port_(*box_, bell), body_(std::move(body)) {
  thread_ = std::thread([this] {
    Request req;
    while (port_.wait(&req)) {
      std::string err;
      bool ok = body_(req, &err);
      port_.complete(ok, err);
    }
  });
}

WorkerThread::~WorkerThread() {
  endpoint_.stop();
  thread_.join();
}

}  // namespace tierflow
