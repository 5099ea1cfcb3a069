#include "report.hpp"

#include <algorithm>

namespace mqds::bench {

bool Report::print(std::FILE* out) const {
  std::size_t what_width = 4;
  for (const auto& f : figures_) what_width = std::max(what_width, f.what.size());
  std::fprintf(out, "\n| %-12s | %-*s | %14s | %-7s |\n", "section", static_cast<int>(what_width),
               "figure", "value", "unit");
  std::fprintf(out, "| %s | %s | %s | %s |\n", std::string(12, '-').c_str(),
               std::string(what_width, '-').c_str(), std::string(14, '-').c_str(),
               std::string(7, '-').c_str());
  for (const auto& f : figures_)
    std::fprintf(out, "| %-12s | %-*s | %14.2f | %-7s |\n", f.section.c_str(),
                 static_cast<int>(what_width), f.what.c_str(), f.value, f.unit.c_str());
  std::fprintf(out, "\n");
  for (const auto& t : targets_)
    std::fprintf(out, "%s: ratio %.3f (target %s%.2f)%s\n", t.name.c_str(), t.ratio,
                 t.at_most ? "<= " : "", t.target, t.met() ? "" : " MISSED");
  for (const auto& why : failures_) std::fprintf(out, "FAILED %s\n", why.c_str());
  return failures_.empty();
}

}  // namespace mqds::bench
