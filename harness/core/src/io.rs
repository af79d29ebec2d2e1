//! Files in and out, safely: inputs must be regular files of bounded size (a FIFO or a device
//! never blocks or floods a reader), outputs are written whole or not at all, never over
//! something that is not a regular file, with the user's umask, and `-` means standard output.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Largest input read whole into memory by default (annotations, predictions).
pub const DEFAULT_INPUT_LIMIT: u64 = 4 << 30;

/// Size bounds per kind of input: far above any real file of the kind, far below what would
/// exhaust a machine, so a wrong path (a disk image, a dump) is refused at once.
pub mod limit {
    /// JSON / TOML configurations and tokenizers (a Llama-3 tokenizer.json is about 9 MB).
    pub const CONFIG: u64 = 64 << 20;
    /// ovbench records (an eval record of 5,000 items is a few MB).
    pub const RECORD: u64 = 256 << 20;
    /// One image file of a dataset.
    pub const IMAGE: u64 = 256 << 20;
    /// Annotations and predictions (a VLMEvalKit TSV with base64 images is about 1 GB).
    pub const DATA: u64 = super::DEFAULT_INPUT_LIMIT;
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {what}, not a regular file")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("cannot read {path}: {size} bytes is more than the {limit} bytes this input may have")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}:{line}: invalid UTF-8 (byte offset {offset})")]
    Utf8 {
        path: PathBuf,
        line: usize,
        offset: usize,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("will not write {path}: it is {what}, not a regular file (give a new path, or - for standard output)")]
    SpecialTarget { path: PathBuf, what: &'static str },
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "a regular file"
    }
}

/// Opens `path` for reading only if it is a regular file (after following symlinks). The open
/// is non-blocking, so a FIFO is refused instead of waiting for a writer.
pub fn open_regular(path: &Path) -> Result<(File, u64), IoError> {
    let rd = |source| IoError::Read {
        path: path.into(),
        source,
    };
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(rd)?;
    let meta = f.metadata().map_err(rd)?;
    if !meta.file_type().is_file() {
        return Err(IoError::NotRegular {
            path: path.into(),
            what: kind_of(meta.file_type()),
        });
    }
    Ok((f, meta.len()))
}

