#pragma once
// Chat prompt formatting for the model families sluice supports. Templates are recognised,
// not interpreted: Debian packages no Jinja engine for C++, and the real templates of these
// families reduce to a handful of fixed layouts.
#include <optional>
#include <string>
#include <vector>

namespace sluice {

struct ChatMessage {
    std::string role;  // system | user | assistant
    std::string content;
};

enum class ChatStyle { ChatML, Qwen3, DeepSeekV3, Mixtral };

const char* chat_style_name(ChatStyle s);
// The family a template text belongs to, or nullopt if it is not one we know.
std::optional<ChatStyle> detect_chat_style(const std::string& template_text);

struct ChatRenderOptions {
    bool add_generation_prompt = true;
    bool enable_thinking = true;  // Qwen3: false inserts an empty <think></think> block
};

// The prompt text (special tokens spelled out; encode with parse_special).
std::string render_chat(ChatStyle style, const std::vector<ChatMessage>& messages,
                        const ChatRenderOptions& o = {});

}  // namespace sluice
