// TaskResult: what a worker reports for one request — the pickled return
// value (empty for None, so a task returning None costs nothing), or a
// failure record: message, traceback, the exception's class names (its MRO,
// "module.QualName" joined by '|', which `retry_on=` is matched against) and
// the pickled exception object.
//
// encode() always fits the record into the mailbox: a value that is too big
// is the child's to refuse before it gets here; a failure is shortened, the
// pickled exception first, then the traceback from its head (the innermost
// frames and the exception line are at its tail), then the message in its
// middle — always at a UTF-8 character boundary, so the text decodes.
#pragma once
#include <cstddef>
#include <string>

namespace tierflow {

struct TaskResult {
  bool ok = true;
  // !ok only: what runs the task behind this worker is gone (a remote
  // daemon that died or stopped answering), while the worker itself lives.
  // The task fails as worker_died (retries apply) and the worker stays.
  bool lost = false;
  // CLOCK_MONOTONIC ns at which the worker took the request and answered it
  // (0: not stamped, e.g. the worker died).
  int64_t t_start_ns = 0, t_end_ns = 0;
  std::string value;  // ok: the pickled return value, empty for None
  std::string message, traceback, types, exception;  // !ok

  static TaskResult failure(std::string message, std::string traceback = "") {
    TaskResult r;
    r.ok = false;
    r.message = std::move(message);
    r.traceback = std::move(traceback);
    return r;
  }
  // A failure from a Python traceback text: its last line ("Type: message")
  // is the message.
  static TaskResult from_traceback(const std::string& traceback);
  // Writes the payload (value bytes, or the failure record) into buf; never
  // more than cap bytes. Returns the bytes written.
  size_t encode(char* buf, size_t cap) const;
  static TaskResult decode(bool ok, const char* buf, size_t len);
};

// The longest prefix of s[0, n) that does not end inside a UTF-8 sequence.
size_t utf8_prefix(const char* s, size_t n);
// Offset of the first character boundary at or after `from` in s[0, n).
size_t utf8_boundary_after(const char* s, size_t n, size_t from);

}  // namespace tierflow
