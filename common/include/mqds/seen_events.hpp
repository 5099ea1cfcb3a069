// A bounded memory of EventIds already processed, so a duplicated event is processed once. The
// oldest id is forgotten first; the bound is far above what can be in flight at once.
#pragma once

#include <cstddef>
#include <deque>
#include <unordered_set>

#include "mqds/uuid.hpp"

namespace mqds {

class SeenEvents {
 public:
  explicit SeenEvents(std::size_t capacity) : capacity_(capacity) {}

  // True the first time an id is seen.
  bool first_time(const Uuid& id) {
    if (!set_.insert(id).second) return false;
    order_.push_back(id);
    if (order_.size() > capacity_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }

 private:
  std::size_t capacity_;
  std::unordered_set<Uuid> set_;
  std::deque<Uuid> order_;
};

}  // namespace mqds
