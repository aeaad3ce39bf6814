//! Chat prompts: the model's own Jinja chat template where it ships one, ChatML otherwise.

use serde::Serialize;

use super::error::{ModelError, ModelResult};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
}

/// ChatML, the format of SmolLM2 and Qwen: `<|im_start|>role\ncontent<|im_end|>\n`.
pub fn chatml(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// Renders `messages` with an HF Jinja chat template, ready for the assistant's reply.
pub fn render_template(template: &str, messages: &[Message]) -> ModelResult<String> {
    let mut env = minijinja::Environment::new();
    // HF templates call Python string methods (.strip(), .startswith(), ...).
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    let bad = |e: minijinja::Error| ModelError::format("chat template", e.to_string());
    env.add_template("chat", template).map_err(bad)?;
    let ctx = minijinja::context! { messages => messages, add_generation_prompt => true, bos_token => "", eos_token => "" };
    env.get_template("chat")
        .map_err(bad)?
        .render(ctx)
        .map_err(bad)
}

/// The prompt text for `messages`: the template when given, ChatML otherwise.
pub fn chat_prompt(template: Option<&str>, messages: &[Message]) -> ModelResult<String> {
    match template {
        Some(t) => render_template(t, messages),
        None => Ok(chatml(messages, true)),
    }
}

/// Token ids of a user turn: wrapped in the tokenizer's chat template when `chat` is set
/// (ChatML if the model ships none), the raw text otherwise.
pub fn encode_user_turn(
    tokenizer: &super::TextTokenizer,
    text: &str,
    chat: bool,
) -> ModelResult<Vec<u32>> {
    if chat {
        tokenizer.encode(&chat_prompt(
            tokenizer.chat_template.as_deref(),
            &[Message::user(text)],
        )?)
    } else {
        tokenizer.encode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jinja_chatml_template_matches_builtin() {
        let template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'].strip() + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let msgs = [Message::system("Be brief."), Message::user(" Hi ")];
        assert_eq!(
            render_template(template, &msgs).unwrap(),
            chatml(&[Message::system("Be brief."), Message::user("Hi")], true)
        );
    }

    #[test]
    fn template_errors_are_reported() {
        let err = render_template("{{ raise_exception('no system role') }}", &[]).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }
}
