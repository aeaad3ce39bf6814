//! TensorBoard event files: every metric as a scalar, so `tensorboard --logdir runs/` shows
//! the curves. The format is TFRecord framing around `Event` protocol buffers, small enough
//! to write by hand (three message types, five fields).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends scalar summaries to one `events.out.tfevents.*` file.
#[derive(Debug)]
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, 1, 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut out, 2, 0);
    varint(&mut out, step as u64);
    body(&mut out);
    out
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates a new event file in `dir` (a resumed run adds a file; TensorBoard merges them).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(format!("events.out.tfevents.{}.polyepo", now() as u64));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut writer = Self { file, path };
        writer.record(&event(now(), 0, |out| {
            bytes_field(out, 3, b"brain.Event:2")
        }))?;
        Ok(writer)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut frame = Vec::with_capacity(data.len() + 16);
        frame.extend_from_slice(&len);
        frame.extend_from_slice(&masked_crc(&len).to_le_bytes());
        frame.extend_from_slice(data);
        frame.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&frame)?;
        self.file.flush()
    }

    /// Writes `scalars` (tag, value) for `step`.
    pub fn scalars(&mut self, step: u64, scalars: &[(String, f64)]) -> std::io::Result<()> {
        let data = event(now(), step as i64, |out| {
            // Summary { repeated Value value = 1 }, Value { tag = 1, simple_value = 2 }.
            let mut summary = Vec::new();
            for (tag, value) in scalars {
                let mut v = Vec::new();
                bytes_field(&mut v, 1, tag.as_bytes());
                key(&mut v, 2, 5);
                v.extend_from_slice(&(*value as f32).to_le_bytes());
                bytes_field(&mut summary, 1, &v);
            }
            bytes_field(out, 5, &summary);
        });
        self.record(&data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_framing_follow_tfrecord() {
        // CRC-32C check value from RFC 3720.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let dir = std::env::temp_dir().join(format!("polyepo-tb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = EventWriter::create(&dir).unwrap();
        w.scalars(3, &[("reward/mean".into(), 0.5)]).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        // Walk the records: each length and payload checks against its masked CRC.
        let mut pos = 0;
        let mut records = 0;
        while pos < bytes.len() {
            let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()),
                masked_crc(&bytes[pos..pos + 8])
            );
            let data = &bytes[pos + 12..pos + 12 + len];
            assert_eq!(
                u32::from_le_bytes(bytes[pos + 12 + len..pos + 16 + len].try_into().unwrap()),
                masked_crc(data)
            );
            pos += 16 + len;
            records += 1;
        }
        assert_eq!(records, 2);
        assert!(bytes.windows(11).any(|w| w == b"reward/mean"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
