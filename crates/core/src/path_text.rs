//! Paths in text output (JSON, CSV, messages): a file name need not be UTF-8.
//!
//! Output writes every path as a string: the path itself when it is UTF-8, else lossily, with
//! U+FFFD for each byte that is not. Records that name one photo (`classify`, `faces`, `eval`)
//! then add `path_bytes`, the raw bytes of the name, so a program can still find the file.

use std::path::Path;

use serde::Serializer;

/// Serialises a path as a string, lossily when it is not UTF-8 (for `#[serde(serialize_with)]`).
pub fn lossy<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Serialises `(path, reason)` pairs as `[path, reason]` with the path written lossily.
pub fn lossy_pairs<S: Serializer>(pairs: &[(std::path::PathBuf, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(pairs.iter().map(|(p, why)| (p.to_string_lossy(), why)))
}

/// The raw bytes of a path that is not UTF-8; `None` for a UTF-8 path.
pub fn bytes_if_not_utf8(path: &Path) -> Option<Vec<u8>> {
    if path.to_str().is_some() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(path.as_os_str().as_bytes().to_vec())
    }
    #[cfg(not(unix))]
    {
        Some(path.as_os_str().as_encoded_bytes().to_vec())
    }
}

/// A JSON object naming a photo: `{"path": text}`, plus `"path_bytes"` when the name is not UTF-8.
pub fn json_record(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("path".into(), path.to_string_lossy().into_owned().into());
    if let Some(bytes) = bytes_if_not_utf8(path) {
        m.insert("path_bytes".into(), bytes.into());
    }
    m
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_non_utf8_name_is_written_lossily_with_its_bytes() {
        let p = Path::new(std::ffi::OsStr::from_bytes(b"d/bad\xff.jpg"));
        let rec = serde_json::Value::Object(json_record(p));
        assert_eq!(rec["path"], "d/bad\u{fffd}.jpg");
        assert_eq!(rec["path_bytes"].as_array().unwrap().len(), 10);
        assert_eq!(rec["path_bytes"][5], 0xff);
        let ok = serde_json::Value::Object(json_record(Path::new("d/good,\"x\".jpg")));
        assert_eq!(ok["path"], "d/good,\"x\".jpg");
        assert!(ok.get("path_bytes").is_none());
    }
}
