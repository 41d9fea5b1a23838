//! Writes that survive a crash: a file is replaced whole or not at all.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fault_point;

/// Replaces `path` with `bytes` atomically: temp file in the same folder, fsync, rename, fsync the folder.
///
/// `kind` names the fault points of this write (`{kind}::write`, `{kind}::tmp_written`,
/// `{kind}::renamed`). On any error the temp file is removed and the old file is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], kind: &str) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = write_then_rename(&tmp, path, bytes, kind);
    if result.is_err() {
        // The rename may or may not have happened; the temp name is ours alone either way.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8], kind: &str) -> std::io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(bytes)?;
    fault_point!(&format!("{kind}::write"));
    f.sync_all()?;
    drop(f);
    fault_point!(&format!("{kind}::tmp_written"));
    std::fs::rename(tmp, path)?;
    fault_point!(&format!("{kind}::renamed"));
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// `dir/.name.<pid>.tmp`: hidden, so scans skip it, and unique to this process.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Makes a rename or a new file in `dir` durable (a no-op where folders cannot be opened).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        write_atomic(&path, b"old", "test").unwrap();
        write_atomic(&path, b"new", "test").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.safetensors")]);
    }

    #[test]
    fn a_failed_write_removes_its_temp_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-folder/x.bin");
        assert!(write_atomic(&path, b"x", "test").is_err());
        let path = dir.path().join("x.bin");
        std::fs::write(&path, b"old").unwrap();
        // A folder where the temp file should go makes File::create fail.
        std::fs::create_dir(temp_path(&path)).unwrap();
        assert!(write_atomic(&path, b"new", "test").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