/// Reads a whole regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, IoError> {
    let (f, len) = open_regular(path)?;
    if len > limit {
        return Err(IoError::TooLarge {
            path: path.into(),
            size: len,
            limit,
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    // `take` bounds a file that grows while it is read.
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| IoError::Read {
            path: path.into(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(IoError::TooLarge {
            path: path.into(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

/// Reads a whole regular file of at most `limit` bytes as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, IoError> {
    let bytes = read_regular(path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        IoError::Utf8 {
            path: path.into(),
            line,
            offset,
        }
    })
}

/// Opens a regular file of at most `limit` bytes for streaming (a reader that never holds
/// the whole file); the size is checked at the open.
pub fn open_bounded(path: &Path, limit: u64) -> Result<File, IoError> {
    let (f, len) = open_regular(path)?;
    if len > limit {
        return Err(IoError::TooLarge {
            path: path.into(),
            size: len,
            limit,
        });
    }
    Ok(f)
}

/// Reads a regular file as JSON.
pub fn read_json(path: &Path) -> Result<serde_json::Value, IoError> {
    let bytes = read_regular(path, limit::RECORD)?;
    serde_json::from_slice(&bytes).map_err(|source| IoError::Json {
        path: path.into(),
        source,
    })
}

/// How a JSON value's type reads in an error message ("expected a number, found a string").
pub fn json_type_name(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `path` names standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Refuses a target that exists and is not a regular file (a symlink, FIFO, device or folder
/// would be replaced by the rename, or written through).
fn check_target(path: &Path) -> Result<(), IoError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(IoError::SpecialTarget {
            path: path.into(),
            what: kind_of(m.file_type()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IoError::Write {
            path: path.into(),
            source,
        }),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

const TMP_PREFIX: &str = ".ovbench-";

/// Removes temporaries that earlier runs left in `dir` when killed between write and rename:
/// their names carry the writer's process id, and only those of processes that no longer run
/// are removed (a concurrent writer's file is left alone).
pub fn clean_stale_temporaries(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
            continue;
        };
        if !name.ends_with(".tmp") {
            continue;
        }
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A temporary file beside `path`, created with mode 0666 less the umask (as any new file).
fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile, IoError> {
    let err = |source| IoError::Write {
        path: path.into(),
        source,
    };
    let dir = parent_of(path);
    std::fs::create_dir_all(&dir).map_err(err)?;
    clean_stale_temporaries(&dir);
    tempfile::Builder::new()
        .prefix(&format!("{TMP_PREFIX}{}-", std::process::id()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(err)
}

/// Checks, before a long run starts, that `path` can be written: `-`, or a regular file or a
/// new name in a folder that exists (or can be made) and takes new files.
pub fn check_writable(path: &Path) -> Result<(), IoError> {
    if is_stdout(path) {
        return Ok(());
    }
    check_target(path)?;
    // Creating (and dropping) the temporary proves the folder takes new files.
    temporary_beside(path).map(drop)
}

/// Writes `bytes` so that readers see either the old file or the whole new one: a temporary in
/// the same folder, synced, then renamed over the target. `-` writes to standard output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut set = OutputSet::default();
    set.add(path, bytes.to_vec());
    set.commit()
}

/// Several outputs of one run, committed together: every file is written and synced to a
/// temporary first, and only when all succeeded are they renamed into place; if a write
/// fails, no target is touched, so a failed run leaves nothing that looks like a result.
#[derive(Default)]
pub struct OutputSet {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl OutputSet {
    pub fn add(&mut self, path: &Path, bytes: Vec<u8>) {
        self.files.push((path.to_path_buf(), bytes));
    }

    pub fn commit(self) -> Result<(), IoError> {
        let mut staged = Vec::new();
        let mut to_stdout = Vec::new();
        for (path, bytes) in &self.files {
            if is_stdout(path) {
                to_stdout.push(bytes);
                continue;
            }
            check_target(path)?;
            let err = |source| IoError::Write {
                path: path.clone(),
                source,
            };
            let mut tmp = temporary_beside(path)?;
            tmp.write_all(bytes).map_err(err)?;
            tmp.as_file().sync_all().map_err(err)?;
            staged.push((path, tmp));
        }
        let mut done: Vec<&PathBuf> = Vec::new();
        for (path, tmp) in staged {
            // A target that became special since the check is still refused.
            if let Err(e) = check_target(path) {
                for d in &done {
                    let _ = std::fs::remove_file(d);
                }
                return Err(e);
            }
            if let Err(e) = tmp.persist(path) {
                for d in &done {
                    let _ = std::fs::remove_file(d);
                }
                return Err(IoError::Write {
                    path: path.clone(),
                    source: e.error,
                });
            }
            done.push(path);
        }
        let mut out = std::io::stdout().lock();
        for bytes in to_stdout {
            out.write_all(bytes)
                .and_then(|_| out.flush())
                .map_err(|source| IoError::Write {
                    path: PathBuf::from("-"),
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/r.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(names(p.parent().unwrap()), vec!["r.json"]);
    }

    #[test]
    fn new_files_follow_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let umask = unsafe {
            let m = libc::umask(0);
            libc::umask(m);
            m
        };
        assert_eq!(mode, 0o666 & !(umask as u32), "{mode:o}");
    }

    #[test]
    fn special_targets_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for p in [&fifo, &link, &dir.path().to_path_buf()] {
            let e = write_atomic(p, b"x").unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
            assert!(check_writable(p).is_err());
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn inputs_must_be_regular_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // Returns at once: the open does not wait for a writer.
        let e = read_regular(&fifo, 10).unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        let e = read_regular(&big, 10).unwrap_err().to_string();
        assert!(e.contains("11 bytes") && e.contains("big"), "{e}");
        assert_eq!(read_regular(&big, 11).unwrap().len(), 11);
    }

    #[test]
    fn a_set_commits_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let fifo = dir.path().join("b.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let mut set = OutputSet::default();
        set.add(&a, b"1".to_vec());
        set.add(&fifo, b"2".to_vec());
        assert!(set.commit().is_err());
        assert_eq!(
            names(dir.path()),
            vec!["b.json"],
            "nothing written, fifo untouched"
        );
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A pid far above any pid_max: no such process.
        let stale = dir.path().join(".ovbench-2147483000-abc.tmp");
        let live = dir
            .path()
            .join(format!(".ovbench-{}-def.tmp", std::process::id()));
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&live, b"x").unwrap();
        write_atomic(&dir.path().join("r.json"), b"{}").unwrap();
        let n = names(dir.path());
        assert!(
            !n.contains(&".ovbench-2147483000-abc.tmp".to_string()),
            "{n:?}"
        );
        assert!(n.iter().any(|x| x.ends_with("-def.tmp")), "{n:?}");
    }
}
