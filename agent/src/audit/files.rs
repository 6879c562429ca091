//! The files of one log: `audit.jsonl` (being appended to) and the rotated `audit.jsonl.1`
//! (the newest older file), `audit.jsonl.2` …, up to `local.audit_keep_files`.

use std::path::{Path, PathBuf};

/// `audit.jsonl.<n>`; `n = 0` is `audit.jsonl` itself.
#[must_use]
pub fn numbered(path: &Path, n: u64) -> PathBuf {
    if n == 0 {
        return path.to_owned();
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{n}"));
    path.with_file_name(name)
}

/// The existing files of the log, oldest first: `(n, path)` with `n` as in [`numbered`]
/// (`audit.jsonl` last, when it exists). A gap (a crash between two renames of a rotation)
/// is allowed: the hash chain tells whether anything is missing.
pub fn list(path: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{base}.");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let Some(n) = name.strip_prefix(&prefix) else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 9 {
            continue;
        }
        if let Ok(n) = n.parse::<u64>() {
            if n > 0 {
                out.push((n, numbered(path, n)));
            }
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.0));
    if path.exists() {
        out.push((0, path.to_owned()));
    }
    Ok(out)
}

/// Shifts `audit.jsonl.N` to `.N+1` (dropping those beyond `keep`), renames `audit.jsonl` to
/// `.1` and fsyncs the directory.
pub fn rotate(path: &Path, keep: u64) -> std::io::Result<()> {
    let older: Vec<u64> = list(path)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| *n > 0)
        .collect();
    for n in older {
        if n >= keep {
            std::fs::remove_file(numbered(path, n))?;
        } else {
            std::fs::rename(numbered(path, n), numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path` (renames, creations and removals are durable).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => std::fs::File::open(d)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_shifts_and_drops_beyond_keep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for round in 0..4 {
            std::fs::write(&path, format!("{round}")).unwrap();
            rotate(&path, 2).unwrap();
        }
        std::fs::write(&path, "4").unwrap();
        std::fs::write(dir.path().join("audit.jsonl.x"), "not ours").unwrap();
        let listed = list(&path).unwrap();
        assert_eq!(
            listed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        let text: Vec<String> = listed
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(text, ["2", "3", "4"], "oldest first, the oldest dropped");
    }
}
