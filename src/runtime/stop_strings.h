#pragma once
// Stop strings over streamed text: a stop string may span token boundaries, and no part of
// it may reach the client. The matcher holds back the tail that could still begin a stop.
#include <string>
#include <vector>

namespace sluice {

class StopMatcher {
  public:
    explicit StopMatcher(std::vector<std::string> stops);
    // Feeds generated text; returns what can be emitted now. After a stop string is seen,
    // stopped() is true and the text before it has been emitted.
    std::string push(const std::string& piece);
    std::string flush();  // end of generation: release what was held back
    bool stopped() const { return stopped_; }

  private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
};

}  // namespace sluice
