//! What a study runs: arms (named sets of config overrides) × seeds from one base config,
//! the starting policy as a row of its own, and how to evaluate. Read from a checked-in TOML
//! file (`experiments/*.toml`) or built from `polyepo compare`'s flags.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::rl::config::{ConfigError, TrainConfig};

/// A list of seeds: `0-7`, `3,11,12` or a mix (`0-3,8`), or a TOML array of integers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seeds(pub Vec<u64>);

impl FromStr for Seeds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let mut seeds = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let number = |s: &str| {
                s.trim().parse::<u64>().map_err(|_| {
                    format!("`{s}` in `{text}` is not a seed: use e.g. 0-7 or 3,11,12")
                })
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    if b < a {
                        return Err(format!("the range `{part}` is empty: write low-high"));
                    }
                    seeds.extend(a..=b);
                }
                None => seeds.push(number(part)?),
            }
        }
        if seeds.is_empty() {
            return Err("no seeds: give at least one, e.g. 0-7 or 3,11,12".into());
        }
        let mut sorted = seeds.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("`{text}` names a seed twice"));
        }
        Ok(Self(seeds))
    }
}

impl<'de> Deserialize<'de> for Seeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<u64>),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Raw::List(l) => l
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
                .parse()
                .map_err(serde::de::Error::custom),
        }
    }
}

/// One arm: a name for the tables and the config overrides that make it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Row label (`GRPO + entropy 0.01`).
    pub name: String,
    /// `key=value` overrides applied after the study's own (`algorithm.name=grpo`).
    #[serde(default)]
    pub set: Vec<String>,
}

impl Arm {
    /// The arm's directory name: its name in lower case, runs of other characters as `-`.
    pub fn slug(&self) -> String {
        slug(&self.name)
    }
}

/// `name` in lower case, runs of other characters than letters, digits and `.` as `-`: a
/// name that is safe as a file name.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// How every policy of the study is evaluated on the held-out prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalPlan {
    /// Samples per held-out prompt (M): pass@k is estimated for every k ≤ M.
    pub samples: usize,
    /// Sampling temperatures; the first is the main one (tables, paired tests), the others
    /// make the pass@1 vs pass@k trade-off chart. Empty: the training temperature.
    pub temperatures: Vec<f64>,
    /// The k columns of the tables (those above M are dropped; M itself is always shown).
    pub ks: Vec<usize>,
    /// Evaluate the policy every this many training steps as well (0: only the final one).
    pub every: u64,
    /// Bootstrap resamples for the intervals.
    pub resamples: usize,
    /// Further held-out splits the final policies are evaluated on (at the main temperature),
    /// each with its own pass@k table and paired differences in the report.
    #[serde(rename = "split")]
    pub splits: Vec<EvalSplit>,
}

/// A further held-out split: task overrides applied to a row's config for evaluation only
/// (`task.reach.held_out=shifted`), so that a study can ask both "did it learn the task?"
/// and "does it transfer?" of the same trained policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSplit {
    /// Name for the report (`shifted`).
    pub name: String,
    /// `task.*` overrides applied after the row's own.
    pub set: Vec<String>,
}

impl EvalSplit {
    /// The name of its evaluation files: its name and overrides, so that a changed split is
    /// evaluated again.
    pub fn slug(&self) -> String {
        slug(&format!("{} {}", self.name, self.set.join(" ")))
    }

    /// The config a row with `cfg` is evaluated with on this split.
    pub fn config_for(&self, cfg: &TrainConfig) -> Result<TrainConfig, ConfigError> {
        cfg.with_overrides(&self.set)
    }
}

impl Default for EvalPlan {
    fn default() -> Self {
        Self {
            samples: 32,
            temperatures: Vec::new(),
            ks: vec![1, 8, 32, 128],
            every: 0,
            resamples: 2000,
            splits: Vec::new(),
        }
    }
}

