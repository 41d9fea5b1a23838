//! A rename that never replaces an existing file, even one another process creates at the last moment.
//!
//! Linux asks the kernel for it (`renameat2` with `RENAME_NOREPLACE`). Where the file system does
//! not support that flag, and on other unix systems, the file is hard-linked to its new name (a link
//! fails if the name exists) and then unlinked from the old one. Where hard links are not possible
//! either (some removable-media file systems, non-unix systems), it falls back to a check and a
//! plain rename, which leaves a window of a few microseconds.

use std::io;
use std::path::Path;

/// Renames `from` to `to`, failing with [`io::ErrorKind::AlreadyExists`] if `to` exists.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    match renameat2_no_replace(from, to) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
            tracing::debug!("renameat2(RENAME_NOREPLACE) is not supported here ({e}); linking instead");
        }
        other => return other,
    }
    #[cfg(unix)]
    {
        link_then_unlink(from, to)
    }
    #[cfg(not(unix))]
    {
        check_then_rename(from, to)
    }
}

#[cfg(target_os = "linux")]
fn renameat2_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let nul = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{} contains a NUL byte", p.display())))
    };
    let (from_c, to_c) = (nul(from)?, nul(to)?);
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; the kernel only reads
    // them. `AT_FDCWD` makes relative paths resolve against the working folder, as `rename` does.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The portable no-replace move: link to the new name (fails if it exists), then unlink the old one.
#[cfg(unix)]
pub(crate) fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(e) if to.symlink_metadata().is_err() && from.symlink_metadata().is_ok() => {
            // No hard links on this file system (FAT, some network shares).
            tracing::debug!("cannot hard-link {} ({e}); renaming after a check instead", from.display());
            return check_then_rename(from, to);
        }
        Err(e) => return Err(e),
    }
    if let Err(e) = std::fs::remove_file(from) {
        // Undo the link: both names are the same file, so this removes nothing but the new name.
        let _ = std::fs::remove_file(to);
        return Err(e);
    }
    Ok(())
}

fn check_then_rename(from: &Path, to: &Path) -> io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", to.display())));
    }
    std::fs::rename(from, to)
}

/// True when `a` and `b` are two names of one file (a move cut between its link and its unlink).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (a.symlink_metadata(), b.symlink_metadata()) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jpg"), dir.path().join("b.jpg"));
        std::fs::write(&a, b"aaa").unwrap();
        std::fs::write(&b, b"bbb").unwrap();
        (dir, a, b)
    }

    #[test]
    fn a_rename_onto_an_existing_file_fails_and_keeps_both() {
        let (_dir, a, b) = two_files();
        let e = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"aaa");
        assert_eq!(std::fs::read(&b).unwrap(), b"bbb");
        let c = a.with_file_name("c.jpg");
        rename_no_replace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&c).unwrap(), b"aaa");
    }

    #[cfg(unix)]
    #[test]
    fn the_link_fallback_never_replaces_either() {
        let (_dir, a, b) = two_files();
        let e = link_then_unlink(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"aaa");
        assert_eq!(std::fs::read(&b).unwrap(), b"bbb");
        let c = a.with_file_name("c.jpg");
        std::fs::hard_link(&a, &c).unwrap();
        assert!(same_file(&a, &c) && !same_file(&a, &b));
        std::fs::remove_file(&c).unwrap();
        link_then_unlink(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&c).unwrap(), b"aaa");
    }
}
