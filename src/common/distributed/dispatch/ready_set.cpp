#include "common/distributed/dispatch/ready_set.h"

#include <algorithm>

namespace tierflow {

bool ReadySet::Queues::chip_work() const {
  if (!any_chip.empty() || !groups.empty()) return true;
  for (auto& d : directed)
    if (!d.empty()) return true;
  return false;
}

ReadySet::Queues& ReadySet::queues(uint32_t session) {
  if (session >= sessions_.size()) sessions_.resize(session + 1);
  Queues& q = sessions_[session];
  if (q.directed.size() != chips_) q.directed.resize(chips_);
  return q;
}

void ReadySet::set_weight(uint32_t session, uint32_t weight) { queues(session).weight = weight == 0 ? 1 : weight; }

void ReadySet::count(const ReadyEntry& e, int delta) {
  depth_ += delta;
  sessions_[e.session].size += delta;
  switch (e.kind) {
    case TaskKind::Sub: subs_queued_ += delta; break;
    case TaskKind::Group: groups_queued_ += delta; break;
    case TaskKind::Chip:
      if (e.target >= 0) {
        if (directed_queued_.size() < chips_) directed_queued_.resize(chips_, 0);
        directed_queued_[e.target] += delta;
      } else {
        any_chip_queued_ += delta;
      }
      break;
  }
}

void ReadySet::push(const ReadyEntry& e) {
  Queues& q = queues(e.session);
  Class k = e.kind == TaskKind::Sub ? kSubClass : kChipClass;
  switch (e.kind) {
    case TaskKind::Sub: q.sub.push_back(e); break;
    case TaskKind::Group: q.groups.push_back(e); break;
    case TaskKind::Chip: (e.target >= 0 ? q.directed[e.target] : q.any_chip).push_back(e); break;
  }
  count(e, +1);
  if (!q.in_ring[k]) {
    // A session joins the round with no credit, behind those already in it.
    Ring& r = rings_[k];
    if (r.members.empty()) {
      r.members.push_back(e.session);
      r.at = 0;
      r.fresh = true;
    } else {
      r.members.insert(r.members.begin() + static_cast<std::ptrdiff_t>(r.at), e.session);
      ++r.at;  // the session whose turn it is keeps it
    }
    q.in_ring[k] = true;
    q.credit[k] = 0;
  }
}

void ReadySet::leave_ring_if_idle(Class k, uint32_t session) {
  Queues& q = sessions_[session];
  bool idle = k == kSubClass ? q.sub.empty() : !q.chip_work();
  if (!idle || !q.in_ring[k]) return;
  Ring& r = rings_[k];
  auto it = std::find(r.members.begin(), r.members.end(), session);
  size_t i = static_cast<size_t>(it - r.members.begin());
  r.members.erase(it);
  if (i < r.at) {
    --r.at;
  } else if (i == r.at) {
    r.fresh = true;  // the turn passes to the next session
    if (r.at >= r.members.size()) r.at = 0;
  }
  q.in_ring[k] = false;
  q.credit[k] = 0;  // an idle session banks nothing
}

bool ReadySet::serve(Class k, const std::function<std::deque<ReadyEntry>*(Queues&)>& pick, ReadyEntry* out) {
  Ring& r = rings_[k];
  if (r.members.empty()) return false;
  // A pass that finds nothing this worker can run must leave the turn where
  // it was: the scheduler asks for a group before every chip, and a failed
  // group pass that moved the turn on would hand the same session a fresh
  // credit every time (with two sessions, a full round lands back on it).
  const size_t start_at = r.at;
  const bool start_fresh = r.fresh;
  // Enough turns for the most expensive task (a group of every chip) to be
  // paid for by a session of weight 1, then give up: nobody can run here.
  size_t limit = r.members.size() * (static_cast<size_t>(chips_) + 2);
  for (size_t turn = 0; turn < limit; ++turn) {
    uint32_t sid = r.members[r.at];
    Queues& q = sessions_[sid];
    std::deque<ReadyEntry>* src = pick(q);
    if (src != nullptr) {
      if (r.fresh) {
        q.credit[k] += q.weight;
        r.fresh = false;
      }
      uint32_t cost = src->front().cost;
      if (q.credit[k] >= static_cast<int64_t>(cost)) {
        *out = src->front();
        src->pop_front();
        q.credit[k] -= cost;
        count(*out, -1);
        leave_ring_if_idle(k, sid);
        return true;
      }
    } else if (turn >= r.members.size() && std::none_of(r.members.begin(), r.members.end(), [&](uint32_t s) {
                 return pick(sessions_[s]) != nullptr;
               })) {
      // A whole round found nothing this worker can run (and so credited
      // nobody): as if it had not been asked.
      r.at = start_at;
      r.fresh = start_fresh;
      return false;
    }
    r.at = (r.at + 1) % r.members.size();
    r.fresh = true;
  }
  return false;
}

bool ReadySet::pop_sub(ReadyEntry* out) {
  return serve(kSubClass, [](Queues& q) { return q.sub.empty() ? nullptr : &q.sub; }, out);
}

bool ReadySet::pop_chip(uint32_t c, ReadyEntry* out) {
  return serve(kChipClass, [c](Queues& q) -> std::deque<ReadyEntry>* {
    std::deque<ReadyEntry>* d = q.directed[c].empty() ? nullptr : &q.directed[c];
    std::deque<ReadyEntry>* a = q.any_chip.empty() ? nullptr : &q.any_chip;
    if (d == nullptr) return a;
    if (a == nullptr) return d;
    return d->front().id < a->front().id ? d : a;  // the older one
  }, out);
}

bool ReadySet::pop_group(ReadyEntry* out) {
  return serve(kChipClass, [](Queues& q) { return q.groups.empty() ? nullptr : &q.groups; }, out);
}

void ReadySet::remove_if(const std::function<bool(const ReadyEntry&)>& drop) {
  for (uint32_t sid = 0; sid < sessions_.size(); ++sid) {
    Queues& q = sessions_[sid];
    if (q.size == 0) continue;
    auto sweep = [&](std::deque<ReadyEntry>& d) {
      std::deque<ReadyEntry> keep;
      for (const ReadyEntry& e : d) {
        if (drop(e))
          count(e, -1);
        else
          keep.push_back(e);
      }
      d.swap(keep);
    };
    sweep(q.sub);
    sweep(q.any_chip);
    sweep(q.groups);
    for (auto& d : q.directed) sweep(d);
    leave_ring_if_idle(kSubClass, sid);
    leave_ring_if_idle(kChipClass, sid);
  }
}

void ReadySet::for_each(const std::function<void(const ReadyEntry&)>& f) const {
  for (const Queues& q : sessions_) {
    for (auto& e : q.sub) f(e);
    for (auto& e : q.any_chip) f(e);
    for (auto& e : q.groups) f(e);
    for (auto& d : q.directed)
      for (auto& e : d) f(e);
  }
}

uint64_t ReadySet::depth(uint32_t session) const {
  return session < sessions_.size() ? sessions_[session].size : 0;
}

bool ReadySet::has_directed(uint32_t c) const { return c < directed_queued_.size() && directed_queued_[c] != 0; }

}  // namespace tierflow
