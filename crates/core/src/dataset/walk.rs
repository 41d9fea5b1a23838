//! Finding the photos under files and folders given on a command line, without looping.
//!
//! Symbolic links are followed, so a linked folder of photos counts. A link back to a folder being
//! walked (a loop) is skipped with one warning, and a file reached by two paths is reported once.
//! Hidden files and folders (a name starting with `.`) are skipped, and so is a folder that cannot
//! be read, with a warning.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::imaging::has_image_extension;

/// Collects image files from files and folders (folders searched recursively), sorted, each once.
pub fn collect_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for p in paths {
        let meta = std::fs::metadata(p).io(|| format!("{} does not exist or cannot be read", p.display()))?;
        if meta.is_dir() {
            walk(p, &mut seen, &mut out);
        } else if !meta.is_file() {
            // A FIFO or a device would block or never end: never read one.
            tracing::warn!("skipped {}: not a regular file", p.display());
        } else if seen.insert(file_id(p, &meta)) {
            out.push(p.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, seen: &mut HashSet<FileId>, out: &mut Vec<PathBuf>) {
    let entries = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().as_encoded_bytes().starts_with(b"."));
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                match (e.loop_ancestor(), e.path()) {
                    (Some(ancestor), Some(link)) => tracing::warn!(
                        "skipped {}: a symbolic link loop back to {} (each photo is read once)",
                        link.display(),
                        ancestor.display()
                    ),
                    (_, Some(path)) => tracing::warn!("skipped {}: {}", path.display(), why_unreadable(path, &e)),
                    _ => tracing::warn!("skipped part of {}: {e}", dir.display()),
                }
                continue;
            }
        };
        if !entry.file_type().is_file() || !has_image_extension(entry.path()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if seen.insert(file_id(entry.path(), &meta)) {
            out.push(entry.into_path());
        }
    }
}

/// Why the walk could not read `path`, and what to do.
fn why_unreadable(path: &Path, e: &walkdir::Error) -> String {
    if let (Ok(target), Err(_)) = (std::fs::read_link(path), std::fs::metadata(path)) {
        return format!(
            "cannot read it: it is a symbolic link to {}, which does not exist; remove the link or restore the file",
            target.display()
        );
    }
    match e.io_error() {
        Some(io) => format!("cannot read it ({io}); check that it exists and that you may read it"),
        None => format!("cannot read it ({e})"),
    }
}

/// What makes two paths the same file: device and inode on unix, the path elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileId {
    #[cfg_attr(not(unix), allow(dead_code))]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Path(PathBuf),
}

fn file_id(path: &Path, meta: &std::fs::Metadata) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        FileId::Inode(meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        FileId::Path(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn symlink_loops_are_walked_once_and_each_photo_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("male")).unwrap();
        std::fs::write(d.join("a.jpg"), b"x").unwrap();
        std::fs::write(d.join("male/b.jpg"), b"y").unwrap();
        std::fs::write(d.join("male/.hidden.jpg"), b"y").unwrap();
        std::os::unix::fs::symlink(".", d.join("loop")).unwrap();
        std::os::unix::fs::symlink(".", d.join("male/loop")).unwrap();
        std::os::unix::fs::symlink("male", d.join("also-male")).unwrap();
        std::os::unix::fs::symlink("b.jpg", d.join("male/link.jpg")).unwrap();
        std::os::unix::fs::symlink("missing.jpg", d.join("dangling.jpg")).unwrap();
        let files = collect_images(&[d.to_path_buf(), d.join("a.jpg")]).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.contains(&d.join("a.jpg")), "{files:?}");
    }
}
