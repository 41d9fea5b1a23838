//! Paths in JSON that round-trip exactly, even when a file name is not UTF-8.
//!
//! A UTF-8 path is written as a JSON string; any other path as an array of its raw bytes (unix
//! `OsStrExt`). Reading accepts both, so files written before the byte form existed still read.
//! Use it as `#[serde(with = "gc_core::dataset::path_serde")]` on a `PathBuf` field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Writes `path` as a string when it is UTF-8, else as an array of its bytes.
pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    if let Some(text) = path.to_str() {
        return s.serialize_str(text);
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        s.collect_seq(path.as_os_str().as_bytes())
    }
    #[cfg(not(unix))]
    {
        Err(serde::ser::Error::custom(format!(
            "cannot record {}: its name is not valid Unicode; rename the file",
            path.display()
        )))
    }
}

/// Reads a path written by [`serialize`]: a string, or an array of bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    d.deserialize_any(PathVisitor)
}

struct PathVisitor;

impl<'de> Visitor<'de> for PathVisitor {
    type Value = PathBuf;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path: a string, or an array of the bytes of its name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PathBuf, E> {
        Ok(PathBuf::from(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<PathBuf, E> {
        Ok(PathBuf::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PathBuf, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        from_bytes(bytes).map_err(de::Error::custom)
    }
}

#[cfg(unix)]
fn from_bytes(bytes: Vec<u8>) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn from_bytes(bytes: Vec<u8>) -> Result<PathBuf, String> {
    String::from_utf8(bytes).map(PathBuf::from).map_err(|e| {
        format!(
            "the path {} is not valid Unicode and cannot be used on this system",
            String::from_utf8_lossy(e.as_bytes())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        #[serde(with = "super")]
        p: PathBuf,
    }

    #[test]
    fn a_utf8_path_is_a_plain_string() {
        let r = Rec { p: PathBuf::from("male/é \"x\".jpg") };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"p":"male/é \"x\".jpg"}"#);
        assert_eq!(serde_json::from_str::<Rec>(&text).unwrap(), r);
    }

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_path_round_trips_as_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let r = Rec { p: PathBuf::from(std::ffi::OsStr::from_bytes(b"a/\xff.jpg")) };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"p":[97,47,255,46,106,112,103]}"#);
        assert_eq!(serde_json::from_str::<Rec>(&text).unwrap(), r);
        let bad = serde_json::from_str::<Rec>(r#"{"p":[300]}"#).unwrap_err();
        assert!(bad.to_string().contains("300"), "{bad}");
    }
}
