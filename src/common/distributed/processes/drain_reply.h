// answer_when_drained: how a next-level worker (a level-3 Worker in its own
// process below a level-4 one) answers a request the moment the request's
// work is over.
//
// A request runs an orch function, which submits tasks to the worker's own
// engine; the request is done when they have all finished. Waiting for that
// on the serving thread and answering from there puts two more hand-offs on
// every level-4 link (the last inner finish wakes the serving thread, which
// then writes the answer). Instead the serving thread arms its session
// (Session::when_drained) and the thread whose finish drains it — the inner
// scheduler — ends the loan of the parent's tensors and writes the answer
// at once; the serving thread only learns that it may take the next request.
//
// A request whose work failed is not answered here: its failure report (the
// path, the root cause's traceback and exception) is built by the serving
// thread in Python, so the session's failures are left for it to drain.
#pragma once
#include <string>

#include "common/distributed/graph/session.h"
#include "common/distributed/memory/lent_memory.h"
#include "common/distributed/processes/child_port.h"

namespace tierflow {

// Arms `session`: once everything submitted to it has finished, if none of
// it failed, `lent`'s loan ends and `port` answers its current request with
// `value` (a successful result). Blocks until then (an adaptive spin, then a
// futex sleep). True when the request was answered; false when the work
// failed — then the request is still open, the loan still lent and the
// failures undrained, for the caller to report. The session must not be
// submitted to while this waits.
bool answer_when_drained(ChildPort& port, Session& session, LentMemory& lent, std::string value);

}  // namespace tierflow
