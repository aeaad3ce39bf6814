//! The closed sets of values the configuration and the command line take. Each is an enum,
//! so an invalid value cannot be represented past parsing: serde names the allowed values
//! when a file has a typo, and clap lists them in `--help` and in its errors.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// How a set objective averages over n-subsets (setrl's names).
pub use setrl::EstimatorKind;
/// The advantage that drives the update: setrl owns the names (canonical spellings and
/// aliases), so the config, the CLI, `polyepo advantages` and Python take the same ones.
pub use setrl::MethodKind as Algorithm;

/// Which task a run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Built-in: reach a target with steps from an allowed set.
    Reach,
    /// Built-in: a D-digit number from allowed digits with a given digit sum.
    Digits,
    /// Built-in: an arithmetic expression over given numbers that hits a target.
    Countdown,
    /// Your prompts and answers in JSON Lines files.
    Jsonl,
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskKind::Reach => "reach",
            TaskKind::Digits => "digits",
            TaskKind::Countdown => "countdown",
            TaskKind::Jsonl => "jsonl",
        })
    }
}

/// Who labels strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeSource {
    /// The task's program labeler.
    Task,
    /// The LM judge of `[judge]`.
    Lm,
    /// The task's labeler where it has one, the LM judge otherwise.
    Both,
}

/// Where the policy comes from: the built-in small model (trained from scratch by the
/// supervised warm-up) or a model on disk. Written as `"tiny"` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ModelSource {
    /// The small synthetic-task model.
    Tiny,
    /// An HF directory or a .gguf file.
    Path(PathBuf),
}

impl From<String> for ModelSource {
    fn from(s: String) -> Self {
        if s == "tiny" {
            ModelSource::Tiny
        } else {
            ModelSource::Path(PathBuf::from(s))
        }
    }
}

impl From<ModelSource> for String {
    fn from(s: ModelSource) -> Self {
        match s {
            ModelSource::Tiny => "tiny".into(),
            ModelSource::Path(p) => p.display().to_string(),
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Tiny => f.write_str("tiny"),
            ModelSource::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where tensors live: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| format!("`{s}`: the CUDA ordinal must be a number, e.g. cuda:0")),
                None => Err(format!("unknown device `{s}`: use cpu, cuda or cuda:N")),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> Self {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; CUDA fails with the reason when the build lacks it or no card
    /// answers.
    pub fn open(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(|e| {
                format!(
                    "cannot open `cuda:{n}` ({e}); polyepo must be built with `--features cuda`"
                )
            }),
        }
    }
}

/// Weight and compute precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DTypeSpec {
    /// 32-bit float (the fastest on CPU).
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

impl From<DTypeSpec> for DType {
    fn from(d: DTypeSpec) -> Self {
        match d {
            DTypeSpec::F32 => DType::F32,
            DTypeSpec::Bf16 => DType::BF16,
            DTypeSpec::F16 => DType::F16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        let e = "gpu".parse::<DeviceSpec>().unwrap_err();
        assert!(e.contains("cpu, cuda or cuda:N"), "{e}");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn algorithm_names_are_setrls_in_toml_and_json() {
        #[derive(Deserialize, Serialize)]
        struct Section {
            name: Algorithm,
        }
        for a in Algorithm::ALL {
            let toml_text = toml::to_string(&Section { name: a }).unwrap();
            assert_eq!(toml_text.trim(), format!("name = \"{}\"", a.name()));
            for spelling in a.spellings() {
                let back: Section = toml::from_str(&format!("name = \"{spelling}\"")).unwrap();
                assert_eq!(back.name, a);
            }
        }
        let err = toml::from_str::<Section>("name = \"ppo\"").err().unwrap();
        assert!(err.to_string().contains("unknown method `ppo`"), "{err}");
    }

    #[test]
    fn model_sources_round_trip() {
        assert_eq!(ModelSource::from("tiny".to_owned()), ModelSource::Tiny);
        let p = ModelSource::from("models/x.gguf".to_owned());
        assert_eq!(p, ModelSource::Path("models/x.gguf".into()));
        assert_eq!(String::from(p), "models/x.gguf");
    }
}
