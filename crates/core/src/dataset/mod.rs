//! A dataset folder: one sub-folder per class (`male/`, `female/`), plus `excluded/` for curated-out photos.

pub mod journal;
pub mod split;

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, invalid};

use crate::imaging::has_image_extension;

/// Folder (beside the class folders) that holds excluded photos; never a class.
pub const EXCLUDED_DIR: &str = "excluded";

/// One image of the dataset with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The file.
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
}

/// The scanned contents of a dataset folder.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names, sorted (the sub-folder names).
    pub classes: Vec<String>,
    /// Every image file, sorted by class then path.
    pub items: Vec<Item>,
}

impl Dataset {
    /// Scans `root`: every non-hidden sub-folder except `excluded/` is a class; files with image
    /// extensions directly inside it are its items.
    pub fn scan(root: &Path) -> Result<Self> {
        let meta = std::fs::metadata(root)
            .io(|| format!("dataset folder {} does not exist or cannot be read", root.display()))?;
        if !meta.is_dir() {
            invalid!(
                "{} is not a folder: a dataset is a folder with one sub-folder per class (e.g. male/ and female/)",
                root.display()
            );
        }
        let mut classes = Vec::new();
        for entry in std::fs::read_dir(root).io(|| format!("cannot list {}", root.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == EXCLUDED_DIR || !entry.path().is_dir() {
                continue;
            }
            classes.push(name);
        }
        classes.sort();
        let mut items = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .io(|| format!("cannot list class folder {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            files.sort();
            items.extend(files.into_iter().map(|path| Item { path, label }));
        }
        Ok(Self { root: root.to_path_buf(), classes, items })
    }

    /// Number of items per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for item in &self.items {
            counts[item.label] += 1;
        }
        counts
    }

    /// Fails with advice unless there are at least two classes with at least one image each.
    pub fn require_trainable(&self) -> Result<()> {
        if self.classes.is_empty() {
            invalid!(
                "{} has no class folders: create one sub-folder per class (e.g. male/ and female/) and put photos in them",
                self.root.display()
            );
        }
        let counts = self.counts();
        let non_empty: Vec<&str> =
            self.classes.iter().zip(&counts).filter(|(_, n)| **n > 0).map(|(c, _)| c.as_str()).collect();
        if non_empty.len() < 2 {
            invalid!(
                "{} needs photos in at least two class folders to train (found {}): add photos to the other class",
                self.root.display(),
                if non_empty.is_empty() { "no photos at all".to_string() } else { format!("only '{}'", non_empty[0]) }
            );
        }
        Ok(())
    }
}

/// Collects image files from files and folders (folders searched recursively), sorted, de-duplicated.
pub fn collect_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).io(|| format!("{} does not exist or cannot be read", p.display()))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).io(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if has_image_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_classes_and_skips_excluded_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["male", "female", "excluded", ".gender-classifier"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("male/a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("female/b.PNG"), b"x").unwrap();
        std::fs::write(dir.path().join("female/notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("excluded/c.jpg"), b"x").unwrap();
        let ds = Dataset::scan(dir.path()).unwrap();
        assert_eq!(ds.classes, vec!["female", "male"]);
        assert_eq!(ds.counts(), vec![1, 1]);
        ds.require_trainable().unwrap();
    }

    #[test]
    fn empty_single_class_and_missing_folders_explain_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let e = Dataset::scan(dir.path()).unwrap().require_trainable().unwrap_err();
        assert!(e.to_string().contains("no class folders"), "{e}");
        std::fs::create_dir(dir.path().join("male")).unwrap();
        std::fs::write(dir.path().join("male/a.jpg"), b"x").unwrap();
        let e = Dataset::scan(dir.path()).unwrap().require_trainable().unwrap_err();
        assert!(e.to_string().contains("only 'male'"), "{e}");
        let e = Dataset::scan(&dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
