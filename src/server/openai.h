#pragma once
// OpenAI API request parsing and response bodies (chat.completions, completions).
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/generate.h"
#include "tokenizer/chat_template.h"

namespace sluice {

// A request the client got wrong: HTTP 400 with an OpenAI-style error object.
struct RequestError : std::runtime_error {
    RequestError(const std::string& msg, std::string p = "")
        : std::runtime_error(msg), param(std::move(p)) {}
    std::string param;
};

struct ApiLimits {
    int max_tokens = 4096;  // upper bound on max_tokens
    int default_max_tokens = 256;
};

struct ApiRequest {
    bool chat = true;
    bool stream = false;
    bool include_usage = false;
    std::vector<ChatMessage> messages;  // chat
    std::string prompt;                 // completions
    bool enable_thinking = true;
    GenerateParams gen;
};

// Throws RequestError for malformed JSON, wrong types, or values out of range.
ApiRequest parse_api_request(const std::string& body, bool chat, const ApiLimits& lim);

nlohmann::json error_body(const std::string& message, const std::string& type,
                          const std::string& param);
std::string finish_reason(const GenerateResult& r);  // "stop" or "length"

}  // namespace sluice
