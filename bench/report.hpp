// What a benchmark run found: a table of figures, then one line per target.
//
// Every figure of ours is measured next to a baseline taken in the same run on the same machine,
// and the target is on their ratio: absolute figures vary from machine to machine and run to run,
// the ratio much less.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace mqds::bench {

struct Figure {
  std::string section;  // "distribution", "retrieval", ...
  std::string what;     // what was measured, and how
  double value = 0;
  std::string unit;  // "MB/s" (10^6 bytes), "s", "bytes", ...
};

struct Target {
  std::string name;
  double ratio = 0;
  double target = 0;
  bool at_most = false;  // the ratio must stay at or below the target (a cost), not reach it
  bool met() const { return at_most ? ratio <= target : ratio >= target; }
};

class Report {
 public:
  void add(std::string section, std::string what, double value, std::string unit) {
    figures_.push_back({std::move(section), std::move(what), value, std::move(unit)});
    std::fprintf(stderr, "  %-14s %-62s %12.2f %s\n", figures_.back().section.c_str(),
                 figures_.back().what.c_str(), value, figures_.back().unit.c_str());
  }
  void target(std::string name, double ratio, double target, bool at_most = false) {
    targets_.push_back({std::move(name), ratio, target, at_most});
  }
  // A section that could not run: named in the table, and its targets count as missed.
  void failed(std::string section, std::string why) {
    failures_.push_back(section + ": " + why);
    std::fprintf(stderr, "  %s FAILED: %s\n", section.c_str(), why.c_str());
  }

  // The table, then `NAME: ratio X (target Y)` per target. True when every section ran.
  bool print(std::FILE* out) const;

 private:
  std::vector<Figure> figures_;
  std::vector<Target> targets_;
  std::vector<std::string> failures_;
};

}  // namespace mqds::bench
