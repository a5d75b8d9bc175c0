#pragma once
// Judging replies that were asked to be JSON (sluice eval json).
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice {

// The reply as JSON, or nullopt. Surrounding whitespace and one enclosing Markdown code fence
// (```json ... ```) are allowed, as chat models add them; any other text makes it invalid.
std::optional<nlohmann::json> parse_json_reply(const std::string& reply);

struct JsonPrompt {
    std::string prompt;
    std::vector<std::string> keys;  // an object with these keys is expected; empty: any JSON
};
// One JSON object per line: {"prompt": "...", "keys": ["a", "b"]}. Throws naming path:line.
std::vector<JsonPrompt> read_json_prompts(const std::string& path);

}  // namespace sluice
