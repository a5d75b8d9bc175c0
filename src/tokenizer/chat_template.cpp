#include "tokenizer/chat_template.h"

#include "core/error.h"

namespace sluice {

const char* chat_style_name(ChatStyle s) {
    switch (s) {
        case ChatStyle::ChatML:
            return "chatml";
        case ChatStyle::Qwen3:
            return "qwen3";
        case ChatStyle::DeepSeekV3:
            return "deepseek-v3";
        case ChatStyle::Mixtral:
            return "mixtral";
    }
    return "?";
}

std::optional<ChatStyle> detect_chat_style(const std::string& t) {
    auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
    if (has("<\xef\xbd\x9c"
            "Assistant\xef\xbd\x9c>") ||
        has("<\xef\xbd\x9cUser\xef\xbd\x9c>"))
        return ChatStyle::DeepSeekV3;
    if (has("<|im_start|>"))
        return has("enable_thinking") || has("<think>") ? ChatStyle::Qwen3 : ChatStyle::ChatML;
    if (has("[INST]") && has("[/INST]")) return ChatStyle::Mixtral;
    return std::nullopt;
}

namespace {

void check_role(const ChatMessage& m) {
    check(m.role == "system" || m.role == "user" || m.role == "assistant",
          "chat message role '" + m.role + "' is not one of system, user, assistant");
}

// Qwen3 keeps only the final answer of earlier assistant turns in the history.
std::string strip_think(const std::string& s) {
    const size_t e = s.find("</think>");
    if (e == std::string::npos) return s;
    size_t b = e + 8;
    while (b < s.size() && s[b] == '\n') ++b;
    return s.substr(b);
}

}  // namespace

std::string render_chat(ChatStyle style, const std::vector<ChatMessage>& msgs,
                        const ChatRenderOptions& o) {
    std::string out;
    for (const auto& m : msgs) check_role(m);
    switch (style) {
        case ChatStyle::ChatML:
        case ChatStyle::Qwen3:
            for (const auto& m : msgs) {
                const std::string content = style == ChatStyle::Qwen3 && m.role == "assistant"
                                                ? strip_think(m.content)
                                                : m.content;
                out += "<|im_start|>" + m.role + "\n" + content + "<|im_end|>\n";
            }
            if (o.add_generation_prompt) {
                out += "<|im_start|>assistant\n";
                if (style == ChatStyle::Qwen3 && !o.enable_thinking)
                    out += "<think>\n\n</think>\n\n";
            }
            break;
        case ChatStyle::DeepSeekV3: {
            const std::string user = "<\xef\xbd\x9cUser\xef\xbd\x9c>", asst =
                                                                           "<\xef\xbd\x9c"
                                                                           "Assistant\xef\xbd\x9c>";
            const std::string bos =
                "<\xef\xbd\x9c"
                "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
            const std::string eos =
                "<\xef\xbd\x9c"
                "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
            out += bos;
            for (const auto& m : msgs)
                if (m.role == "system") out += m.content;
            for (const auto& m : msgs) {
                if (m.role == "user")
                    out += user + m.content;
                else if (m.role == "assistant")
                    out += asst + m.content + eos;
            }
            if (o.add_generation_prompt) out += asst;
            break;
        }
        case ChatStyle::Mixtral: {
            std::string system;
            for (const auto& m : msgs)
                if (m.role == "system") system += m.content + "\n\n";
            out += "<s>";
            bool first_user = true;
            for (const auto& m : msgs) {
                if (m.role == "user") {
                    out +=
                        "[INST] " + (first_user ? system : std::string()) + m.content + " [/INST]";
                    first_user = false;
                } else if (m.role == "assistant") {
                    out += m.content + "</s>";
                }
            }
            break;
        }
    }
    return out;
}

}  // namespace sluice