/// A whole study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyPlan {
    /// Name: reports go to `docs/experiments/<name>/` by default.
    pub name: String,
    /// What the study asks, for the report's first paragraph.
    #[serde(default)]
    pub question: String,
    /// Where the training runs go (default: `runs/experiments/<name>`). Studies of the same
    /// task may share a directory: an arm with the same name, seed and config is trained
    /// once and evaluated by each.
    #[serde(default)]
    pub runs: Option<PathBuf>,
    /// Training config every arm starts from (default: the built-in one).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Overrides for every arm (`task.reach.eval_prompts=512`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Seeds; every arm runs every seed, and seed s of every arm starts from the same base.
    pub seeds: Seeds,
    /// The arm the paired tests compare every other row with (default: the first arm).
    #[serde(default)]
    pub reference: Option<String>,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalPlan,
    /// The arms, in table order.
    #[serde(rename = "arm", default)]
    pub arms: Vec<Arm>,
    /// The command that reproduces the study, for the report (set by the caller).
    #[serde(skip)]
    pub command: String,
}

/// The name of the base row.
pub const BASE_ROW: &str = "base";

impl StudyPlan {
    /// Reads and checks a study file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            key: "(file)".into(),
            message: format!("cannot read the study file: {e}"),
        })?;
        let plan: StudyPlan = toml::from_str(&text).map_err(|e| ConfigError {
            origin: origin.clone(),
            key: "(syntax)".into(),
            message: e.to_string(),
        })?;
        plan.check(&origin)?;
        Ok(plan)
    }

    /// Checks what serde cannot: arms present, names distinct, every arm's config valid.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| ConfigError {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.name.is_empty() || slug(&self.name) != self.name {
            return Err(fail(
                "name",
                format!(
                    "`{}` must be a directory name of lower-case letters, digits, `.` and `-`",
                    self.name
                ),
            ));
        }
        if self.arms.is_empty() {
            return Err(fail(
                "arm",
                "no arms: add [[arm]] tables with a name and `set` overrides".into(),
            ));
        }
        // Config errors name this file and the arm; the study's own `set` is checked first.
        let base = self.base_config(0).map_err(|e| {
            fail(
                &format!("set: {}", e.key),
                format!("{} (config {})", e.message, e.origin),
            )
        })?;
        let mut slugs = vec![BASE_ROW.to_owned()];
        for (i, arm) in self.arms.iter().enumerate() {
            let s = arm.slug();
            if s.is_empty() || slugs.contains(&s) {
                return Err(fail(
                    &format!("arm[{i}].name"),
                    format!(
                        "`{}` is empty, `base`, or the same directory name as another arm",
                        arm.name
                    ),
                ));
            }
            slugs.push(s);
            let cfg = self.arm_config(arm, 0).map_err(|e| {
                fail(
                    &format!("arm[{i}] ({}).set: {}", arm.name, e.key),
                    format!("{} (config {})", e.message, e.origin),
                )
            })?;
            // The base row and the paired tests assume every arm of a seed starts from the
            // same policy, which the task, the model source and the warm-up determine.
            if cfg.task != base.task
                || cfg.model.source != base.model.source
                || cfg.model.tiny != base.model.tiny
                || cfg.warmup != base.warmup
            {
                return Err(fail(
                    &format!("arm[{i}] ({}).set", arm.name),
                    "changes the task, model or warm-up, so this arm would not start from the study's base policy; move that override to the study's `set` or into a study of its own".into(),
                ));
            }
        }
        if let Some(r) = &self.reference
            && !self.arms.iter().any(|a| &a.name == r)
            && r != BASE_ROW
        {
            return Err(fail(
                "reference",
                format!("`{r}` is not the name of an arm (or `base`)"),
            ));
        }
        if self.eval.samples == 0 {
            return Err(fail("eval.samples", "must be at least 1".into()));
        }
        if let Some(t) = self
            .eval
            .temperatures
            .iter()
            .find(|t| !t.is_finite() || **t < 0.0)
        {
            return Err(fail(
                "eval.temperatures",
                format!("{t} is not a temperature (finite, ≥ 0)"),
            ));
        }
        let mut split_names = Vec::new();
        for (i, split) in self.eval.splits.iter().enumerate() {
            let key = format!("eval.split[{i}] ({})", split.name);
            if split.name.is_empty() || split_names.contains(&split.name) {
                return Err(fail(
                    &format!("eval.split[{i}].name"),
                    format!("`{}` is empty or names another split", split.name),
                ));
            }
            split_names.push(split.name.clone());
            if let Some(bad) = split
                .set
                .iter()
                .find(|o| !o.trim_start().starts_with("task."))
            {
                return Err(fail(
                    &format!("{key}.set"),
                    format!(
                        "`{bad}` is not a `task.*` override; a split changes which prompts are evaluated, never the training"
                    ),
                ));
            }
            let cfg = split.config_for(&base).map_err(|e| {
                fail(
                    &format!("{key}.set: {}", e.key),
                    format!("{} (config {})", e.message, e.origin),
                )
            })?;
            if cfg.task.kind() != base.task.kind() {
                return Err(fail(
                    &format!("{key}.set"),
                    "changes the task's kind; a split evaluates the same task on other prompts"
                        .into(),
                ));
            }
        }
        if self.eval.resamples < 100 {
            return Err(fail(
                "eval.resamples",
                "use at least 100 bootstrap resamples (2000 is the default)".into(),
            ));
        }
        Ok(())
    }

    /// The training config of `arm` at `seed`.
    pub fn arm_config(&self, arm: &Arm, seed: u64) -> Result<TrainConfig, ConfigError> {
        let overrides: Vec<String> = self.set.iter().chain(&arm.set).cloned().collect();
        let mut cfg = TrainConfig::load(self.config.as_deref(), &overrides)?;
        cfg.run.seed = seed;
        cfg.run.name = super::archive::unit_name(&arm.slug(), seed);
        if self.eval.every > 0 {
            cfg.run.checkpoint_every = self.eval.every;
        }
        Ok(cfg)
    }

    /// The config the base row is made with at `seed` (the study's, without an arm).
    pub fn base_config(&self, seed: u64) -> Result<TrainConfig, ConfigError> {
        self.arm_config(
            &Arm {
                name: BASE_ROW.into(),
                set: Vec::new(),
            },
            seed,
        )
    }

    /// The temperatures to evaluate at, the main one first.
    pub fn temperatures(&self, training_temperature: f64) -> Vec<f64> {
        if self.eval.temperatures.is_empty() {
            vec![training_temperature]
        } else {
            self.eval.temperatures.clone()
        }
    }

    /// The row every paired test compares with.
    pub fn reference_row(&self) -> String {
        self.reference
            .clone()
            .unwrap_or_else(|| self.arms[0].name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_ranges_lists_and_arrays() {
        assert_eq!("0-3".parse::<Seeds>().unwrap().0, vec![0, 1, 2, 3]);
        assert_eq!("3,11,12".parse::<Seeds>().unwrap().0, vec![3, 11, 12]);
        assert_eq!("0-1, 8".parse::<Seeds>().unwrap().0, vec![0, 1, 8]);
        for bad in ["", "x", "3-1", "1,1", "0-2,2"] {
            assert!(bad.parse::<Seeds>().is_err(), "{bad}");
        }
        let plan: StudyPlan =
            toml::from_str("name = \"a\"\nseeds = [4, 5]\n[[arm]]\nname = \"GRPO\"\nset = [\"algorithm.name=grpo\"]\n")
                .unwrap();
        assert_eq!(plan.seeds.0, vec![4, 5]);
        assert_eq!(plan.arms[0].slug(), "grpo");
        plan.check("t").unwrap();
    }

    #[test]
    fn a_bad_plan_names_the_key() {
        let load = |text: &str| {
            let plan: StudyPlan = toml::from_str(text).map_err(|e| e.to_string())?;
            plan.check("study.toml").map_err(|e| e.to_string())
        };
        let head = "name = \"a\"\nseeds = \"0-1\"\n";
        let err = load(&format!(
            "{head}[[arm]]\nname = \"x\"\nset = [\"loss.clip_hgh=0.3\"]\n"
        ))
        .unwrap_err();
        assert!(err.contains("arm[0]") && err.contains("clip_hgh"), "{err}");
        let err = load(&format!(
            "{head}[[arm]]\nname = \"A b\"\n[[arm]]\nname = \"a-b\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("arm[1].name"), "{err}");
        let err = load(head).unwrap_err();
        assert!(err.contains("no arms"), "{err}");
        let err = load(&format!(
            "{head}[[arm]]\nname = \"x\"\nset = [\"warmup.steps=10\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("arm[0] (x).set") && err.contains("base policy"),
            "{err}"
        );
        let err = load(&format!("{head}colour = 1\n[[arm]]\nname = \"x\"\n")).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = load(&format!("{head}reference = \"y\"\n[[arm]]\nname = \"x\"\n")).unwrap_err();
        assert!(err.contains("reference"), "{err}");
    }
}
