//! Constrained decoding for `response_format` (`json_object`, `json_schema`): llguidance
//! (what vLLM and llama.cpp's server use) turns the schema into a grammar and masks every
//! next token to those that keep the reply valid. Built once per server from the model's
//! tokenizer; one matcher per generated row.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use polyepo_engine::model::TextTokenizer;
use polyepo_engine::sample::TokenConstraint;
use serde_json::Value;
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

/// The vocabulary as bytes and the grammar compiler over it.
pub struct Grammars {
    factory: ParserFactory,
    /// Every token's bytes (special tokens carry llguidance's 0xFF marker in front).
    token_bytes: Vec<Vec<u8>>,
    stop_ids: Vec<u32>,
}

impl Grammars {
    /// Reads the vocabulary of `tokenizer`.
    pub fn new(tokenizer: &TextTokenizer) -> Result<Self, String> {
        let json: Value = serde_json::from_str(&tokenizer.to_json().map_err(|e| e.to_string())?)
            .map_err(|e| format!("the tokenizer's JSON: {e}"))?;
        let token_bytes = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| format!("the tokenizer's vocabulary: {e}"))?;
        let eos = tokenizer
            .eos_id
            .or_else(|| tokenizer.stop_ids.first().copied())
            .ok_or("the tokenizer has no end-of-sequence token")?;
        let info = TokRxInfo::new(token_bytes.len() as u32, eos);
        let trie = TokTrie::from(&info, &token_bytes);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self {
            factory,
            token_bytes,
            stop_ids: tokenizer.stop_ids.clone(),
        })
    }

    /// The matcher a request's `response_format` asks for: none for `text` (or no field),
    /// else one for the schema. The error says what is wrong with the field.
    pub fn matcher(&self, format: Option<&Value>) -> Result<Option<Matcher>, String> {
        let Some(format) = format.filter(|f| !f.is_null()) else {
            return Ok(None);
        };
        let schema = match format["type"].as_str() {
            Some("text") => return Ok(None),
            Some("json_object") => serde_json::json!({ "type": "object" }),
            Some("json_schema") => {
                let spec = &format["json_schema"];
                match spec.get("schema") {
                    Some(s) if s.is_object() || s.is_boolean() => s.clone(),
                    // OpenAI allows a schema-less json_schema: any JSON.
                    None => serde_json::json!({}),
                    Some(other) => {
                        return Err(format!(
                            "`json_schema.schema` must be a JSON Schema object, got {other}"
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "unknown type {other:?}; use \"text\", \"json_object\" or \"json_schema\""
                ));
            }
            None => {
                return Err("needs a `type` (\"text\", \"json_object\" or \"json_schema\")".into());
            }
        };
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_json_schema(schema))
            .map_err(|e| format!("the schema cannot be compiled: {e}"))?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(format!("the schema cannot be compiled: {e}")),
            None => Ok(Some(matcher)),
        }
    }

    /// A row's constraint from a request's matcher.
    pub fn constraint(&self, matcher: &Matcher) -> Box<dyn TokenConstraint> {
        Box::new(GrammarConstraint {
            matcher: matcher.deep_clone(),
            stop_ids: self.stop_ids.clone(),
            vocab: self.token_bytes.len(),
        })
    }

    /// Whether `token` ends a turn for this model.
    pub fn is_stop(&self, token: u32) -> bool {
        self.stop_ids.contains(&token)
    }

    /// A token's bytes as the model wrote them (special tokens without the marker).
    pub fn token_bytes(&self, token: u32) -> &[u8] {
        match self.token_bytes.get(token as usize) {
            Some(b) if b.first() == Some(&TokTrie::SPECIAL_TOKEN_MARKER) => &b[1..],
            Some(b) => b,
            None => &[],
        }
    }
}

/// One row's grammar.
struct GrammarConstraint {
    matcher: Matcher,
    stop_ids: Vec<u32>,
    vocab: usize,
}

impl TokenConstraint for GrammarConstraint {
    fn allowed(&mut self, allowed: &mut [bool]) -> Result<(), String> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        let eos = !mask.is_empty() && self.matcher.is_accepting().unwrap_or(false);
        for (t, slot) in allowed.iter_mut().enumerate().take(self.vocab) {
            *slot = mask.is_allowed(t as u32);
        }
        // The grammar's end-of-sequence is every token that ends a turn for this model.
        if eos || self.matcher.is_stopped() {
            for &s in &self.stop_ids {
                if let Some(slot) = allowed.get_mut(s as usize) {
                    *slot = true;
                }
            }
        }
        Ok(())
    }

    fn consume(&mut self, token: u32) -> Result<(), String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }
}
