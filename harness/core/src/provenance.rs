//! What is needed to repeat a run: source revision, host, build and command line.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub created_utc: String,
    pub command_line: Vec<String>,
    pub git: GitInfo,
    pub host: HostInfo,
    pub build: BuildInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GitInfo {
    /// Full commit hash, or None outside a repository.
    pub commit: Option<String>,
    /// True when tracked files outside `results/` differ from the commit (untracked files are
    /// ignored, and so are records, which runs themselves write under `results/`).
    pub dirty: Option<bool>,
    /// Why there is no commit, or which files differ when dirty.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub hostname: Option<String>,
    pub cpu_model: String,
    pub physical_cores: Option<usize>,
    pub logical_cpus: usize,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildInfo {
    pub crate_version: String,
    pub rustc: String,
    pub profile: String,
    pub opt_level: String,
    pub target: String,
    pub features: Vec<String>,
}

impl Provenance {
    /// Collects provenance; `features` are the cargo features of the binary, `repo_hint` a path inside the checkout.
    pub fn collect(crate_version: &str, features: &[&str], repo_hint: &Path) -> Self {
        Provenance {
            created_utc: now_utc(),
            command_line: std::env::args().collect(),
            git: git_info(repo_hint),
            host: host_info(),
            build: BuildInfo {
                crate_version: crate_version.to_string(),
                rustc: env!("OVBENCH_RUSTC_VERSION").to_string(),
                profile: env!("OVBENCH_PROFILE").to_string(),
                opt_level: env!("OVBENCH_OPT_LEVEL").to_string(),
                target: env!("OVBENCH_TARGET").to_string(),
                features: features.iter().map(|s| s.to_string()).collect(),
            },
        }
    }
}

/// RFC 3339 UTC time of now.
pub fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// Commit and dirty flag of the repository containing `hint` (or the current directory).
pub fn git_info(hint: &Path) -> GitInfo {
    let repo = git2::Repository::discover(hint)
        .or_else(|_| git2::Repository::discover(std::env::current_dir().unwrap_or_default()));
    let repo = match repo {
        Ok(r) => r,
        Err(e) => {
            let why = format!("not in a git repository: {}", e.message());
            return built_from(
                option_env!("OVBENCH_SOURCE_COMMIT"),
                option_env!("OVBENCH_SOURCE_DIRTY"),
                &why,
            )
            .unwrap_or(GitInfo {
                commit: None,
                dirty: None,
                note: Some(why),
            });
        }
    };
    let commit = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id().to_string());
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(false).include_ignored(false);
    let changed: Option<Vec<String>> = repo.statuses(Some(&mut opts)).ok().map(|s| {
        s.iter()
            .filter(|e| e.status() != git2::Status::CURRENT)
            .filter_map(|e| e.path().ok().map(str::to_string))
            .filter(|p| !p.starts_with("results/"))
            .collect()
    });
    let note = match (&commit, &changed) {
        (None, _) => Some("repository has no commits".to_string()),
        (Some(_), Some(c)) if !c.is_empty() => {
            let shown: Vec<&str> = c.iter().take(8).map(String::as_str).collect();
            let more = c.len().saturating_sub(shown.len());
            Some(format!(
                "changed: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ))
        }
        _ => None,
    };
    GitInfo {
        dirty: changed.map(|c| !c.is_empty()),
        commit,
        note,
    }
}

/// The source state compiled into the binary, for runs where no checkout exists (a GPU machine
/// given a binary built elsewhere): `scripts/build-cuda.sh` sets OVBENCH_SOURCE_COMMIT and
/// OVBENCH_SOURCE_DIRTY at build time. None when the build did not record them.
fn built_from(commit: Option<&str>, dirty: Option<&str>, why: &str) -> Option<GitInfo> {
    let commit = commit.filter(|c| !c.trim().is_empty())?;
    Some(GitInfo {
        commit: Some(commit.trim().to_string()),
        dirty: match dirty.map(str::trim) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        },
        note: Some(format!(
            "{why}; commit and clean-tree state are those of the source this binary was built from"
        )),
    })
}

pub fn host_info() -> HostInfo {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .ok();
    let cpus = sys.as_ref().map(|s| s.cpus()).unwrap_or(&[]);
    let cpu_model = cpus
        .first()
        .map(|c| c.brand().trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    HostInfo {
        hostname: System::host_name().ok(),
        cpu_model,
        physical_cores: System::physical_core_count().ok(),
        logical_cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(cpus.len()),
        memory_bytes: sys.as_ref().map(|s| s.total_memory()).unwrap_or(0),
        os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.to_string()),
        kernel: System::kernel_version().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records that runs write under results/ leave the tree clean; any other tracked file
    /// makes it dirty and is named.
    #[test]
    fn dirty_ignores_records_and_names_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(dir.path().join("results/r.json"), "{}").unwrap();
        std::fs::write(dir.path().join("code.rs"), "fn main() {}").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("results/r.json")).unwrap();
        index.add_path(Path::new("code.rs")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .unwrap();

        let clean = git_info(dir.path());
        assert_eq!(clean.dirty, Some(false));
        assert!(clean.commit.is_some() && clean.note.is_none());

        std::fs::write(dir.path().join("results/r.json"), "{\"x\": 1}").unwrap();
        assert_eq!(git_info(dir.path()).dirty, Some(false), "a record changed");

        std::fs::write(dir.path().join("code.rs"), "fn main() { }").unwrap();
        let dirty = git_info(dir.path());
        assert_eq!(dirty.dirty, Some(true));
        assert_eq!(dirty.note.as_deref(), Some("changed: code.rs"));
    }

    /// A binary run outside any checkout reports the source state recorded at build time, and
    /// says so; without it, no commit.
    #[test]
    fn built_from_reports_the_recorded_source() {
        let g = built_from(
            Some("0353d5e0353d5e"),
            Some("false"),
            "not in a git repository",
        )
        .unwrap();
        assert_eq!(g.commit.as_deref(), Some("0353d5e0353d5e"));
        assert_eq!(g.dirty, Some(false));
        assert!(g.note.unwrap().contains("built from"));
        assert_eq!(built_from(Some("abc1234"), None, "x").unwrap().dirty, None);
        assert!(built_from(None, Some("false"), "x").is_none());
        assert!(built_from(Some(" "), Some("true"), "x").is_none());
    }
}
