#include "runtime/json_reply.h"

#include <fstream>

#include "core/error.h"

namespace sluice {
namespace {

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

}  // namespace

std::optional<nlohmann::json> parse_json_reply(const std::string& reply) {
    std::string s = trim(reply);
    if (s.rfind("```", 0) == 0) {
        const size_t nl = s.find('\n');
        if (nl == std::string::npos || s.size() < nl + 4 || s.compare(s.size() - 3, 3, "```") != 0)
            return std::nullopt;
        const std::string lang = trim(s.substr(3, nl - 3));
        if (!lang.empty() && lang != "json") return std::nullopt;
        s = trim(s.substr(nl + 1, s.size() - 3 - (nl + 1)));
    }
    if (s.empty()) return std::nullopt;
    nlohmann::json j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return std::nullopt;
    return j;
}

std::vector<JsonPrompt> read_json_prompts(const std::string& path) {
    std::ifstream f(path);
    check(f.good(), path + ": cannot open");
    std::vector<JsonPrompt> out;
    std::string line;
    for (int n = 1; std::getline(f, line); ++n) {
        if (trim(line).empty()) continue;
        const std::string where = path + ":" + std::to_string(n);
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        check(j.is_object() && j.contains("prompt") && j["prompt"].is_string(),
              where + ": expected {\"prompt\": \"...\", \"keys\": [...]}");
        JsonPrompt p;
        p.prompt = j["prompt"].get<std::string>();
        if (j.contains("keys")) {
            check(j["keys"].is_array(), where + ": \"keys\" must be an array of strings");
            for (const auto& k : j["keys"]) {
                check(k.is_string(), where + ": \"keys\" must be an array of strings");
                p.keys.push_back(k.get<std::string>());
            }
        }
        out.push_back(std::move(p));
    }
    check(!out.empty(), path + ": no prompts");
    return out;
}

}  // namespace sluice
