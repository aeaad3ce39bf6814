//! Bad model files give errors that name the file, the tensor and the fix.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use polyepo_engine::model::checkpoint::{hf_config_json, save_tensors};
use polyepo_engine::model::{Llama, LlamaConfig, load_model};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polyepo-err-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a tiny HF directory whose tensors `edit` may alter.
fn write_dir(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let cfg = LlamaConfig::tiny(40);
    let mut model = Llama::random(cfg.clone(), 1, &Device::Cpu).unwrap();
    let mut tensors = model.named_tensors();
    edit(&mut tensors);
    save_tensors(&dir.join("model.safetensors"), &tensors).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&hf_config_json(&cfg)).unwrap(),
    )
    .unwrap();
}

fn load_err(path: &Path) -> String {
    load_model(path, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_path_is_named() {
    let err = load_err(Path::new("/nonexistent/model.gguf"));
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = temp_dir("missing");
    write_dir(&dir, |t| {
        t.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight")
    });
    let err = load_err(&dir);
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight")
            && err.contains("missing")
            && err.contains(dir.to_str().unwrap()),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shape_mismatch_is_named() {
    let dir = temp_dir("shape");
    write_dir(&dir, |t| {
        let slot = t
            .iter_mut()
            .find(|(n, _)| n == "model.layers.0.self_attn.k_proj.weight")
            .unwrap();
        slot.1 = Tensor::zeros((8, 64), DType::F32, &Device::Cpu).unwrap();
    });
    let err = load_err(&dir);
    assert!(
        err.contains("k_proj.weight") && err.contains("[8, 64]") && err.contains("[32, 64]"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = temp_dir("arch");
    write_dir(&dir, |_| {});
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = "gpt_neox".into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("gpt_neox") && err.contains("config.json") && err.contains("supports"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn not_a_gguf_file_is_named() {
    let dir = temp_dir("gguf");
    let path = dir.join("broken.gguf");
    std::fs::write(&path, b"definitely not gguf").unwrap();
    let err = load_err(&path);
    assert!(err.contains("broken.gguf") && err.contains("GGUF"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
