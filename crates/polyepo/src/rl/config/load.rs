//! Reading a configuration: the file (or the built-in default), `--set` overrides, then
//! deserialisation into typed sections and validation.

use std::path::Path;

use super::{ConfigError, TrainConfig, err};

/// Largest configuration file read: far above any real one, and a bound on what a wrong
/// path (a device, a huge file) can cost.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The text of a configuration file, refusing files over [`MAX_CONFIG_BYTES`].
fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "is larger than {} KiB: not a polyepo configuration (see `polyepo config`)",
            MAX_CONFIG_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("is not UTF-8 text ({e})"))
}

/// Parses a `--set` value: TOML syntax when it parses (numbers, booleans, arrays, quoted
/// strings), a bare string otherwise.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

impl TrainConfig {
    /// Loads `file` (or the default), applies `overrides` (`key.path=value`), validates.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let (doc, origin) = match file {
            Some(path) => {
                let text = read_config_file(path)
                    .map_err(|e| err(&path.display().to_string(), "(file)", e))?;
                let doc: toml::Table = toml::from_str(&text)
                    .map_err(|e| err(&path.display().to_string(), "(syntax)", e.to_string()))?;
                (doc, path.display().to_string())
            }
            None => (
                toml::Table::try_from(TrainConfig::default())
                    .map_err(|e| err("default", "(all)", e.to_string()))?,
                "built-in default".into(),
            ),
        };
        Self::from_doc(doc, origin, overrides)
    }

    /// This config with `overrides` applied (validated), e.g. a study's evaluation split.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        let doc = toml::Table::try_from(self).map_err(|e| err("config", "(all)", e.to_string()))?;
        Self::from_doc(doc, "the row's config".into(), overrides)
    }

    fn from_doc(
        mut doc: toml::Table,
        origin: String,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        for o in overrides {
            let (key, raw) = o.split_once('=').ok_or_else(|| {
                err(
                    "--set",
                    o,
                    "expected key.path=value, e.g. loss.clip_high=0.28",
                )
            })?;
            let key = key.trim();
            let mut table = &mut doc;
            let parts: Vec<&str> = key.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                table = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| {
                        err("--set", key, format!("`{part}` is a value, not a section"))
                    })?;
            }
            table.insert(parts[parts.len() - 1].to_string(), parse_value(raw.trim()));
        }
        let origin = if overrides.is_empty() {
            origin
        } else {
            format!("{origin} with --set")
        };
        let cfg: TrainConfig =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.into_inner().to_string();
                err(
                    &origin,
                    &key,
                    format!("{message} (see `polyepo config` for every key and its default)"),
                )
            })?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }
}
