//! The response cache: one JSON line per finished question, appended and synced to disk
//! before the next question starts, keyed by the run key (weight hashes + task config) and
//! the question id. A run killed at any point leaves at most one partial last line, which
//! the next run drops; every complete line is reused, so nothing finished is redone.

use crate::error::{io, EvalError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub id: String,
    pub prediction: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub stop: String,
    pub encode_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
}

pub struct ResponseCache {
    pub path: PathBuf,
    file: std::fs::File,
    entries: HashMap<String, Entry>,
    /// Complete lines found when opening.
    pub loaded: usize,
    /// Whether a partial last line (a write cut by a kill) was dropped when opening.
    pub dropped_partial: bool,
}

/// The key of one question under one run configuration.
pub fn item_key(run_key: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(run_key.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    format!("{:x}", h.finalize())
}

impl ResponseCache {
    pub fn open(path: &Path) -> Result<Self> {
        let mut entries = HashMap::new();
        let mut dropped_partial = false;
        let mut loaded = 0;
        if path.exists() {
            let bytes = ovbench_harness::io::read_regular(path, ovbench_harness::io::limit::DATA)?;
            let mut good_len = 0usize;
            let mut line_no = 0usize;
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                line_no += 1;
                let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], true),
                    None => (rest, false),
                };
                let parsed = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| serde_json::from_str::<Entry>(s).ok());
                match (parsed, complete) {
                    (Some(e), true) => {
                        loaded += 1;
                        entries.insert(e.key.clone(), e);
                        good_len += line.len() + 1;
                        rest = &rest[line.len() + 1..];
                    }
                    // The last line, cut short by a kill: drop it.
                    (_, false) => {
                        dropped_partial = true;
                        break;
                    }
                    (None, true) => {
                        return Err(EvalError::Cache {
                            path: path.into(),
                            line: line_no,
                            msg: "not a cache entry (the file is corrupt; delete it to start over)"
                                .into(),
                        })
                    }
                }
            }
            if dropped_partial {
                ovbench_harness::write_atomic(path, &bytes[..good_len])?;
            }
        } else if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        Ok(ResponseCache {
            path: path.into(),
            file,
            entries,
            loaded,
            dropped_partial,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Appends one entry as a single write and syncs it to disk.
    pub fn append(&mut self, e: Entry) -> Result<()> {
        let mut line = serde_json::to_vec(&e).expect("entries serialise");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.entries.insert(e.key.clone(), e);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            key: item_key("run", id),
            id: id.into(),
            prediction: format!("p{id}"),
            tokens: vec![1, 2],
            prompt_tokens: 3,
            stop: "eos".into(),
            encode_s: 0.0,
            prefill_s: 0.0,
            decode_s: 0.0,
        }
    }

    #[test]
    fn partial_last_line_is_dropped_and_complete_lines_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.jsonl");
        {
            let mut c = ResponseCache::open(&p).unwrap();
            c.append(entry("1")).unwrap();
            c.append(entry("2")).unwrap();
        }
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"{\"key\": \"abc\", \"id\": \"3\", \"predic");
        std::fs::write(&p, &bytes).unwrap();
        let mut c = ResponseCache::open(&p).unwrap();
        assert!(c.dropped_partial);
        assert_eq!(c.loaded, 2);
        assert_eq!(c.get(&item_key("run", "2")).unwrap().prediction, "p2");
        c.append(entry("3")).unwrap();
        drop(c);
        let c = ResponseCache::open(&p).unwrap();
        assert_eq!((c.loaded, c.dropped_partial), (3, false));
    }

    #[test]
    fn corrupt_middle_line_names_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.jsonl");
        let good = serde_json::to_string(&entry("1")).unwrap();
        std::fs::write(&p, format!("{good}\nnot json\n{good}\n")).unwrap();
        let e = ResponseCache::open(&p).err().unwrap().to_string();
        assert!(e.contains("c.jsonl:2"), "{e}");
    }
}
