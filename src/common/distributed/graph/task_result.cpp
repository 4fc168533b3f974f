#include "common/distributed/graph/task_result.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace tierflow {

namespace {

struct Header {
  uint32_t message, traceback, types, exception;
};

constexpr size_t kMaxMessage = 8 * 1024;
constexpr size_t kMaxTypes = 2 * 1024;

bool continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Keeps the head and the tail of `s` within `max` bytes, cut at characters.
std::string middle_cut(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  static const char kMark[] = " [...] ";
  size_t keep = max - (sizeof kMark - 1);
  size_t head = utf8_prefix(s.data(), keep / 2);
  size_t tail_from = utf8_boundary_after(s.data(), s.size(), s.size() - (keep - head));
  return s.substr(0, head) + kMark + s.substr(tail_from);
}

// Keeps the tail of a traceback within `max` bytes, from a line start when
// there is one, after a marker that says how much was left out.
std::string tail_cut(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  if (max < 64) return std::string();
  size_t budget = max - 64;  // room for the marker line
  size_t from = utf8_boundary_after(s.data(), s.size(), s.size() - budget);
  size_t nl = s.find('\n', from);
  if (nl != std::string::npos && nl + 1 < s.size() && s.size() - (nl + 1) > budget / 2) from = nl + 1;
  return "[... " + std::to_string(from) + " bytes of traceback omitted ...]\n" + s.substr(from);
}

}  // namespace

size_t utf8_prefix(const char* s, size_t n) {
  if (n == 0) return 0;
  size_t i = n;
  // Step back over continuation bytes to the lead byte of the last sequence.
  size_t back = 0;
  while (i > 0 && back < 4 && continuation(static_cast<unsigned char>(s[i - 1]))) --i, ++back;
  if (i == 0) return n;  // not UTF-8 at all: keep the bytes, decoding replaces them
  unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
  return back + 1 >= len ? n : i - 1;  // the last sequence is complete, or cut it off whole
}

size_t utf8_boundary_after(const char* s, size_t n, size_t from) {
  size_t i = from;
  while (i < n && i < from + 4 && continuation(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

TaskResult TaskResult::from_traceback(const std::string& traceback) {
  size_t end = traceback.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return failure(traceback, traceback);
  size_t start = traceback.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return failure(traceback.substr(start, end + 1 - start), traceback);
}

size_t TaskResult::encode(char* buf, size_t cap) const {
  if (ok) {
    size_t n = std::min(value.size(), cap);
    if (n) std::memcpy(buf, value.data(), n);
    return n;
  }
  if (cap < sizeof(Header)) return 0;
  std::string msg = middle_cut(message, kMaxMessage);
  std::string typ = types.size() <= kMaxTypes ? types : std::string();
  size_t room = cap - sizeof(Header) - msg.size() - typ.size();
  std::string exc = exception.size() + traceback.size() <= room ? exception : std::string();
  std::string tb = tail_cut(traceback, room - exc.size());
  Header h{static_cast<uint32_t>(msg.size()), static_cast<uint32_t>(tb.size()), static_cast<uint32_t>(typ.size()),
           static_cast<uint32_t>(exc.size())};
  char* p = buf;
  std::memcpy(p, &h, sizeof h);
  p += sizeof h;
  for (const std::string* part : {&msg, &tb, &typ, &exc}) {
    if (!part->empty()) std::memcpy(p, part->data(), part->size());
    p += part->size();
  }
  return static_cast<size_t>(p - buf);
}

TaskResult TaskResult::decode(bool ok, const char* buf, size_t len) {
  TaskResult r;
  r.ok = ok;
  if (ok) {
    r.value.assign(buf, len);
    return r;
  }
  Header h{};
  if (len < sizeof h) {
    r.message = "the worker sent a malformed failure report";
    return r;
  }
  std::memcpy(&h, buf, sizeof h);
  size_t need = sizeof h + size_t(h.message) + h.traceback + h.types + h.exception;
  if (need > len) {
    r.message = "the worker sent a truncated failure report";
    return r;
  }
  const char* p = buf + sizeof h;
  r.message.assign(p, h.message);
  p += h.message;
  r.traceback.assign(p, h.traceback);
  p += h.traceback;
  r.types.assign(p, h.types);
  p += h.types;
  r.exception.assign(p, h.exception);
  return r;
}

}  // namespace tierflow
