//! Text ↔ tokens: a Hugging Face `tokenizers` tokenizer, from `tokenizer.json` or rebuilt from
//! GGUF metadata, plus the special tokens generation needs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::error::{ModelError, ModelResult};

/// A tokenizer with the ids of its special tokens and its chat template.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Ids that end a generation (EOS, `<|im_end|>`, `<|eot_id|>`, ...).
    pub stop_ids: Vec<u32>,
    /// The end-of-sequence id the model declares (exported as its `eos_token`), when it
    /// declares one; otherwise the first of `stop_ids` stands in.
    pub eos_id: Option<u32>,
    /// Id used to pad batches (never attended to).
    pub pad_id: u32,
    /// BOS id, prepended when the model expects it.
    pub bos_id: Option<u32>,
    /// The model's Jinja chat template, when it ships one.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("stop_ids", &self.stop_ids)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// End-of-turn tokens of the common chat formats, recognised by name.
const STOP_TOKENS: [&str; 5] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "</s>",
];

impl TextTokenizer {
    fn from_parts(
        inner: Tokenizer,
        eos: Option<u32>,
        pad: Option<u32>,
        bos: Option<u32>,
        chat_template: Option<String>,
    ) -> Self {
        let mut stop_ids: Vec<u32> = STOP_TOKENS
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .collect();
        if let Some(e) = eos {
            stop_ids.push(e);
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let pad_id = pad
            .or(eos)
            .or_else(|| stop_ids.first().copied())
            .unwrap_or(0);
        Self {
            inner,
            stop_ids,
            eos_id: eos,
            pad_id,
            bos_id: bos,
            chat_template,
        }
    }

    /// Reads `tokenizer.json` (and, when present beside it, `tokenizer_config.json` for the
    /// chat template and special tokens).
    pub fn from_file(path: &Path) -> ModelResult<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::format(path.display(), e.to_string()))?;
        let config_path = path.with_file_name("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ModelError::format(config_path.display(), e.to_string()))?,
            Err(_) => serde_json::Value::Null,
        };
        let token_id = |key: &str| {
            let v = config.get(key)?;
            let text = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            inner.token_to_id(text)
        };
        let eos = token_id("eos_token");
        let pad = token_id("pad_token");
        let bos = if config
            .get("add_bos_token")
            .and_then(|b| b.as_bool())
            .unwrap_or(false)
        {
            token_id("bos_token")
        } else {
            None
        };
        let template = config
            .get("chat_template")
            .and_then(|t| t.as_str())
            .map(String::from);
        Ok(Self::from_parts(inner, eos, pad, bos, template))
    }

    /// Rebuilds the byte-level BPE tokenizer stored in GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &gguf_file::Content, origin: &str) -> ModelResult<Self> {
        let md = &content.metadata;
        let get = |key: &str| {
            md.get(key)
                .ok_or_else(|| ModelError::format(origin, format!("GGUF metadata lacks `{key}`")))
        };
        let bad = |key: &str, e: candle_core::Error| {
            ModelError::format(origin, format!("GGUF metadata `{key}`: {e}"))
        };
        let kind = get("tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| bad("tokenizer.ggml.model", e))?;
        if kind != "gpt2" {
            return Err(ModelError::Unsupported {
                origin: origin.into(),
                message: format!(
                    "tokenizer model `{kind}` in GGUF is not supported (only byte-level BPE, `gpt2`); pass a tokenizer.json instead"
                ),
            });
        }
        let tokens = get("tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(|e| bad("tokenizer.ggml.tokens", e))?;
        let mut vocab = HashMap::with_capacity(tokens.len());
        let mut names = Vec::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            let t = t.to_string().map_err(|e| bad("tokenizer.ggml.tokens", e))?;
            vocab.insert(t.clone(), id as u32);
            names.push(t.clone());
        }
        let merges = get("tokenizer.ggml.merges")?
            .to_vec()
            .map_err(|e| bad("tokenizer.ggml.merges", e))?
            .iter()
            .map(|m| {
                let m = m.to_string().map_err(|e| bad("tokenizer.ggml.merges", e))?;
                let (a, b) = m.split_once(' ').ok_or_else(|| {
                    ModelError::format(origin, format!("merge `{m}` is not two tokens"))
                })?;
                Ok((a.to_owned(), b.to_owned()))
            })
            .collect::<ModelResult<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(|e| ModelError::format(origin, format!("GGUF tokenizer: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        // llama.cpp's `smollm`/`starcoder`-style pre-tokenizers split digits one by one
        // before the GPT-2 byte-level split; plain `gpt2` does not.
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|p| p.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let byte_level = ByteLevel::new(false, true, true);
        if matches!(
            pre.as_str(),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell"
        ) {
            inner.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        } else {
            inner.with_pre_tokenizer(Some(byte_level));
        }
        inner.with_decoder(Some(ByteLevel::default()));
        // Control (3) and user-defined (4) tokens are matched whole, never split.
        if let Some(types) = md
            .get("tokenizer.ggml.token_type")
            .and_then(|t| t.to_vec().ok())
        {
            let special: Vec<AddedToken> = types
                .iter()
                .zip(&names)
                .filter(|(ty, _)| matches!(ty.to_i32(), Ok(3) | Ok(4)))
                .map(|(_, n)| AddedToken::from(n.clone(), true))
                .collect();
            inner
                .add_special_tokens(special)
                .map_err(|e| ModelError::format(origin, format!("special tokens: {e}")))?;
        }
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let template = md
            .get("tokenizer.chat_template")
            .and_then(|t| t.to_string().ok())
            .cloned();
        Ok(Self::from_parts(
            inner,
            id("tokenizer.ggml.eos_token_id"),
            id("tokenizer.ggml.padding_token_id"),
            if add_bos {
                id("tokenizer.ggml.bos_token_id")
            } else {
                None
            },
            template,
        ))
    }

    /// A character-level tokenizer over `alphabet` (plus `<pad>` = 0, `<eos>` = 1,
    /// `<unk>` = 2): the vocabulary of the built-in synthetic tasks' small models.
    pub fn char_level(alphabet: &str) -> ModelResult<Self> {
        let mut vocab: Vec<String> = ["<pad>", "<eos>", "<unk>"].map(String::from).to_vec();
        for c in alphabet.chars() {
            if !vocab.contains(&c.to_string()) {
                vocab.push(c.to_string());
            }
        }
        let map: tokenizers::models::bpe::Vocab = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        // A BPE without merges never joins characters: one token per character.
        let bpe = BPE::builder()
            .vocab_and_merges(map, Vec::new())
            .unk_token("<unk>".into())
            .build()
            .map_err(|e| ModelError::format("char tokenizer", e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_decoder(Some(tokenizers::decoders::fuse::Fuse::new()));
        inner
            .add_special_tokens(["<pad>", "<eos>", "<unk>"].map(|t| AddedToken::from(t, true)))
            .map_err(|e| ModelError::format("char tokenizer", e.to_string()))?;
        Ok(Self::from_parts(inner, Some(1), Some(0), None, None))
    }

    /// Token ids of `text`; special-token strings in it become their ids. BOS is prepended
    /// when the model expects one.
    pub fn encode(&self, text: &str) -> ModelResult<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::format("tokenizer", e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.bos_id);
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> ModelResult<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::format("tokenizer", e.to_string()))
    }

    /// Id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokenizer as `tokenizer.json` text (what grammar engines read the vocabulary from).
    pub fn to_json(&self) -> ModelResult<String> {
        self.inner
            .to_string(false)
            .map_err(|e| ModelError::format("tokenizer", e.to_string()))
    }

    /// Writes `tokenizer.json` (for export next to HF-format weights).
    pub fn save(&self, path: &Path) -> ModelResult<()> {
        self.inner
            .save(path, false)
            .map_err(|e| ModelError::format(path.display(), e.to_string()))
    }
}
