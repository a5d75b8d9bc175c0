#pragma once
// Errors for bad input: always a message naming the file/field, never a crash.
#include <stdexcept>
#include <string>

namespace sluice {

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string& msg) {
    throw Error(msg);
}

// A message built by concatenation is built whether or not the check fails: on hot paths
// write `if (!ok) fail(...)` instead. Literals take the overload that allocates nothing.
inline void check(bool ok, const std::string& msg) {
    if (!ok) fail(msg);
}
inline void check(bool ok, const char* msg) {
    if (!ok) fail(msg);
}

}  // namespace sluice
