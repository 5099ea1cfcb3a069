// The usual helper to std::visit a variant with one lambda per alternative.
#pragma once

namespace mqds {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace mqds
