#include "server/openai.h"

namespace sluice {

using json = nlohmann::json;

namespace {

template <typename T>
T get_num(const json& j, const char* key, T def, T lo, T hi) {
    if (!j.contains(key) || j[key].is_null()) return def;
    if (!j[key].is_number()) throw RequestError(std::string("'") + key + "' must be a number", key);
    const double v = j[key].get<double>();
    if (!(v >= (double)lo && v <= (double)hi))
        throw RequestError(std::string("'") + key + "' must be between " + std::to_string(lo) +
                               " and " + std::to_string(hi),
                           key);
    return (T)v;
}

std::string content_text(const json& c, size_t i) {
    if (c.is_string()) return c.get<std::string>();
    if (c.is_array()) {  // [{"type":"text","text":"..."}]
        std::string s;
        for (const auto& part : c) {
            if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
                !part["text"].is_string())
                throw RequestError(
                    "messages[" + std::to_string(i) + "].content: only text parts are supported",
                    "messages");
            s += part["text"].get<std::string>();
        }
        return s;
    }
    if (c.is_null()) return "";
    throw RequestError("messages[" + std::to_string(i) + "].content must be a string", "messages");
}

}  // namespace

ApiRequest parse_api_request(const std::string& body, bool chat, const ApiLimits& lim) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        throw RequestError(std::string("invalid JSON body: ") + e.what());
    }
    if (!j.is_object()) throw RequestError("request body must be a JSON object");
    ApiRequest r;
    r.chat = chat;
    if (chat) {
        if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
            throw RequestError("'messages' must be a non-empty array", "messages");
        size_t i = 0;
        for (const auto& m : j["messages"]) {
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                throw RequestError("messages[" + std::to_string(i) + "] needs a string 'role'",
                                   "messages");
            const std::string role = m["role"].get<std::string>();
            if (role != "system" && role != "user" && role != "assistant" && role != "developer")
                throw RequestError(
                    "messages[" + std::to_string(i) + "].role '" + role + "' is not supported",
                    "messages");
            r.messages.push_back({role == "developer" ? "system" : role,
                                  content_text(m.value("content", json()), i)});
            ++i;
        }
        if (j.contains("chat_template_kwargs") && j["chat_template_kwargs"].is_object())
            r.enable_thinking = j["chat_template_kwargs"].value("enable_thinking", true);
    } else {
        if (!j.contains("prompt")) throw RequestError("'prompt' is required", "prompt");
        const json& p = j["prompt"];
        if (p.is_string())
            r.prompt = p.get<std::string>();
        else if (p.is_array() && p.size() == 1 && p[0].is_string())
            r.prompt = p[0].get<std::string>();
        else
            throw RequestError("'prompt' must be a string", "prompt");
    }
    if (j.contains("stream") && !j["stream"].is_null()) {
        if (!j["stream"].is_boolean()) throw RequestError("'stream' must be a boolean", "stream");
        r.stream = j["stream"].get<bool>();
    }
    if (j.contains("stream_options") && j["stream_options"].is_object())
        r.include_usage = j["stream_options"].value("include_usage", false);
    const int n = get_num<int>(j, "n", 1, 1, 1 << 20);
    if (n != 1) throw RequestError("only n=1 is supported", "n");
    const char* mt_key =
        j.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    r.gen.n_predict = get_num<int>(j, mt_key, lim.default_max_tokens, 1, lim.max_tokens);
    r.gen.sampling.temp = get_num<float>(j, "temperature", 1.0f, 0.0f, 2.0f);
    r.gen.sampling.top_p = get_num<float>(j, "top_p", 1.0f, 0.0f, 1.0f);
    r.gen.sampling.top_k = 0;
    r.gen.sampling.min_p = 0.0f;
    r.gen.sampling.repeat_penalty = 1.0f;
    if (j.contains("seed") && !j["seed"].is_null()) {
        if (!j["seed"].is_number_integer()) throw RequestError("'seed' must be an integer", "seed");
        r.gen.sampling.seed = (uint64_t)j["seed"].get<int64_t>();
    } else {
        r.gen.sampling.seed = std::random_device{}();
    }
    if (j.contains("stop") && !j["stop"].is_null()) {
        const json& s = j["stop"];
        if (s.is_string())
            r.gen.stop.push_back(s.get<std::string>());
        else if (s.is_array() && s.size() <= 4) {
            for (const auto& x : s) {
                if (!x.is_string()) throw RequestError("'stop' entries must be strings", "stop");
                r.gen.stop.push_back(x.get<std::string>());
            }
        } else {
            throw RequestError("'stop' must be a string or an array of up to 4 strings", "stop");
        }
    }
    return r;
}

json error_body(const std::string& message, const std::string& type, const std::string& param) {
    return {{"error",
             {{"message", message},
              {"type", type},
              {"param", param.empty() ? json() : json(param)},
              {"code", json()}}}};
}

std::string finish_reason(const GenerateResult& r) {
    return r.stop_reason == "length" || r.stop_reason == "context" ? "length" : "stop";
}

}  // namespace sluice
